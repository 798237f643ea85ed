//! `socket-server`: reads its settings (flags, environment, defaults), installs the log and the
//! signal handlers, and runs the server. A setting that cannot work stops the start with one
//! line naming it and exit code 2: the error and its causes, `--flag: what: why`.

mod cli;
mod health;
mod memory;

use std::io::Write as _;
use std::process::ExitCode;

use rpa_server::StartError;
use rpa_server::logging::Chain;

/// Reports a failed start on one line of standard error, exit code 2. Causes may span lines
/// (libpq's messages do: `...failed: Connection refused\n\tIs the server running...`): they
/// are joined with spaces.
fn fail(message: impl std::fmt::Display) -> ExitCode {
    let message = message.to_string();
    let line = message.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut stderr = std::io::stderr();
    let _ = writeln!(stderr, "socket-server: {line}");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let read = match cli::Read::from_env() {
        Ok(read) => read,
        Err(error) => {
            use clap::error::ErrorKind;
            if matches!(
                error.kind(),
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
            ) {
                let _ = error.print();
                return ExitCode::SUCCESS;
            }
            let rendered = error.render().to_string();
            let line = rendered.lines().next().unwrap_or("invalid settings");
            return fail(line.trim_start_matches("error: "));
        }
    };
    let healthcheck = read.cli.healthcheck;
    let (config, warnings) = match read.into_config() {
        Ok(read) => read,
        Err(error) => return fail(error),
    };
    // Checked before the log folder is created: a bad flag leaves nothing behind.
    if let Err(error) = config.validate() {
        return fail(error);
    }
    // Before the log is set up: the check is a process of its own, which opens neither the
    // database nor the log.
    if healthcheck {
        return health::check(config.listen);
    }
    let logger =
        match rpa_server::logging::logger(&config.log_dir, &config.log_level, config.log_to_stderr)
        {
            Ok(logger) => logger,
            Err(error) => return fail(Chain(&StartError::Log(error))),
        };
    log::set_max_level(logger.max_level);
    if log::set_boxed_logger(logger.log).is_err() {
        return fail("a logger was already installed");
    }
    for warning in warnings {
        log::warn!("{warning}");
    }
    memory::tune();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => return fail(format_args!("cannot start the runtime: {error}")),
    };
    runtime.block_on(serve(config))
}

async fn serve(config: rpa_server::Config) -> ExitCode {
    // Installed before the ready line: a signal that arrives early must not kill the process.
    let shutdown = match shutdown_signal() {
        Ok(shutdown) => shutdown,
        Err(error) => return fail(format_args!("cannot install signal handlers: {error}")),
    };
    let server = match rpa_server::Server::start(config).await {
        Ok(server) => server,
        Err(error) => {
            // Into the log file; standard error gets the one line of `fail`.
            log::error!(target: rpa_server::logging::FILE_ONLY, "cannot start: {}", Chain(&error));
            return fail(Chain(&error));
        }
    };
    match server.local_addr() {
        Ok(address) => {
            let mut stdout = std::io::stdout();
            let _ = writeln!(stdout, "listening on {address}");
            let _ = stdout.flush();
            log::info!("listening on {address}");
        }
        Err(error) => return fail(format_args!("--listen: {error}")),
    }
    server.run(shutdown).await;
    ExitCode::SUCCESS
}

fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = terminate.recv() => log::info!("SIGTERM received"),
            _ = interrupt.recv() => log::info!("SIGINT received"),
        }
    })
}
