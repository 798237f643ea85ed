//! `GET /metrics` in the Prometheus text format.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rpa_store::{BATCH_BUCKETS, JobStatus, LATENCY_BUCKETS_MICROS};
use warp::Filter;
use warp::Reply as _;
use warp::filters::BoxedFilter;
use warp::http::{HeaderValue, header};
use warp::reply::Response;

use super::with_app;
use crate::app::App;
use crate::http::metrics::LATENESS_BUCKETS_MS;
use crate::http::problem::Problem;

pub(super) fn routes(app: Arc<App>) -> BoxedFilter<(Response,)> {
    let counts = Arc::new(Counts::default());
    warp::path!("metrics")
        .and(warp::get())
        .and(with_app(app))
        .then(move |app: Arc<App>| {
            let counts = Arc::clone(&counts);
            async move { render(&app, &counts).await }
        })
        .boxed()
}

/// How long the counts of robots and of jobs by status are served again before they are
/// counted anew. Counting reads the whole jobs index (about 200 ms at a million jobs): done
/// per scrape, a few scrapers kept the reader pool busy and slowed the whole API.
const COUNTS_FRESH_FOR: Duration = Duration::from_secs(5);

/// The last counts of robots and jobs, and when they were made. One scrape at a time counts;
/// the others wait for it and share its result, so the database is read at most once per
/// [`COUNTS_FRESH_FOR`] whatever the number of scrapers.
#[derive(Default)]
struct Counts {
    last: tokio::sync::Mutex<Option<(Instant, Counted)>>,
}

#[derive(Clone)]
struct Counted {
    robots_registered: i64,
    jobs: Vec<(JobStatus, i64)>,
    pools: Vec<rpa_store::PoolSummary>,
}

impl Counts {
    async fn get(&self, app: &App) -> Result<Counted, rpa_store::StoreError> {
        let mut last = self.last.lock().await;
        if let Some((at, counted)) = &*last
            && at.elapsed() < COUNTS_FRESH_FOR
        {
            return Ok(counted.clone());
        }
        let busy = app.dispatcher.policy().pool_busy_timeout;
        let now = chrono::Utc::now();
        let (robots, jobs, pools) = app
            .db
            .read(move |conn| {
                Ok((
                    conn.count_robots()?,
                    conn.count_jobs_by_status()?,
                    conn.pools(now, busy)?,
                ))
            })
            .await?;
        let counted = Counted {
            robots_registered: robots.0,
            jobs,
            pools,
        };
        *last = Some((Instant::now(), counted.clone()));
        Ok(counted)
    }
}

fn gauge(out: &mut String, name: &str, help: &str, value: impl std::fmt::Display) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
    );
}

fn counter(out: &mut String, name: &str, help: &str, value: u64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
    );
}

fn histogram(
    out: &mut String,
    name: &str,
    help: &str,
    bounds: &[f64],
    cumulative: &[u64],
    count: u64,
    sum: f64,
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
    for (bound, n) in bounds.iter().zip(cumulative) {
        let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {n}");
    }
    let _ = writeln!(
        out,
        "{name}_bucket{{le=\"+Inf\"}} {count}\n{name}_sum {sum}\n{name}_count {count}"
    );
}

