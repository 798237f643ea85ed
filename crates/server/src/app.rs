//! Start-up, the shared state, and shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chrono::TimeDelta;
use rpa_packages::{PackageDir, PackagesError};
use rpa_registry::Registry;
use rpa_scheduler::{DueLoop, DueLoopConfig, Heartbeat, SystemClock};
use rpa_store::{DeliveryPolicy, Store, StoreConfig, StoreError};
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use crate::config::{Config, ConfigError};
use crate::db::Db;
use crate::http::metrics::Metrics;
use crate::logging::LoggingError;
use crate::tasks::committed::Committed;
use crate::tasks::dispatch::{self, Dispatcher};
use crate::tasks::event_hub::EventHub;

/// What every part of the server shares.
pub(crate) struct App {
    pub(crate) config: Config,
    pub(crate) db: Db,
    pub(crate) registry: Arc<Registry>,
    pub(crate) packages: PackageDir,
    pub(crate) dispatcher: Dispatcher,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) heartbeat: Heartbeat,
    pub(crate) connections: Arc<Tracker>,
    pub(crate) package_files: Arc<crate::tasks::package_files::PackageFiles>,
    /// The highest event id committed, for the stream and the webhooks to follow.
    pub(crate) committed: Committed,
    /// The live event stream's broadcast.
    pub(crate) event_hub: EventHub,
    /// The webhook deliveries' client and state, shared with the API and the metrics.
    pub(crate) webhooks: crate::tasks::webhooks::Webhooks,
}

/// Counts live connections, so shutdown can wait for them.
#[derive(Debug, Default)]
pub(crate) struct Tracker {
    live: AtomicUsize,
    idle: Notify,
}

pub(crate) struct Tracked(Arc<Tracker>);

impl Tracker {
    pub(crate) fn track(self: &Arc<Self>) -> Tracked {
        self.live.fetch_add(1, Ordering::AcqRel);
        Tracked(Arc::clone(self))
    }

