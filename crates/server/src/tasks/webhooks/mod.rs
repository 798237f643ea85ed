//! Webhook deliveries (docs/EVENTS.md): every event of a webhook's types, POSTed to its URL,
//! signed as Standard Webhooks specifies, retried with back-off, in id order per subject.
//!
//! One task here claims the webhooks this instance delivers (a lease per webhook, renewed every
//! third of `--instance-lease`, so that with several instances one delivers each) and runs a
//! worker per claimed webhook ([`worker`]). A worker follows the committed events
//! (`App.committed`: no polling while nothing happens) and sleeps until its next retry is due;
//! its database writes are one per round of deliveries, through the same group-commit writer as
//! everything else, so a slow or dead receiver costs its own queue and nothing of the jobs'.
//!
//! Parts: [`signing`] (the signature), [`addresses`] (where deliveries may go), [`client`] (the
//! one POST), [`chat`] (the one-line text of the `chat` format).

pub(crate) mod addresses;
mod chat;
pub(crate) mod client;
#[cfg(test)]
mod client_tests;
pub(crate) mod signing;
mod worker;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rpa_store::ClaimedWebhook;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use crate::app::{App, delta};
use addresses::AddressPolicy;
use client::DeliveryClient;

/// A delivery gets an answer within this, or counts as failed (`timeout`).
pub(crate) const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);
/// At most this much of a receiver's answer is read.
pub(crate) const MAX_REPLY: usize = 64 * 1024;

/// Why webhook deliveries cannot be set up.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SetupError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} holds no PEM certificate")]
    NoCertificate { path: String },
    #[error("{path}: a certificate cannot be read: {source}")]
    Pem {
        path: String,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("a certificate is not usable as a root: {0}")]
    Tls(#[source] rustls::Error),
}

/// What the API and the metrics share with the delivery tasks.
pub(crate) struct Webhooks {
    client: Arc<DeliveryClient>,
    /// The API changed a webhook: claim again now rather than at the next renewal.
    changed: Notify,
    /// Per webhook this instance delivers: when the oldest event it owes happened (None: it owes
    /// nothing).
    owed_since: Mutex<HashMap<i64, Option<DateTime<Utc>>>>,
    /// Until when this instance's claims hold: workers deliver only before it.
    held_until: Mutex<DateTime<Utc>>,
}

impl std::fmt::Debug for Webhooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhooks").finish_non_exhaustive()
    }
}

impl Webhooks {
    /// The client with the refused ranges (`--webhook-deny`) and the extra trusted roots
    /// (`--webhook-ca-file`).
    pub(crate) fn new(
        deny: Vec<ipnet::IpNet>,
        ca_file: Option<&Path>,
    ) -> Result<Webhooks, SetupError> {
        let roots = match ca_file {
            Some(path) => read_roots(path)?,
            None => Vec::new(),
        };
        let client =
            DeliveryClient::new(AddressPolicy::new(deny), roots, DELIVERY_TIMEOUT, MAX_REPLY)
                .map_err(SetupError::Tls)?;
        Ok(Webhooks {
            client: Arc::new(client),
            changed: Notify::new(),
            owed_since: Mutex::new(HashMap::new()),
            held_until: Mutex::new(DateTime::UNIX_EPOCH),
        })
    }

    pub(crate) fn policy(&self) -> &AddressPolicy {
        self.client.policy()
    }

    /// A webhook was created, deleted or enabled.
    pub(crate) fn changed(&self) {
        self.changed.notify_one();
    }

    /// Per webhook this instance delivers, when the oldest event it owes happened.
    pub(crate) fn owed_since(&self) -> Vec<(i64, Option<DateTime<Utc>>)> {
        let map = self
            .owed_since
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut all: Vec<_> = map.iter().map(|(id, at)| (*id, *at)).collect();
        all.sort_unstable_by_key(|(id, _)| *id);
        all
    }

    fn set_owed_since(&self, id: i64, at: Option<Option<DateTime<Utc>>>) {
        let mut map = self
            .owed_since
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match at {
            Some(at) => {
                map.insert(id, at);
            }
            None => {
                map.remove(&id);
            }
        }
    }

    fn held_until(&self) -> DateTime<Utc> {
        *self
            .held_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn hold_until(&self, until: DateTime<Utc>) {
        *self
            .held_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = until;
    }
}

fn read_roots(path: &Path) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, SetupError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    let shown = path.display().to_string();
    let text = std::fs::read(path).map_err(|source| SetupError::Read {
        path: shown.clone(),
        source,
    })?;
    let roots = CertificateDer::pem_slice_iter(&text)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| SetupError::Pem {
            path: shown.clone(),
            source,
        })?;
    if roots.is_empty() {
        return Err(SetupError::NoCertificate { path: shown });
    }
    Ok(roots)
}

/// A worker of this instance and what it is told.
struct Running {
    /// The webhook as last claimed; None: stop after the round under way.
    claim: watch::Sender<Option<ClaimedWebhook>>,
    task: JoinHandle<()>,
}

/// Claims webhooks and runs their workers until `stop`; then lets go of them, so that another
/// instance takes them over at once.
pub(crate) async fn run(app: Arc<App>, mut stop: watch::Receiver<bool>) {
    let lease = app.config.instance_lease;
    let mut ticker = tokio::time::interval(lease / 3);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut running: HashMap<i64, Running> = HashMap::new();
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = app.webhooks.changed.notified() => {}
            _ = stop.changed() => break,
        }
        let now = Utc::now();
        let until = now + delta(lease);
        let claimed = match app.db.write(move |tx| tx.claim_webhooks(now, until)).await {
            Ok(claimed) => claimed,
            Err(error) => {
                log::warn!("webhooks: cannot renew this instance's hold on its webhooks: {error}");
                continue;
            }
        };
        // A little short of the lease: a worker stops delivering before another instance may
        // start.
        app.webhooks.hold_until(until - delta(lease / 5));
        running.retain(|_, worker| !worker.task.is_finished());
        let mut kept: HashMap<i64, Running> = HashMap::with_capacity(claimed.len());
        for webhook in claimed {
            let id = webhook.record.id;
            match running.remove(&id) {
                Some(worker) => {
                    worker.claim.send_if_modified(|current| {
                        let changed = current.as_ref() != Some(&webhook);
                        *current = Some(webhook);
                        changed
                    });
                    kept.insert(id, worker);
                }
                None => {
                    let (claim, watched) = watch::channel(Some(webhook));
                    let task = tokio::spawn(worker::run(Arc::clone(&app), watched, stop.clone()));
                    kept.insert(id, Running { claim, task });
                }
            }
        }
        // No longer this instance's (deleted, disabled, or taken over): they stop after their
        // round.
        for (id, worker) in running.drain() {
            let _ = worker.claim.send(None);
            kept.insert(id, worker);
        }
        running = kept;
    }
    for worker in running.into_values() {
        let _ = worker.claim.send(None);
        let _ = worker.task.await;
    }
    if let Err(error) = app.db.write(|tx| tx.release_webhooks()).await {
        log::warn!("webhooks: cannot let go of this instance's webhooks: {error}");
    }
}
