//! F6: the packages folder or the database cannot be written, the disk is full.
//!
//! - Packages folder unwritable: `chattr +i` on it (root ignores permission bits, not the
//!   immutable flag); where chattr does not work, the folder is renamed away and a regular file
//!   put at its path.
//! - Database unwritable: `chattr +i` on the database file and its WAL.
//! - Disk full: the database, and in a second step the packages folder, live on small tmpfs
//!   mounts that the harness fills with a filler file; removing the filler is the recovery.
//!
//! In every case: each refused trigger gets a 5xx problem document, no job row and no package
//! file stay behind for it, and once the fault is removed the same server process accepts
//! triggers again and delivers them.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Args;
use rpa_testkit::HttpClient;
use serde_json::json;

use super::{Env, check_ledger, report_verdict, wait_all_due, wait_all_online};
use crate::api::{Api, Target, trigger};
use crate::checker::Answer;
use crate::clock::{floor_ms, now_us};
use crate::fleet::{Fleet, RobotSpec, SharedLedger, lock};
use crate::report::FaultReport;
use crate::server::{self, Server};

#[derive(Debug, Clone, Args)]
pub struct F6Args {
    /// Triggers posted while a folder or file is unwritable.
    #[arg(long, default_value_t = 5)]
    pub refused: usize,
    /// Size of each tmpfs mount for the disk-full cases, MiB.
    #[arg(long, default_value_t = 8)]
    pub tmpfs_mib: u64,
    /// Triggers posted at most while filling a disk, waiting for the first refusals.
    #[arg(long, default_value_t = 400)]
    pub max_fill_triggers: usize,
}

fn run_cmd(program: &str, args: &[&str]) -> std::result::Result<(), String> {
    match std::process::Command::new(program).args(args).output() {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(error) => Err(format!("{program}: {error}")),
    }
}

/// Whether files can be created in `dir` right now (by this process, as root or not).
fn writable(dir: &Path) -> bool {
    let probe = dir.join(".rpa-faults-probe");
    let ok = std::fs::write(&probe, b"x").is_ok();
    let _ = std::fs::remove_file(&probe);
    ok
}

/// A tmpfs mounted for the test, unmounted when dropped.
struct Mount(PathBuf);

impl Mount {
    fn new(path: &Path, mib: u64) -> std::result::Result<Mount, String> {
        std::fs::create_dir_all(path).map_err(|e| e.to_string())?;
        let size = format!("size={mib}m");
        run_cmd(
            "mount",
            &["-t", "tmpfs", "-o", &size, "tmpfs", &path.to_string_lossy()],
        )?;
        Ok(Mount(path.to_owned()))
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if run_cmd("umount", &[&self.0.to_string_lossy()]).is_err() {
            let _ = run_cmd("umount", &["-l", &self.0.to_string_lossy()]);
        }
    }
}

/// Fills the file system holding `dir` with one file; returns its path and size.
fn fill(dir: &Path) -> (PathBuf, u64) {
    use std::io::Write;
    let path = dir.join("filler");
    let mut written = 0;
    if let Ok(mut file) = std::fs::File::create(&path) {
        let chunk = vec![0_u8; 64 * 1024];
        while file.write_all(&chunk).is_ok() {
            written += chunk.len() as u64;
        }
        // Whatever is left, byte by byte in small pieces.
        let small = vec![0_u8; 512];
        while file.write_all(&small).is_ok() {
            written += small.len() as u64;
        }
        let _ = file.flush();
    }
    (path, written)
}

/// Package files (`<package_name>_<job id>`) of the given triggers (their package name is
/// their key).
fn package_files(dir: &Path, keys: &[&str]) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| {
                    name.rsplit_once('_')
                        .is_some_and(|(key, id)| keys.contains(&key) && id.parse::<i64>().is_ok())
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Problem codes that name the fault: the packages folder, the database.
const PACKAGE_CODES: &[&str] = &["packages_unwritable", "storage_full"];
const DATABASE_CODES: &[&str] = &["storage_unwritable", "storage_full"];

struct Case<'a> {
    label: &'a str,
    server: &'a Server,
    ledger: &'a SharedLedger,
    robot: &'a Target,
    packages_dir: PathBuf,
}

