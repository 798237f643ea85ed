//! This server as one instance among several sharing a PostgreSQL database: its row and lease,
//! the reaping of dead instances, and the hand-offs other instances send it. On SQLite the
//! instance is the only one: its start takes over everything, and nothing runs afterwards.
//!
//! What each instance does with the others is in rpa-store (instances.rs, sending.rs,
//! notify.rs); docs/SCALING.md tells the operator's side.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use rpa_registry::Registry;
use rpa_store::{DeliveryPolicy, Listener, Notice, Reaped, Store, StoreError};
use tokio::sync::watch;

use crate::app::{App, delta};
use crate::db::Db;
use crate::tasks::committed::Committed;
use crate::tasks::dispatch::Dispatcher;

/// What the start found and did.
pub(crate) struct Started {
    /// Robots marked offline (the last run's, or a dead instance's).
    pub(crate) offline: usize,
    /// Unconfirmed sendings made Pending again.
    pub(crate) resent: usize,
}

/// A fresh id for this process.
pub(crate) fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Records this instance before the port opens. Alone (SQLite): every robot is offline and
/// every interrupted sending waits again, whatever the last run left. Shared: only what dead
/// instances left is taken over; the live ones keep their robots.
pub(crate) fn start(
    store: &Store,
    policy: DeliveryPolicy,
    lease: Duration,
    description: String,
) -> Result<Started, StoreError> {
    let writer = store.writer();
    let now = Utc::now();
    let mut started = Started {
        offline: 0,
        resent: 0,
    };
    if !store.shared() {
        started.offline = writer.run(|tx| tx.mark_all_robots_offline(Utc::now()))?;
        started.resent = writer.run(move |tx| tx.recover_in_flight(now, &policy))?;
    }
    let lease_until = now + delta(lease);
    writer.run(move |tx| tx.register_instance(now, lease_until, &description))?;
    let all_others = !store.shared();
    let reaped = writer.run(move |tx| tx.reap_instances(now, &policy, all_others))?;
    started.offline += reaped.robots;
    started.resent += reaped.sendings;
    report(&reaped);
    Ok(started)
}

/// Listens for jobs other instances hand to this one, and wakes the scheduler for them; for
/// the events they commit, for the stream and the webhooks to follow; and for the robot
/// credentials any instance revokes, to close this instance's connections that used them.
pub(crate) fn listen(
    db: &Db,
    dispatcher: &Dispatcher,
    committed: &Committed,
    registry: &Arc<Registry>,
) -> Result<Option<Listener>, StoreError> {
    let dispatcher = dispatcher.clone();
    let committed = committed.clone();
    let registry = Arc::clone(registry);
    let recheck_db = db.clone();
    // The listener calls back on a thread of its own; a look at the database goes to the
    // runtime.
    let runtime = tokio::runtime::Handle::current();
    db.store().listen(move |notice| match notice {
        Notice::HandedOff(handed) => dispatcher.wake(handed.job_id, handed.at),
        Notice::Events(last) => committed.advance(last),
        Notice::CredentialRevoked(id) => {
            crate::http::ws::close_revoked(&registry, id);
        }
        Notice::Reconnected => {
            // Revocations announced while the listener was away were not heard: the
            // credentials in use are looked up instead.
            let db = recheck_db.clone();
            let registry = Arc::clone(&registry);
            runtime.spawn(async move { close_all_revoked(&db, &registry).await });
        }
    })
}

/// Closes the connections whose credential no longer exists.
async fn close_all_revoked(db: &Db, registry: &Registry) {
    let in_use = registry.credentials_in_use();
    if in_use.is_empty() {
        return;
    }
    let asked = in_use.clone();
    match db.read(move |conn| conn.existing_credentials(&asked)).await {
        Ok(existing) => {
            for id in in_use.into_iter().filter(|id| !existing.contains(id)) {
                crate::http::ws::close_revoked(registry, id);
            }
        }
        Err(error) => log::warn!("cannot look for revoked robot credentials: {error}"),
    }
}

/// Renews the lease and reaps dead instances, every fifth of the lease, until `stop`. Shared
/// databases only.
pub(crate) async fn run(app: Arc<App>, mut stop: watch::Receiver<bool>) {
    if !app.db.shared() {
        return;
    }
    let lease = app.config.instance_lease;
    let policy = *app.dispatcher.policy();
    let mut ticker = tokio::time::interval(lease / 5);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.changed() => return,
        }
        let now = Utc::now();
        let lease_until = now + delta(lease);
        match app.db.write(move |tx| tx.renew_lease(lease_until)).await {
            Ok(true) => {}
            Ok(false) => lost_lease(&app, now, lease_until).await,
            Err(error) => log::warn!("cannot renew this instance's lease: {error}"),
        }
        match app
            .db
            .write(move |tx| tx.reap_instances(now, &policy, false))
            .await
        {
            Ok(reaped) => report(&reaped),
            Err(error) => log::warn!("cannot look for dead instances: {error}"),
        }
    }
}

/// Another instance found this one's lease passed (it could not reach the database for that
/// long) and took its robots offline in the database. The robots are still connected here, but
/// the database no longer says so: they are closed, reconnect, and register again, here or
/// elsewhere.
async fn lost_lease(app: &App, now: chrono::DateTime<Utc>, lease_until: chrono::DateTime<Utc>) {
    let sessions = app.registry.connections();
    log::error!(
        "this instance's lease had passed and another instance took over its robots; closing its {} connections so that they register again",
        sessions.len()
    );
    let description = describe(app.config.listen);
    if let Err(error) = app
        .db
        .write(move |tx| tx.register_instance(now, lease_until, &description))
        .await
    {
        log::error!("cannot record this instance again: {error}");
    }
    for session in sessions {
        session.close(CLOSE_SERVICE_RESTART, "server instance lost its lease");
    }
}

/// WebSocket close code 1012: the service is restarting; the client should reconnect.
const CLOSE_SERVICE_RESTART: u16 = 1012;

/// What the operator sees of an instance in the database.
pub(crate) fn describe(listen: std::net::SocketAddr) -> String {
    format!("pid {}, listening on {listen}", std::process::id())
}

fn report(reaped: &Reaped) {
    for instance in &reaped.instances {
        log::warn!("instance {instance} is gone (its lease passed): taking over after it");
    }
    if reaped.robots > 0 || reaped.sendings > 0 {
        log::info!(
            "{} robots held by instances gone marked offline, {} unconfirmed sendings to send again",
            reaped.robots,
            reaped.sendings
        );
    }
}
