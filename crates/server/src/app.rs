//! Start-up, the shared state, and shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chrono::TimeDelta;
use rpa_packages::PackageDir;
use rpa_registry::Registry;
use rpa_scheduler::{DueLoop, DueLoopConfig, Heartbeat, SystemClock};
use rpa_store::{DeliveryPolicy, Store, StoreConfig};
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::db::Db;
use crate::http::metrics::Metrics;
use crate::tasks::dispatch::{self, Dispatcher};

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

/// A setting that made the start fail, and why.
#[derive(Debug, thiserror::Error)]
#[error("{setting}: {message}")]
pub struct StartError {
    /// The flag of the setting at fault, e.g. `--listen`.
    pub setting: &'static str,
    pub message: String,
}

impl StartError {
    fn new(setting: &'static str, message: impl ToString) -> StartError {
        StartError {
            setting,
            message: message.to_string(),
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
}

/// How long robot connections get to close at shutdown.
const CLOSE_GRACE: Duration = Duration::from_secs(3);

impl Server {
    /// Opens the packages folder and the database, puts the last run's state in order, and binds
    /// the port. Every robot is offline and every pending job back under the scheduler before
    /// the port opens.
    pub async fn start(config: Config) -> Result<Server, StartError> {
        let packages = PackageDir::open(&config.packages_dir)
            .map_err(|error| StartError::new("--packages-dir", error))?
            .with_sync(config.sync_package_files);
        let mut store_config = StoreConfig::at(config.database.clone());
        store_config.max_size = config.max_database_size;
        store_config.instance = crate::tasks::instance::new_id();
        let store = tokio::task::spawn_blocking(move || Store::open(&store_config))
            .await
            .map_err(|error| StartError::new("--database", error))?
            .map_err(|error| StartError::new("--database", error))?;
        let policy = DeliveryPolicy {
            max_attempts: i32::try_from(config.max_delivery_attempts).unwrap_or(i32::MAX),
            ack_timeout: delta(config.ack_timeout),
            claim_guard: TimeDelta::seconds(60),
            misfire_grace: config.misfire_grace.map(delta),
        };
        let recovery_store = store.clone();
        let (lease, description) = (
            config.instance_lease,
            crate::tasks::instance::describe(config.listen),
        );
        let started = tokio::task::spawn_blocking(move || {
            crate::tasks::instance::start(&recovery_store, policy, lease, description)
        })
        .await
        .map_err(|error| StartError::new("--database", error))?
        .map_err(|error| StartError::new("--database", error))?;
        log::info!(
            "database {} open as instance {}{}: {} robots marked offline, {} interrupted sendings to resend",
            config.database,
            store.instance(),
            if store.shared() { " (shared)" } else { "" },
            started.offline,
            started.resent
        );

        let listener = listen(config.listen).map_err(|error| {
            StartError::new(
                "--listen",
                format!("cannot listen on {}: {error}", config.listen),
            )
        })?;

        let db = Db::new(store);
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
        let hand_offs = crate::tasks::instance::listen(db.store(), &dispatcher)
            .map_err(|error| StartError::new("--database", error))?;
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
        });
        let rest = crate::http::rest::routes(Arc::clone(&app));
        Ok(Server {
            app,
            rest,
            listener,
            due_loop,
            written,
            hand_offs,
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
