//! The smoke run as a test: every scenario, tiny, against freshly started servers. Ignored by
//! default (CI runs `rpa-loadgen smoke` itself); it needs a release server binary:
//! `target/release/socket-server`, or the path in `RPA_SERVER_BIN`.

use std::path::PathBuf;
use std::process::Command;

fn server_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("RPA_SERVER_BIN") {
        return PathBuf::from(path);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    target.join("release").join("socket-server")
}

#[test]
#[ignore = "starts servers and thousands of sockets; run with --ignored"]
fn smoke_runs_every_scenario() {
    let server = server_bin();
    assert!(
        server.exists(),
        "build the server first (cargo build --release -p socket-server) or set RPA_SERVER_BIN; looked for {}",
        server.display()
    );
    let json = std::env::temp_dir().join(format!("rpa-loadgen-smoke-{}.json", std::process::id()));
    let output = Command::new(env!("CARGO_BIN_EXE_rpa-loadgen"))
        .arg("smoke")
        .arg("--server-bin")
        .arg(&server)
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "smoke failed ({:?}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let _ = std::fs::remove_file(&json);
    let scenarios: Vec<&str> = doc["reports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["scenario"].as_str().unwrap())
        .collect();
    assert_eq!(
        scenarios,
        [
            "p1-idle",
            "p2-memory",
            "p3-triggers",
            "p4-e2e",
            "p5-fanout",
            "p6-lateness",
            "p7-restart",
            "p8-reconnect"
        ]
    );
    for report in doc["reports"].as_array().unwrap() {
        assert!(
            report["failures"].as_array().unwrap().is_empty(),
            "{report}"
        );
        assert!(!report["figures"].as_array().unwrap().is_empty());
        assert!(report["machine"]["nproc"].as_u64().unwrap() > 0);
    }
}
