//! `rpa-faults`: the fault-injection harness. See the crate README.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Args, Parser, Subcommand};
use rpa_faults::faults::{self, Env};
use rpa_faults::report::RunReport;
use rpa_faults::runner::Fault;

/// Fault-injection harness for the orchestrator: starts the real server binary in a temporary
/// folder, drives robots and triggers, injects faults F1-F10 (docs: quality.md) and checks
/// each fault's pass rule. Exits 1 when any fault fails.
#[derive(Debug, Parser)]
#[command(name = "rpa-faults", version, max_term_width = 100)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args)]
struct Global {
    /// The server binary under test (a release build).
    #[arg(
        long,
        global = true,
        default_value = "target/release/socket-server",
        value_name = "PATH"
    )]
    server_bin: PathBuf,
    /// The rpa-robot CLI (F8 runs it as a separate process). Default: next to --server-bin.
    #[arg(long, global = true, value_name = "PATH")]
    robot_bin: Option<PathBuf>,
    /// Also write the reports, with their figures, as JSON to this file.
    #[arg(long, global = true, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Where the servers' working folders go (default: the system's temporary folder).
    #[arg(long, global = true, value_name = "DIR")]
    work_dir: Option<PathBuf>,
    /// Keep the working folders (database, packages, logs) for inspection.
    #[arg(long, global = true)]
    keep_dirs: bool,
    /// libfaketime's library (libfaketimeMT.so.1). Default: where Debian's `faketime` puts it.
    #[arg(long, global = true, value_name = "PATH")]
    libfaketime: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Every fault, F1 to F10, with default options (F1 twice: for robots by address, and for a
    /// pool).
    All {
        /// F1's kill-and-restart cycles.
        #[arg(long, default_value_t = 10)]
        f1_cycles: u32,
        /// F10: the real ten-minute outage with a per-minute schedule (about 12 minutes).
        #[arg(long)]
        long: bool,
    },
    /// One fault: `f1` to `f10`.
    #[command(flatten)]
    One(Fault),
}

/// Each fault's options at their defaults, as its subcommand would parse them with no flags.
fn defaults<T: Args>() -> Option<T> {
    #[derive(Parser)]
    struct Wrap<T: Args> {
        #[command(flatten)]
        inner: T,
    }
    Wrap::<T>::try_parse_from(["defaults"])
        .ok()
        .map(|w| w.inner)
}

fn all(f1_cycles: u32, long: bool) -> Option<Vec<Fault>> {
    let mut f1: faults::f01_kill::F1Args = defaults()?;
    f1.cycles = f1_cycles;
    let f1_pool = faults::f01_kill::F1Args {
        pool: true,
        ..f1.clone()
    };
    let mut f10: faults::f10_downtime::F10Args = defaults()?;
    f10.long = long;
    Some(vec![
        Fault::F1(f1),
        Fault::F1(f1_pool),
        Fault::F2(defaults()?),
        Fault::F3(defaults()?),
        Fault::F4(defaults()?),
        Fault::F5(defaults()?),
        Fault::F6(defaults()?),
        Fault::F7(defaults()?),
        Fault::F8(defaults()?),
        Fault::F9(defaults()?),
        Fault::F10(f10),
    ])
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let faults = match cli.command {
        Command::All { f1_cycles, long } => match all(f1_cycles, long) {
            Some(faults) => faults,
            None => {
                eprintln!("rpa-faults: cannot build the default options");
                return ExitCode::from(2);
            }
        },
        Command::One(fault) => vec![fault],
    };
    let global = cli.global;
    if !global.server_bin.is_file() {
        eprintln!(
            "rpa-faults: --server-bin {}: no such file (build it: cargo build --release -p socket-server)",
            global.server_bin.display()
        );
        return ExitCode::from(2);
    }
    let server_bin = std::fs::canonicalize(&global.server_bin).unwrap_or(global.server_bin);
    let robot_bin = global
        .robot_bin
        .unwrap_or_else(|| server_bin.with_file_name("rpa-robot"));
    let env = Env {
        server_bin: server_bin.clone(),
        robot_bin: std::fs::canonicalize(&robot_bin).unwrap_or(robot_bin),
        work_dir: global.work_dir,
        keep_dirs: global.keep_dirs,
        libfaketime: global
            .libfaketime
            .or_else(rpa_faults::faketime::find_library),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("rpa-faults: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let started = Instant::now();
    let reports = runtime.block_on(async {
        let mut reports = Vec::new();
        for fault in &faults {
            reports.push(fault.run(&env).await);
        }
        reports
    });
    let run = RunReport {
        passed: reports.iter().all(|r| r.passed),
        duration_s: (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
        server_bin: server_bin.display().to_string(),
        faults: reports,
    };
    print!("{}", run.render_summary());
    if let Some(path) = &global.json {
        let written = serde_json::to_string_pretty(&run)
            .map_err(std::io::Error::other)
            .and_then(|text| std::fs::write(path, text + "\n"));
        if let Err(error) = written {
            eprintln!("rpa-faults: cannot write {}: {error}", path.display());
            return ExitCode::FAILURE;
        }
    }
    if run.passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