    pub(crate) async fn idle(&self) {
        loop {
            let notified = self.idle.notified();
            if self.live.load(Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        if self.0.live.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// Why the server could not start. Its text names the setting at fault by its flag
/// ([`StartError::setting`]); the cause, when there is one, is its
/// [`source`](std::error::Error::source). [`crate::logging::Chain`] puts both on one line:
/// `--database: cannot open the database at ...: ...`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// Settings that cannot work ([`Config::validate`]).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The packages folder cannot be created or written.
    #[error("--packages-dir")]
    PackagesDir(#[source] PackagesError),
    /// The database cannot be opened, or the last run's state cannot be put in order.
    #[error("--database")]
    Database(#[source] StoreError),
    /// The start-up work on the database did not finish (it panicked).
    #[error("--database")]
    DatabaseTask(#[source] tokio::task::JoinError),
    /// Another server holds the SQLite database, or its lock file cannot be created.
    #[error("--database")]
    DatabaseLocked(#[source] crate::lock::LockError),
    /// The address cannot be listened on (in use, not this machine's, not permitted).
    #[error("--listen: cannot listen on {address}")]
    Listen {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// The log cannot be set up. The binary sets it up before the server starts (a library
    /// installs no logger); it reports that failure as this.
    #[error("{}", .0.setting())]
    Log(#[from] LoggingError),
    /// The extra certificates for webhook receivers cannot be read.
    #[error("--webhook-ca-file")]
    WebhookCaFile(#[source] WebhookSetupError),
}

/// Why webhook deliveries cannot be set up (the certificates of `--webhook-ca-file`).
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct WebhookSetupError(#[from] crate::tasks::webhooks::SetupError);

impl StartError {
    /// The flag of the setting at fault, e.g. `--listen`.
    pub fn setting(&self) -> &'static str {
        match self {
            StartError::Config(error) => error.setting(),
            StartError::PackagesDir(_) => "--packages-dir",
            StartError::Database(_)
            | StartError::DatabaseTask(_)
            | StartError::DatabaseLocked(_) => "--database",
            StartError::Listen { .. } => "--listen",
            StartError::Log(error) => error.setting(),
            StartError::WebhookCaFile(_) => "--webhook-ca-file",
        }
    }
}

/// A server that is bound and ready, not yet serving.
pub struct Server {
    app: Arc<App>,
    rest: warp::filters::BoxedFilter<(warp::reply::Response,)>,
    listener: TcpListener,
    due_loop: DueLoop<Dispatcher, SystemClock>,
    written: tokio::sync::mpsc::UnboundedReceiver<dispatch::Written>,
    /// Jobs other instances hand to this one (PostgreSQL only).
    hand_offs: Option<rpa_store::Listener>,
    /// The SQLite database's lock, released once the store has shut down.
    lock: Option<crate::lock::DatabaseLock>,
}

/// How long robot connections get to close at shutdown.
const CLOSE_GRACE: Duration = Duration::from_secs(3);

impl Server {
    /// Binds the port, takes the SQLite database's lock, opens the packages folder and the
    /// database, and puts the last run's state in order. Every robot is offline and every
    /// pending job back under the scheduler before connections are accepted ([`Server::run`]).
    /// A start that fails on the port or the lock has changed nothing: a second server on the
    /// same database stops here and the first keeps running undisturbed.
    pub async fn start(config: Config) -> Result<Server, StartError> {
        config.validate()?;
        let webhooks = crate::tasks::webhooks::Webhooks::new(
            config.webhook_deny.clone(),
            config.webhook_ca_file.as_deref(),
        )
        .map_err(|error| StartError::WebhookCaFile(error.into()))?;
        let listener = listen(config.listen).map_err(|source| StartError::Listen {
            address: config.listen,
            source,
        })?;
        let bound = listener.local_addr().unwrap_or(config.listen);
        let lock = match &config.database {
            crate::Database::Sqlite(path) => Some(
                crate::lock::DatabaseLock::acquire(path, bound)
                    .map_err(StartError::DatabaseLocked)?,
            ),
            crate::Database::Postgres(_) => None,
        };
        let packages = PackageDir::open(&config.packages_dir)
            .map_err(StartError::PackagesDir)?
            .with_sync(config.sync_package_files);
        let mut store_config = StoreConfig::at(config.database.clone());
        store_config.max_size = config.max_database_size;
        store_config.instance = crate::tasks::instance::new_id();
        let store = tokio::task::spawn_blocking(move || Store::open(&store_config))
            .await
            .map_err(StartError::DatabaseTask)?
            .map_err(StartError::Database)?;
        let policy = DeliveryPolicy {
            max_attempts: i32::try_from(config.max_delivery_attempts).unwrap_or(i32::MAX),
            ack_timeout: delta(config.ack_timeout),
            claim_guard: TimeDelta::seconds(60),
            misfire_grace: config.misfire_grace.map(delta),
            overdue_after: (!config.alert_job_overdue_after.is_zero())
                .then(|| delta(config.alert_job_overdue_after)),
            pool_busy_timeout: delta(config.pool_busy_timeout),
            report_timeout: config.job_report_timeout.map(delta),
        };
        let recovery_store = store.clone();
        let (lease, description) = (
            config.instance_lease,
            crate::tasks::instance::describe(bound),
        );
        let started = tokio::task::spawn_blocking(move || {
            crate::tasks::instance::start(&recovery_store, policy, lease, description)
        })
        .await
        .map_err(StartError::DatabaseTask)?
        .map_err(StartError::Database)?;
        log::info!(
            "database {} open as instance {}{}: {} robots marked offline, {} interrupted sendings to resend",
            config.database,
            store.instance(),
            if store.shared() { " (shared)" } else { "" },
            started.offline,
            started.resent
        );

        let db = Db::new(store);
        let last_event = db
            .read(|conn| conn.last_event_id())
            .await
            .map_err(StartError::Database)?;
        let committed = Committed::new(last_event);
        let hook = committed.clone();
        db.store()
            .writer()
            .on_events(move |last| hook.advance(last));
        let registry = Arc::new(Registry::new(config.limits.outbound_queue));
        let metrics = Arc::new(Metrics::default());
        let package_files = Arc::new(crate::tasks::package_files::PackageFiles::default());
        let (dispatcher, written) = Dispatcher::new(
            db.clone(),
            Arc::clone(&package_files),
            Arc::clone(&registry),
            policy,
            Arc::clone(&metrics),
        );
        let (due_loop, wakeup, heartbeat) =
            DueLoop::new(dispatcher.clone(), SystemClock, DueLoopConfig::default());
        dispatcher.set_wakeup(wakeup);
        let hand_offs = crate::tasks::instance::listen(&db, &dispatcher, &committed, &registry)
            .map_err(StartError::Database)?;
        let app = Arc::new(App {
            config,
            db,
            registry,
            packages,
            dispatcher,
            metrics,
            heartbeat,
            connections: Arc::new(Tracker::default()),
            package_files,
            event_hub: EventHub::new(committed.last()),
            committed,
            webhooks,
        });
        let rest = crate::http::rest::routes(Arc::clone(&app));
        Ok(Server {
            app,
            rest,
            listener,
            due_loop,
            written,
            hand_offs,
            lock,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` resolves, then stops accepting, closes robot connections with
    /// 1001, lets the writes under way commit, and returns.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        let Server {
            app,
            rest,
            listener,
            due_loop,
            written,
            hand_offs,
            lock,
        } = self;
        let (stop, stopped) = watch::channel(false);
        let scheduler: JoinHandle<()> = tokio::spawn(due_loop.run(stopped.clone()));
        let confirmer = tokio::spawn(dispatch::confirm_written(
            app.dispatcher.clone(),
            written,
            stopped.clone(),
        ));
        let retention = tokio::spawn(crate::tasks::retention::run(
            Arc::clone(&app),
            stopped.clone(),
        ));
        let lease = tokio::spawn(crate::tasks::instance::run(
            Arc::clone(&app),
            stopped.clone(),
        ));
        let event_hub = tokio::spawn(crate::tasks::event_hub::run(
            Arc::clone(&app),
            stopped.clone(),
        ));
        let alerts = tokio::spawn(crate::tasks::alerts::run(Arc::clone(&app), stopped.clone()));
        let webhooks = tokio::spawn(crate::tasks::webhooks::run(
            Arc::clone(&app),
            stopped.clone(),
        ));
        let package_files = tokio::spawn(crate::tasks::package_files::run(
            Arc::clone(&app.package_files),
            app.db.clone(),
            app.packages.clone(),
            stopped.clone(),
        ));
        let accept = tokio::spawn(crate::http::listener::serve(
            Arc::clone(&app),
            listener,
            rest,
            stopped,
        ));

        shutdown.await;
        log::info!("shutting down: no new connections; closing robot connections");
        let _ = stop.send(true);
        for session in app.registry.connections() {
            session.close(crate::http::ws::CLOSE_GOING_AWAY, "server shutting down");
        }
        if tokio::time::timeout(CLOSE_GRACE, app.connections.idle())
            .await
            .is_err()
        {
            log::warn!(
                "some robot connections did not close within {} s",
                CLOSE_GRACE.as_secs()
            );
        }
        let _ = accept.await;
        let _ = scheduler.await;
        let _ = confirmer.await;
        let _ = retention.await;
        let _ = lease.await;
        let _ = event_hub.await;
        let _ = alerts.await;
        // Before the instance's record goes: its webhooks are let go of for the others.
        let _ = webhooks.await;
        // Written after the connections closed, so the files of everything accepted are there.
        let _ = package_files.await;
        let store = app.db.store().clone();
        let _ = tokio::task::spawn_blocking(move || {
            drop(hand_offs);
            // Its robots were recorded offline as their connections closed.
            if let Err(error) = store.writer().run(|tx| tx.retire_instance()) {
                log::warn!("cannot remove this instance's record: {error}");
            }
            store.shutdown();
        })
        .await;
        drop(lock);
        log::info!("stopped");
    }
}

/// Pending connections the kernel may queue before the server accepts them. tokio's default
/// (1024) overflows when thousands of robots reconnect at once (they then wait for SYN
/// retransmissions, seconds); the kernel caps it at `net.core.somaxconn` (4096 here).
const LISTEN_BACKLOG: u32 = 8192;

fn listen(address: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if address.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    // As std's and tokio's own bind do: a restart can listen again at once.
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(LISTEN_BACKLOG)
}

pub(crate) fn delta(duration: Duration) -> TimeDelta {
    TimeDelta::from_std(duration).unwrap_or(TimeDelta::MAX)
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;
    use crate::logging::Chain;

    fn config_in(dir: &std::path::Path) -> Config {
        Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            database: crate::Database::Sqlite(dir.join("data/test.db")),
            packages_dir: dir.join("packages"),
            log_dir: dir.join("logs"),
            ..Config::default()
        }
    }

    #[tokio::test]
    async fn settings_that_cannot_work_stop_the_start_before_anything_is_created() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = config_in(dir.path());
        config.access.api_tokens = vec![String::new()];
        let Err(error) = Server::start(config).await else {
            panic!("started with an empty token");
        };
        assert!(matches!(error, StartError::Config(_)), "{error:?}");
        assert_eq!(error.setting(), "--api-token");
        assert_eq!(
            Chain(&error).to_string(),
            "--api-token: a token must not be empty"
        );
        assert!(!dir.path().join("packages").exists());
        assert!(!dir.path().join("data").exists());
    }

    #[tokio::test]
    async fn a_failed_start_names_the_setting_and_keeps_its_cause() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a-file");
        std::fs::write(&file, "x").unwrap();

        let mut config = config_in(dir.path());
        config.packages_dir = file.clone();
        let Err(error) = Server::start(config).await else {
            panic!("started with a file as its packages folder");
        };
        assert_eq!(error.setting(), "--packages-dir");
        assert!(error.source().is_some());
        let line = Chain(&error).to_string();
        assert!(line.starts_with("--packages-dir: "), "{line}");
        assert_eq!(line.lines().count(), 1);

        let mut config = config_in(dir.path());
        config.database = crate::Database::Sqlite(file.join("x.db"));
        let Err(error) = Server::start(config).await else {
            panic!("opened a database below a file");
        };
        // The lock file beside the database is the first thing that cannot be created.
        assert!(matches!(error, StartError::DatabaseLocked(_)), "{error:?}");
        assert_eq!(error.setting(), "--database");
        let line = Chain(&error).to_string();
        assert!(line.starts_with("--database: "), "{line}");
        assert!(line.len() > "--database: ".len());
    }
}
