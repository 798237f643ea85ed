//! Purging what is old, in small batches: each call is one short write, so the writer serves
//! other requests between batches.

use chrono::{DateTime, Utc};
use diesel::prelude::*;

use crate::schema::{events, idempotency_keys, jobs, robot_messages, schedule_events};
use crate::time::to_micros;
use crate::{JobStatus, StoreError, WriteTx};

/// A purged job: its id and package name, to remove its package file too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurgedJob {
    pub id: i64,
    pub package_name: String,
}

const FINAL: [JobStatus; 3] = [
    JobStatus::Succeeded,
    JobStatus::Failed,
    JobStatus::Cancelled,
];

impl WriteTx<'_> {
    /// Deletes up to `limit` finished jobs (Succeeded, Failed, Cancelled) last changed before
    /// `before`, with their events.
    pub fn purge_finished_jobs(
        &mut self,
        before: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<PurgedJob>, StoreError> {
        debug_assert!(
            JobStatus::ALL
                .iter()
                .all(|status| status.is_final() == FINAL.contains(status))
        );
        let old: Vec<(i64, String)> = jobs::table
            .filter(jobs::status.eq_any(FINAL))
            .filter(jobs::updated_at.lt(to_micros(before)))
            .order(jobs::id.asc())
            .select((jobs::id, jobs::package_name))
            .limit(limit)
            .load(self.conn)?;
        let ids: Vec<i64> = old.iter().map(|(id, _)| *id).collect();
        // Events go with their job (ON DELETE CASCADE), out of the stream too: a consumer
        // resuming below the last of them has missed some (events.rs).
        let last_event: Option<i64> = events::table
            .filter(events::job_id.eq_any(&ids))
            .select(diesel::dsl::max(events::id))
            .first(self.conn)?;
        diesel::delete(jobs::table.filter(jobs::id.eq_any(&ids))).execute(self.conn)?;
        if let Some(last_event) = last_event {
            self.raise_event_floor(last_event)?;
        }
        Ok(old
            .into_iter()
            .map(|(id, package_name)| PurgedJob { id, package_name })
            .collect())
    }

    /// Deletes up to `limit` robot messages received before `before`.
    pub fn purge_robot_messages(
        &mut self,
        before: DateTime<Utc>,
        limit: i64,
    ) -> Result<usize, StoreError> {
        let ids: Vec<i64> = robot_messages::table
            .filter(robot_messages::received_at.lt(to_micros(before)))
            .order(robot_messages::id.asc())
            .select(robot_messages::id)
            .limit(limit)
            .load(self.conn)?;
        Ok(
            diesel::delete(robot_messages::table.filter(robot_messages::id.eq_any(ids)))
                .execute(self.conn)?,
        )
    }

    /// Deletes up to `limit` schedule events recorded before `before`.
    pub fn purge_schedule_events(
        &mut self,
        before: DateTime<Utc>,
        limit: i64,
    ) -> Result<usize, StoreError> {
        let ids: Vec<i64> = schedule_events::table
            .filter(schedule_events::at.lt(to_micros(before)))
            .order(schedule_events::id.asc())
            .select(schedule_events::id)
            .limit(limit)
            .load(self.conn)?;
        Ok(
            diesel::delete(schedule_events::table.filter(schedule_events::id.eq_any(ids)))
                .execute(self.conn)?,
        )
    }

    /// Forgets up to `limit` idempotency keys first used before `before`.
    pub fn purge_idempotency_keys(
        &mut self,
        before: DateTime<Utc>,
        limit: i64,
    ) -> Result<usize, StoreError> {
        let keys: Vec<String> = idempotency_keys::table
            .filter(idempotency_keys::created_at.lt(to_micros(before)))
            .select(idempotency_keys::key)
            .limit(limit)
            .load(self.conn)?;
        Ok(
            diesel::delete(idempotency_keys::table.filter(idempotency_keys::key.eq_any(keys)))
                .execute(self.conn)?,
        )
    }
}
