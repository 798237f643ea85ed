//! Hand-offs between instances sharing a PostgreSQL database: `LISTEN`/`NOTIFY`.
//!
//! Each instance listens on a channel of its own (`rpa_<instance id>`), on the channel on
//! which every instance announces the events it committed (events.rs), so that its streams
//! follow the other instances' events at once, and on the one on which revoked robot
//! credentials are announced (credentials.rs), so that the instance holding a connection that
//! used one closes it at once. An instance that finds a
//! due job whose robot another instance holds (a trigger, a force, a resend, a job whose robot
//! moved) changes nothing and notifies the holder with the job's id, inside its transaction:
//! PostgreSQL delivers the notification when, and only if, that transaction commits, so the
//! holder never looks before the row is visible to it.
//!
//! The listener is a thread with a connection of its own. libpq only reads notifications when
//! asked, and diesel does not expose the connection's socket to wait on, so the thread asks
//! every [`POLL`]: a non-blocking read of the socket's buffer, not a query, and no load on the
//! database. A lost listener connection is opened again; notifications sent meanwhile are lost,
//! and the jobs they named are found by the holder's own scheduler at its next read (at most
//! its look-ahead later), since they are due and its robots' jobs are in its reads; a
//! [`Notice::Reconnected`] tells the server to look again at what it could have missed
//! (revoked credentials).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::connection::DbConnection;
use crate::{Location, StoreError};

/// How often the listener reads its connection for notifications: the hand-off's latency at
/// most.
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
const POLL: Duration = Duration::from_millis(2);

/// The channel an instance listens on.
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
fn channel(instance: &str) -> String {
    // Channel names are identifiers of at most 63 bytes; ids are ASCII (see StoreConfig).
    let mut name = format!("rpa_{instance}");
    name.truncate(63);
    name
}

/// Tells `holder` that job `id` is due (several instances only; nothing on SQLite).
pub(crate) fn hand_off(
    conn: &mut DbConnection,
    holder: &str,
    id: i64,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    match conn {
        DbConnection::Sqlite(_) => {
            let _ = (holder, id, now);
            Ok(())
        }
        #[cfg(feature = "postgres")]
        DbConnection::Pg(conn) => {
            use diesel::RunQueryDsl;
            diesel::select(pg_notify(
                channel(holder),
                format!("{id} {}", crate::time::to_micros(now)),
            ))
            .execute(conn)?;
            Ok(())
        }
    }
}

#[cfg(feature = "postgres")]
diesel::define_sql_function! {
    fn pg_notify(channel: diesel::sql_types::Text, payload: diesel::sql_types::Text);
}

/// A job another instance handed to this one: due at `at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandedOff {
    pub job_id: i64,
    pub at: DateTime<Utc>,
}

/// What the listener hears.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    HandedOff(HandedOff),
    /// Some instance committed events up to this id.
    Events(i64),
    /// Some instance revoked the robot credential with this id.
    CredentialRevoked(i64),
    /// The listener lost its connection and has a new one: notifications sent in between are
    /// lost.
    Reconnected,
}

/// The listener thread; stops when dropped or at [`Listener::stop`].
#[derive(Debug)]
pub struct Listener {
    stop: Arc<AtomicBool>,
    thread: std::sync::Mutex<Option<JoinHandle<()>>>,
}

impl Listener {
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        crate::writer::join(&self.thread, "listener");
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Starts listening for hand-offs to `instance`; `deliver` gets each one, on the listener's
/// thread (it must only pass it on). None on SQLite, where there is nobody to hear from.
pub(crate) fn listen(
    location: &Location,
    instance: &str,
    deliver: Box<dyn Fn(Notice) + Send>,
) -> Result<Option<Listener>, StoreError> {
    match location {
        Location::Sqlite(_) => {
            drop(deliver);
            Ok(None)
        }
        #[cfg(feature = "postgres")]
        Location::Postgres(url) => {
            let stop = Arc::new(AtomicBool::new(false));
            let stopping = Arc::clone(&stop);
            let url = url.clone();
            let channel = channel(instance);
            // The first connection is made here, so that a start with a wrong setting fails.
            let conn = pg::connect(&url, &channel)?;
            let thread = std::thread::Builder::new()
                .name("db-listener".to_owned())
                .spawn(move || pg::run(conn, &url, &channel, &stopping, &*deliver))
                .map_err(|source| StoreError::Thread {
                    thread: "listener",
                    source,
                })?;
            Ok(Some(Listener {
                stop,
                thread: std::sync::Mutex::new(Some(thread)),
            }))
        }
        #[cfg(not(feature = "postgres"))]
        Location::Postgres(_) => {
            let _ = (instance, deliver);
            Err(StoreError::Open {
                location: location.to_string(),
                source: crate::OpenError::NoPostgres,
            })
        }
    }
}

#[cfg(feature = "postgres")]
mod pg {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use diesel::connection::SimpleConnection;
    use diesel::{Connection, PgConnection};

    use super::{HandedOff, Notice, POLL};
    use crate::credentials::REVOKED_CHANNEL;
    use crate::events::EVENTS_CHANNEL;
    use crate::{StoreError, Unreachable};

    pub(super) fn connect(url: &str, channel: &str) -> Result<PgConnection, StoreError> {
        let mut conn = PgConnection::establish(url).map_err(Unreachable::Connect)?;
        conn.batch_execute(&format!(
            "SET application_name = 'rpa-socket-server listener'; LISTEN \"{}\"; \
             LISTEN {EVENTS_CHANNEL}; LISTEN {REVOKED_CHANNEL};",
            channel.replace('"', "\"\"")
        ))?;
        Ok(conn)
    }

    pub(super) fn run(
        mut conn: PgConnection,
        url: &str,
        channel: &str,
        stop: &AtomicBool,
        deliver: &dyn Fn(Notice),
    ) {
        while !stop.load(Ordering::Acquire) {
            let mut lost = None;
            for notification in conn.notifications_iter() {
                match notification {
                    Ok(notification) => {
                        let notice = if notification.channel == EVENTS_CHANNEL {
                            notification.payload.parse().ok().map(Notice::Events)
                        } else if notification.channel == REVOKED_CHANNEL {
                            notification
                                .payload
                                .parse()
                                .ok()
                                .map(Notice::CredentialRevoked)
                        } else {
                            parse(&notification.payload).map(Notice::HandedOff)
                        };
                        match notice {
                            Some(notice) => deliver(notice),
                            None => log::warn!(
                                "ignoring a malformed notification on {}: {:?}",
                                notification.channel,
                                notification.payload
                            ),
                        }
                    }
                    Err(error) => {
                        lost = Some(error);
                        break;
                    }
                }
            }
            if let Some(error) = lost {
                log::warn!("the database listener lost its connection ({error}); connecting again");
                conn = loop {
                    if stop.load(Ordering::Acquire) {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(500));
                    match connect(url, channel) {
                        Ok(conn) => break conn,
                        Err(error) => log::debug!("database listener: {error}"),
                    }
                };
                log::info!("the database listener is connected again");
                deliver(Notice::Reconnected);
            }
            std::thread::sleep(POLL);
        }
    }

    fn parse(payload: &str) -> Option<HandedOff> {
        let (id, at) = payload.split_once(' ')?;
        Some(HandedOff {
            job_id: id.parse().ok()?,
            at: crate::time::from_micros(at.parse().ok()?),
        })
    }
}