async fn render(app: &App, counts: &Counts) -> Response {
    let Counted {
        robots_registered: registered,
        jobs,
        pools,
    } = match counts.get(app).await {
        Ok(counted) => counted,
        Err(error) => return Problem::from(error).into_response(),
    };
    let mut out = String::with_capacity(4096);
    let (connections, online) = app.registry.counts();
    gauge(
        &mut out,
        "rpa_robots_connected",
        "Robots with a live registered connection.",
        online,
    );
    gauge(
        &mut out,
        "rpa_connections_open",
        "Open robot WebSocket connections, registered or not.",
        connections,
    );
    gauge(
        &mut out,
        "rpa_robots_registered",
        "Robots that ever registered.",
        registered,
    );
    let _ = writeln!(
        out,
        "# HELP rpa_jobs Jobs by status.\n# TYPE rpa_jobs gauge"
    );
    for status in JobStatus::ALL {
        let n = jobs
            .iter()
            .find(|(s, _)| *s == status)
            .map_or(0, |(_, n)| *n);
        let _ = writeln!(out, "rpa_jobs{{status=\"{}\"}} {n}", status.as_str());
    }
    let m = &app.metrics;
    let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    for (name, help, value) in [
        (
            "rpa_connections_opened_total",
            "Robot WebSocket connections opened.",
            load(&m.connections_opened),
        ),
        (
            "rpa_registrations_total",
            "Accepted robot metadata.",
            load(&m.registrations),
        ),
        (
            "rpa_metadata_declined_total",
            "Declined robot metadata.",
            load(&m.metadata_declined),
        ),
        (
            "rpa_robot_messages_total",
            "Robot messages stored.",
            load(&m.robot_messages),
        ),
        (
            "rpa_bad_frames_total",
            "Bad frames received from robots.",
            load(&m.bad_frames),
        ),
        (
            "rpa_deliveries_total",
            "Package sendings handed to robot connections.",
            load(&m.deliveries),
        ),
        (
            "rpa_sendings_confirmed_total",
            "Sendings recorded as written to their robot (a field robot's once the ping behind the package was answered).",
            load(&m.sendings_confirmed),
        ),
        (
            "rpa_resends_total",
            "Sendings after the first of a job.",
            load(&m.resends),
        ),
        (
            "rpa_declines_total",
            "Packages declined by robots.",
            load(&m.declines),
        ),
        (
            "rpa_acks_total",
            "Package receipts acknowledged by extended robots.",
            load(&m.acks),
        ),
        (
            "rpa_reports_total",
            "Job reports received from robots.",
            load(&m.reports),
        ),
        (
            "rpa_triggers_accepted_total",
            "Job triggers accepted.",
            load(&m.triggers_accepted),
        ),
        (
            "rpa_triggers_rejected_total",
            "Job triggers rejected.",
            load(&m.triggers_rejected),
        ),
        (
            "rpa_slow_robots_closed_total",
            "Connections closed because the robot did not read.",
            load(&m.slow_robots_closed),
        ),
        (
            "rpa_event_stream_slow_closed_total",
            "Event streams closed because the consumer did not keep up.",
            load(&m.event_streams_slow_closed),
        ),
    ] {
        counter(&mut out, name, help, value);
    }
    gauge(
        &mut out,
        "rpa_event_stream_subscribers",
        "Open event streams (GET /api/events as Server-Sent Events).",
        load(&m.event_stream_subscribers),
    );
    let _ = writeln!(
        out,
        "# HELP rpa_webhook_deliveries_total Webhook delivery attempts by outcome (delivered: a \
         2xx in time; failed: retried later; skipped: missed while disabled).\n\
         # TYPE rpa_webhook_deliveries_total counter"
    );
    for (outcome, counter) in [
        ("delivered", &m.webhook_delivered),
        ("failed", &m.webhook_failed),
        ("skipped", &m.webhook_skipped),
    ] {
        let _ = writeln!(
            out,
            "rpa_webhook_deliveries_total{{outcome=\"{outcome}\"}} {}",
            load(counter)
        );
    }
    let _ = writeln!(
        out,
        "# HELP rpa_webhook_oldest_undelivered_seconds Age of the oldest event a webhook \
         delivered by this instance still owes (0: none).\n\
         # TYPE rpa_webhook_oldest_undelivered_seconds gauge"
    );
    let now = chrono::Utc::now();
    for (webhook, since) in app.webhooks.owed_since() {
        let age = since.map_or(0.0, |at| {
            (now - at).num_milliseconds().max(0) as f64 / 1000.0
        });
        let _ = writeln!(
            out,
            "rpa_webhook_oldest_undelivered_seconds{{webhook=\"{webhook}\"}} {age}"
        );
    }
    let (buckets, count, sum) = m.lateness();
    let bounds: Vec<f64> = LATENESS_BUCKETS_MS
        .iter()
        .map(|ms| *ms as f64 / 1000.0)
        .collect();
    histogram(
        &mut out,
        "rpa_delivery_lateness_seconds",
        "Time from a job's run_at to its first sending being handed to the robot's connection.",
        &bounds,
        &buckets,
        count,
        sum,
    );
    let (buckets, count, sum) = m.pool_assignment.snapshot();
    histogram(
        &mut out,
        "rpa_pool_assignment_seconds",
        "Time from a pool job being due to its first sending to a robot of the pool, the wait for a free robot included.",
        &bounds,
        &buckets,
        count,
        sum,
    );
    for (name, help, value) in [
        (
            "rpa_pool_waiting_jobs",
            "Pool jobs due and waiting for a free robot, per pool.",
            (|p: &rpa_store::PoolSummary| p.waiting_jobs) as fn(&rpa_store::PoolSummary) -> i64,
        ),
        (
            "rpa_pool_free_robots",
            "Online robots of the pool that are free, per pool.",
            |p| p.free,
        ),
        (
            "rpa_pool_online_robots",
            "Online robots of the pool, per pool.",
            |p| p.online,
        ),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for pool in &pools {
            // Pool names are letters, digits, '.', '_' and '-': nothing to escape in a label.
            let _ = writeln!(out, "{name}{{pool=\"{}\"}} {}", pool.name, value(pool));
        }
    }
    let writer = app.db.writer_stats();
    let bounds: Vec<f64> = BATCH_BUCKETS.iter().map(|n| *n as f64).collect();
    histogram(
        &mut out,
        "rpa_db_batch_size",
        "Writes committed together by the database writer.",
        &bounds,
        &writer.batch_size_buckets,
        writer.batches,
        writer.operations as f64,
    );
    let bounds: Vec<f64> = LATENCY_BUCKETS_MICROS
        .iter()
        .map(|us| *us as f64 / 1e6)
        .collect();
    histogram(
        &mut out,
        "rpa_db_commit_seconds",
        "Time the database writer took per batch, including the flush.",
        &bounds,
        &writer.commit_latency_buckets,
        writer.batches,
        writer.commit_micros as f64 / 1e6,
    );
    counter(
        &mut out,
        "rpa_db_commits_failed_total",
        "Batches whose commit failed.",
        writer.failed_commits,
    );
    counter(
        &mut out,
        "rpa_events_written_total",
        "Events this instance committed (job, robot and schedule changes).",
        writer.events,
    );
    let mut response = Response::new(out.into());
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}