impl Case<'_> {
    async fn post(&self, key: &str) -> crate::checker::Trigger {
        let mut http = HttpClient::new(self.server.addr());
        let due = floor_ms(now_us() + 300_000);
        let record = trigger(&mut http, key, self.robot, due, 0).await;
        lock(self.ledger).triggers.push(record.clone());
        record
    }

    /// Makes sure the server takes triggers before a fault is injected.
    async fn ready(&self) -> Result<()> {
        if self
            .until_accepted("ready", Duration::from_secs(15))
            .await
            .is_none()
        {
            anyhow::bail!(
                "{}: the server refused triggers before the fault",
                self.label
            );
        }
        Ok(())
    }

    /// Posts until a trigger is accepted, every 500 ms (the server answers 503 with
    /// `Retry-After: 1` while it waits for its own retry), at most `limit`; how long it took.
    async fn until_accepted(&self, what: &str, limit: Duration) -> Option<Duration> {
        let started = Instant::now();
        for n in 0.. {
            let record = self.post(&format!("f6-{}-{what}-{n}", self.label)).await;
            if record.job_id().is_some() {
                return Some(started.elapsed());
            }
            if started.elapsed() >= limit {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        None
    }

    /// Judges the triggers posted while the fault lasted (`during`, in order) and the
    /// recovery. `codes`: the problem codes that name this fault.
    async fn judge(
        &self,
        report: &mut FaultReport,
        during: &[crate::checker::Trigger],
        codes: &[&str],
        pid_before: Option<u32>,
    ) -> serde_json::Value {
        let mut statuses = std::collections::BTreeMap::<String, usize>::new();
        let mut clear = true;
        let mut refused_yet = false;
        let mut accepted_after_refusal = 0;
        for record in during {
            let key = match &record.answer {
                Answer::Refused {
                    status,
                    code,
                    problem,
                    retry_after,
                } => {
                    refused_yet = true;
                    clear &= (500..600).contains(status)
                        && *problem
                        && (*status != 503 || *retry_after)
                        && code.as_deref().is_some_and(|c| codes.contains(&c));
                    format!("{status} {}", code.as_deref().unwrap_or("-"))
                }
                Answer::Accepted { status, .. } => {
                    if refused_yet {
                        accepted_after_refusal += 1;
                    }
                    format!("{status} accepted")
                }
                Answer::NoAnswer { error } => {
                    clear = false;
                    format!("no answer: {error}")
                }
            };
            *statuses.entry(key).or_default() += 1;
        }
        let refused: Vec<&crate::checker::Trigger> =
            during.iter().filter(|t| t.job_id().is_none()).collect();
        let accepted: Vec<&crate::checker::Trigger> =
            during.iter().filter(|t| t.job_id().is_some()).collect();
        report.check(
            &format!(
                "{}: triggers fail with a clear 5xx problem naming the fault ({}; 503 with Retry-After)",
                self.label,
                codes.join(" or ")
            ),
            !refused.is_empty() && clear && accepted_after_refusal == 0,
            format!(
                "{} triggers in order of posting: {statuses:?}; {} accepted before the server noticed, {accepted_after_refusal} after a refusal",
                during.len(),
                accepted.len() - accepted_after_refusal,
            ),
        );
        let recovered = self
            .until_accepted("recovered", Duration::from_secs(15))
            .await;
        let same_process = pid_before.is_some() && pid_before == self.server.pid();
        report.check(
            &format!(
                "{}: recovers without restart once the fault is removed",
                self.label
            ),
            recovered.is_some() && same_process,
            format!(
                "first trigger accepted {} after the fault was removed; same server process: {same_process}",
                recovered.map_or("never (15 s)".to_owned(), |t| format!("{:.1} s", t.as_secs_f64()))
            ),
        );
        // Accepted triggers' files are written after the commit, by a background writer that
        // retries: give it time. A refused trigger's file must never appear.
        let wanted: Vec<String> = accepted
            .iter()
            .filter_map(|t| t.job_id().map(|id| format!("{}_{id}", t.key)))
            .collect();
        let written =
            crate::api::wait_for(Duration::from_secs(10), Duration::from_millis(100), || {
                let dir = self.packages_dir.clone();
                let wanted = wanted.clone();
                async move { Ok(wanted.iter().all(|name| dir.join(name).is_file())) }
            })
            .await
            .unwrap_or(false);
        let refused_keys: Vec<&str> = refused.iter().map(|t| t.key.as_str()).collect();
        let stray = package_files(&self.packages_dir, &refused_keys);
        report.check(
            &format!(
                "{}: nothing half-stored: no package file for a refused trigger, the file of each accepted one once the fault is gone",
                self.label
            ),
            stray.is_empty() && written,
            format!(
                "{} package files of the {} refused triggers {:?}; files of the {} accepted during the fault: {}",
                stray.len(),
                refused.len(),
                stray.iter().take(3).collect::<Vec<_>>(),
                accepted.len(),
                if written { "all written" } else { "MISSING after 10 s" }
            ),
        );
        json!({"answers": statuses, "stray_package_files": stray.len(),
               "accepted_during_fault": accepted.len(), "their_files_written": written,
               "recovered_after_s": recovered.map(|t| t.as_secs_f64())})
    }
}

/// Posts until `needed` refusals in a row (or `max` triggers); every trigger posted.
async fn until_refused(case: &Case<'_>, needed: usize, max: usize) -> Vec<crate::checker::Trigger> {
    let mut during = Vec::new();
    let mut streak = 0;
    for n in 0..max {
        let record = case.post(&format!("f6-{}-{n}", case.label)).await;
        streak = if record.job_id().is_some() {
            0
        } else {
            streak + 1
        };
        during.push(record);
        if streak >= needed {
            break;
        }
    }
    during
}

pub async fn run(env: &Env, args: &F6Args, report: &mut FaultReport) -> Result<()> {
    let dir = env.work_dir("f6")?;
    let spec = server::spec(&env.server_bin, dir.path());
    let server = Server::start(spec).await?;
    let api = Api::new(server.addr());
    let ledger = SharedLedger::default();
    let mut fleet = Fleet::new(&server.ws_url(), Arc::clone(&ledger));
    fleet.add(RobotSpec::new(601, false));
    let robot = fleet.targets()[0].clone();
    if !wait_all_online(&api, &fleet.addresses(), Duration::from_secs(10)).await? {
        anyhow::bail!("the robot did not come online");
    }
    let packages = dir.path().join("packages");
    let case = Case {
        label: "packages-unwritable",
        server: &server,
        ledger: &ledger,
        robot: &robot,
        packages_dir: packages.clone(),
    };
    let before = case.post("f6-before").await;
    if before.job_id().is_none() {
        anyhow::bail!("the first trigger was refused: {:?}", before.answer);
    }

    // Packages folder unwritable.
    let away = dir.path().join("packages.away");
    let chattr =
        run_cmd("chattr", &["+i", &packages.to_string_lossy()]).is_ok() && !writable(&packages);
    let method = if chattr {
        "chattr +i on the folder"
    } else {
        let _ = run_cmd("chattr", &["-i", &packages.to_string_lossy()]);
        std::fs::rename(&packages, &away)?;
        std::fs::write(&packages, b"not a folder")?;
        "folder renamed away, a regular file at its path"
    };
    report.note(format!("packages folder made unwritable by: {method}"));
    let pid = server.pid();
    let during = until_refused(&case, args.refused, args.max_fill_triggers).await;
    if chattr {
        let _ = run_cmd("chattr", &["-i", &packages.to_string_lossy()]);
    } else {
        std::fs::remove_file(&packages)?;
        std::fs::rename(&away, &packages)?;
    }
    let figures_a = case.judge(report, &during, PACKAGE_CODES, pid).await;

    // Database unwritable (needs the immutable flag: permission bits do not stop root).
    let database = server.database();
    let wal = PathBuf::from(format!("{}-wal", database.display()));
    let case = Case {
        label: "database-unwritable",
        ..case
    };
    case.ready().await?;
    let figures_b = if run_cmd("chattr", &["+i", &database.to_string_lossy()]).is_ok() {
        let _ = run_cmd("chattr", &["+i", &wal.to_string_lossy()]);
        report.note("database made unwritable by: chattr +i on the database file and its WAL");
        let during = until_refused(&case, args.refused, args.max_fill_triggers).await;
        let _ = run_cmd("chattr", &["-i", &wal.to_string_lossy()]);
        let _ = run_cmd("chattr", &["-i", &database.to_string_lossy()]);
        case.judge(report, &during, DATABASE_CODES, pid).await
    } else {
        report.note("database-unwritable case skipped: chattr does not work here");
        json!("skipped: chattr unavailable")
    };

    // Disk full: database and packages on small tmpfs mounts of their own.
    let figures_c = disk_full(env, args, report, dir.path()).await?;

    let missing = wait_all_due(&ledger, 0, Duration::from_secs(15)).await;
    let verdict = check_ledger(&api, &ledger, 0, Duration::from_secs(1)).await?;
    report_verdict(report, &verdict);
    report.check(
        "accepted jobs are delivered",
        missing == 0,
        format!("{missing} due jobs not received"),
    );
    report.figure("packages_unwritable", figures_a);
    report.figure("database_unwritable", figures_b);
    report.figure("disk_full", figures_c);
    fleet.shutdown().await;
    let mut server = server;
    server.stop().await?;
    Ok(())
}

async fn disk_full(
    env: &Env,
    args: &F6Args,
    report: &mut FaultReport,
    dir: &Path,
) -> Result<serde_json::Value> {
    let ledger = &SharedLedger::default();
    let db_mount = dir.join("dbfs");
    let pkg_mount = dir.join("pkgfs");
    let mounts = Mount::new(&db_mount, args.tmpfs_mib)
        .and_then(|db| Mount::new(&pkg_mount, args.tmpfs_mib).map(|pkg| (db, pkg)));
    let (_db_fs, _pkg_fs) = match mounts {
        Ok(mounts) => mounts,
        Err(error) => {
            report.check(
                "disk full: the case can run (tmpfs mounts)",
                false,
                format!("mount failed: {error}"),
            );
            return Ok(json!({"skipped": error}));
        }
    };
    report.note(format!(
        "disk full: the database and the packages folder each on a {} MiB tmpfs, filled by a filler \
         file; the recovery is deleting it",
        args.tmpfs_mib
    ));
    let server_dir = dir.join("disk-full-server");
    std::fs::create_dir_all(&server_dir)?;
    let packages = pkg_mount.join("packages");
    let spec = server::spec(&env.server_bin, &server_dir)
        .flag(
            "--database",
            format!("sqlite://{}", db_mount.join("db.sqlite").display()),
        )
        .flag("--packages-dir", packages.display());
    let mut server = Server::start(spec).await?;
    let api = Api::new(server.addr());
    let mut fleet = Fleet::new(&server.ws_url(), Arc::clone(ledger));
    fleet.add(RobotSpec::new(602, false));
    let robot = fleet.targets()[0].clone();
    if !wait_all_online(&api, &fleet.addresses(), Duration::from_secs(10)).await? {
        anyhow::bail!("the robot did not come online");
    }
    let pid = server.pid();
    let mut figures = serde_json::Map::new();
    for (label, mount) in [
        ("database-disk-full", &db_mount),
        ("packages-disk-full", &pkg_mount),
    ] {
        let case = Case {
            label,
            server: &server,
            ledger,
            robot: &robot,
            packages_dir: packages.clone(),
        };
        case.ready().await?;
        let (filler, size) = fill(mount);
        let during = until_refused(&case, args.refused, args.max_fill_triggers).await;
        let _ = std::fs::remove_file(&filler);
        let codes = if label.starts_with("database") {
            DATABASE_CODES
        } else {
            PACKAGE_CODES
        };
        let mut case_figures = case.judge(report, &during, codes, pid).await;
        case_figures["filler_bytes"] = json!(size);
        figures.insert(label.to_owned(), case_figures);
    }
    let missing = wait_all_due(ledger, 0, Duration::from_secs(15)).await;
    let verdict = check_ledger(&api, ledger, 0, Duration::from_secs(1)).await?;
    super::report_verdict_as(report, "disk full", &verdict);
    report.check(
        "disk full: accepted jobs are delivered",
        missing == 0,
        format!("{missing} due jobs not received"),
    );
    fleet.shutdown().await;
    server.stop().await?;
    Ok(serde_json::Value::Object(figures))
}
