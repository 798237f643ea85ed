//! The queue of package files still to be written, kept in the database so that a job whose
//! file was not written before a crash gets it at the next start.
//!
//! On SQLite the one writer commits jobs in id order, so the queue is a watermark
//! (`package_file_progress.written_up_to`): every job above it is owed its file. Several
//! instances sharing PostgreSQL commit out of id order, so there each job owed a file has a row
//! in `pending_package_files`, written in the job's own transaction and deleted once its file
//! is written.

use diesel::prelude::*;

use crate::connection::DbConnection;
use crate::schema::{jobs, package_file_progress, pending_package_files};
use crate::{ReadConn, StoreError, WriteTx};

/// A job whose package file is still to be written.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = jobs, check_for_backend(crate::connection::MultiBackend))]
pub struct PackageFile {
    #[diesel(column_name = id)]
    pub job_id: i64,
    pub package_name: String,
    /// The Package object as received (JSON).
    pub package: String,
}

/// Records that the job just inserted is owed its file (nothing to do under a watermark).
/// PostgreSQL's deferred insert of a batch's triggered jobs does the same in its statement
/// (see pg_insert.rs).
pub(crate) fn owe(conn: &mut DbConnection, job_id: i64) -> Result<(), StoreError> {
    if conn.shared() {
        diesel::insert_into(pending_package_files::table)
            .values(pending_package_files::job_id.eq(job_id))
            .execute(conn)?;
    }
    Ok(())
}

impl ReadConn<'_> {
    /// Jobs whose package file is not written yet, oldest first.
    pub fn unwritten_package_files(&mut self, limit: i64) -> Result<Vec<PackageFile>, StoreError> {
        Ok(if self.conn.shared() {
            pending_package_files::table
                .inner_join(jobs::table.on(jobs::id.eq(pending_package_files::job_id)))
                .order(pending_package_files::job_id.asc())
                .select(PackageFile::as_select())
                .limit(limit)
                .load(self.conn)?
        } else {
            let written_up_to: i64 = package_file_progress::table
                .select(package_file_progress::written_up_to)
                .first(self.conn)?;
            jobs::table
                .filter(jobs::id.gt(written_up_to))
                .order(jobs::id.asc())
                .select(PackageFile::as_select())
                .limit(limit)
                .load(self.conn)?
        })
    }
}

impl WriteTx<'_> {
    /// Records that these jobs, the first ones [`ReadConn::unwritten_package_files`] gave in
    /// its order, have their package files.
    pub fn mark_package_files_written(&mut self, job_ids: &[i64]) -> Result<(), StoreError> {
        if self.conn.shared() {
            for chunk in job_ids.chunks(500) {
                diesel::delete(
                    pending_package_files::table
                        .filter(pending_package_files::job_id.eq_any(chunk)),
                )
                .execute(self.conn)?;
            }
            return Ok(());
        }
        // One instance commits jobs in id order, so every job up to the last one has its file.
        let Some(&job_id) = job_ids.iter().max() else {
            return Ok(());
        };
        diesel::update(
            package_file_progress::table.filter(package_file_progress::written_up_to.lt(job_id)),
        )
        .set(package_file_progress::written_up_to.eq(job_id))
        .execute(self.conn)?;
        Ok(())
    }
}
