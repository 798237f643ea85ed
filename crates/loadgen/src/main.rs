use std::process::ExitCode;

use clap::Parser;
use rpa_loadgen::cli::{Cli, Scenario};
use rpa_loadgen::scenarios::{self, Outcome};
use rpa_loadgen::worker::{self, WorkerConfig};

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Scenario::Worker(args) = cli.scenario {
        let config = WorkerConfig {
            server: args.server,
            path: args.path,
            source: args.source,
            first: args.first,
            count: args.count,
            prefix: args.prefix,
            dialect: args.dialect,
            extended: args.extended,
            report: args.report,
        };
        return match worker::run(config) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("rpa-loadgen worker: {error:#}");
                ExitCode::from(2)
            }
        };
    }
    let json = json_path(&cli.scenario);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("rpa-loadgen: cannot start the runtime: {error}");
            return ExitCode::from(2);
        }
    };
    let outcome = runtime.block_on(scenarios::run(cli.scenario));
    let (document, ok) = match outcome {
        Err(error) => {
            eprintln!("rpa-loadgen: the scenario could not run: {error:#}");
            return ExitCode::from(2);
        }
        Ok(Outcome::One(report)) => {
            print!("{}", report.render());
            let ok = report.failures.is_empty();
            (serde_json::to_value(&report), ok)
        }
        Ok(Outcome::Smoke(smoke)) => {
            println!(
                "smoke: {} scenarios ran, {} could not run, {} with correctness failures, {:.1} s in all",
                smoke.reports.len(),
                smoke.errors.len(),
                smoke
                    .reports
                    .iter()
                    .filter(|r| !r.failures.is_empty())
                    .count(),
                smoke.elapsed.as_secs_f64()
            );
            for (name, error) in &smoke.errors {
                println!("  {name}: {error}");
            }
            let ok = smoke.ok();
            (
                Ok(serde_json::json!({
                    "scenario": "smoke",
                    "elapsed_s": smoke.elapsed.as_secs_f64(),
                    "errors": smoke.errors.iter().map(|(n, e)| serde_json::json!({"scenario": n, "error": e})).collect::<Vec<_>>(),
                    "reports": smoke.reports,
                })),
                ok,
            )
        }
    };
    if let Some(path) = json {
        let written = document
            .map_err(|e| e.to_string())
            .and_then(|doc| serde_json::to_vec_pretty(&doc).map_err(|e| e.to_string()))
            .and_then(|bytes| std::fs::write(&path, bytes).map_err(|e| e.to_string()));
        if let Err(error) = written {
            eprintln!("rpa-loadgen: cannot write {}: {error}", path.display());
            return ExitCode::from(2);
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn json_path(scenario: &Scenario) -> Option<std::path::PathBuf> {
    match scenario {
        Scenario::P1Idle(a) => a.common.json.clone(),
        Scenario::P2Memory(a) => a.common.json.clone(),
        Scenario::P3Triggers(a) => a.common.json.clone(),
        Scenario::P4E2e(a) => a.common.json.clone(),
        Scenario::P5Fanout(a) => a.common.json.clone(),
        Scenario::P6Lateness(a) => a.common.json.clone(),
        Scenario::P7Restart(a) => a.common.json.clone(),
        Scenario::P8Reconnect(a) => a.common.json.clone(),
        Scenario::P9Pool(a) => a.common.json.clone(),
        Scenario::Smoke(a) => a.common.json.clone(),
        Scenario::Worker(_) => None,
    }
}
