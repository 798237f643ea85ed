//! Runs faults one after another, each bounded in time, each reported whatever happens.

use std::time::{Duration, Instant};

use crate::faults::{self, Env};
use crate::report::FaultReport;

/// One fault with its options; also the command line's subcommands `f1` to `f10`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Fault {
    /// kill -9 during a trigger burst, then restart; repeated.
    F1(faults::f01_kill::F1Args),
    /// An extended robot drops its TCP connection after a package was written, before acking.
    F2(faults::f02_drop_before_ack::F2Args),
    /// A field robot never reports.
    F3(faults::f03_silent_field_robot::F3Args),
    /// A slow robot stops reading.
    F4(faults::f04_slow_robot::F4Args),
    /// The database is busy: another connection holds the write lock.
    F5(faults::f05_db_busy::F5Args),
    /// The packages folder or the database is unwritable, the disk is full.
    F6(faults::f06_unwritable::F6Args),
    /// The server's clock jumps forward 1 h and back 1 h (libfaketime).
    F7(faults::f07_clock_jump::F7Args),
    /// A robot goes silent (SIGSTOP, no FIN).
    F8(faults::f08_sigstop::F8Args),
    /// SIGTERM under load.
    F9(faults::f09_sigterm::F9Args),
    /// The server is down for 10 minutes with a per-minute cron schedule.
    F10(faults::f10_downtime::F10Args),
}

impl Fault {
    pub fn id(&self) -> &'static str {
        match self {
            Fault::F1(args) if args.pool => "f1-pool",
            Fault::F1(_) => "f1",
            Fault::F2(_) => "f2",
            Fault::F3(_) => "f3",
            Fault::F4(_) => "f4",
            Fault::F5(_) => "f5",
            Fault::F6(_) => "f6",
            Fault::F7(_) => "f7",
            Fault::F8(_) => "f8",
            Fault::F9(_) => "f9",
            Fault::F10(_) => "f10",
        }
    }

    pub fn title(&self) -> &'static str {
        match self {
            Fault::F1(args) if args.pool => "kill -9 during a burst of pool triggers, then restart",
            Fault::F1(_) => "kill -9 during a trigger burst, then restart",
            Fault::F2(_) => "extended robot drops its connection before acknowledging",
            Fault::F3(_) => "field robot never reports",
            Fault::F4(_) => "slow robot that stops reading",
            Fault::F5(_) => "database busy (write lock held by another connection)",
            Fault::F6(_) => "packages folder or database unwritable / disk full",
            Fault::F7(_) => "clock jump forward 1 h and back 1 h (libfaketime)",
            Fault::F8(_) => "robot silent (SIGSTOP, no FIN)",
            Fault::F9(_) => "SIGTERM under load",
            Fault::F10(_) => "server down with a per-minute cron schedule",
        }
    }

    /// The most a fault may take before the harness gives up on it.
    fn time_limit(&self) -> Duration {
        match self {
            Fault::F1(args) => Duration::from_secs(120 + 60 * u64::from(args.cycles)),
            Fault::F10(args) if args.long => Duration::from_secs(20 * 60),
            _ => Duration::from_secs(300),
        }
    }

    pub async fn run(&self, env: &Env) -> FaultReport {
        let mut report = FaultReport::new(self.id(), self.title());
        println!("== {} {} ...", self.id().to_uppercase(), self.title());
        let started = Instant::now();
        let limit = self.time_limit();
        let result = tokio::time::timeout(limit, self.run_inner(env, &mut report)).await;
        match result {
            Ok(Ok(())) => {}
            Ok(Err(error)) => report.error = Some(format!("{error:#}")),
            Err(_) => report.error = Some(format!("did not finish within {} s", limit.as_secs())),
        }
        report.finish(started.elapsed());
        print!("{}", report.render());
        report
    }

    async fn run_inner(&self, env: &Env, report: &mut FaultReport) -> anyhow::Result<()> {
        match self {
            Fault::F1(args) => faults::f01_kill::run(env, args, report).await,
            Fault::F2(args) => faults::f02_drop_before_ack::run(env, args, report).await,
            Fault::F3(args) => faults::f03_silent_field_robot::run(env, args, report).await,
            Fault::F4(args) => faults::f04_slow_robot::run(env, args, report).await,
            Fault::F5(args) => faults::f05_db_busy::run(env, args, report).await,
            Fault::F6(args) => faults::f06_unwritable::run(env, args, report).await,
            Fault::F7(args) => faults::f07_clock_jump::run(env, args, report).await,
            Fault::F8(args) => faults::f08_sigstop::run(env, args, report).await,
            Fault::F9(args) => faults::f09_sigterm::run(env, args, report).await,
            Fault::F10(args) => faults::f10_downtime::run(env, args, report).await,
        }
    }
}
