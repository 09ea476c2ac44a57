//! Schemathesis, a property-based API fuzzer, against a running gateway:
//! it reads `GET /openapi.json`, generates requests for every operation
//! (valid ones, invalid ones, unexpected methods, and chains of them) and
//! checks every answer against the document with all of its checks: no
//! server error, documented status, content type, headers and body,
//! invalid data refused, valid data accepted, created resources reachable.
//! Any finding fails the test with schemathesis' report.
//!
//! The run is reproducible: deterministic generation (no seed, no example
//! database), a bounded number of examples per operation, and the versions pinned in
//! `gateway/tests/requirements.txt`. What the run is allowed to answer
//! beyond schemathesis' defaults, and why, is in
//! `gateway/tests/schemathesis/schemathesis.toml`; the two rules of a new
//! item JSON Schema cannot state (NFC names, real signatures) are applied
//! to the generated valid creates by `gateway/tests/schemathesis/hooks.py`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::repo_root;

/// Test cases per operation and phase: enough to reach every documented
/// answer, few enough for a run of about a minute on two cores.
const MAX_EXAMPLES: &str = "40";
/// A run that takes longer than this is a hang, not a slow run.
const HANG: Duration = Duration::from_secs(900);

/// How many operations `schemas/openapi.json` describes.
fn load_operations() -> usize {
    let text = std::fs::read_to_string(repo_root().join("schemas/openapi.json"))
        .expect("schemas/openapi.json is readable");
    let doc: serde_json::Value = serde_json::from_str(&text).expect("the document is JSON");
    doc["paths"]
        .as_object()
        .expect("the document has paths")
        .values()
        .filter_map(serde_json::Value::as_object)
        .map(|path| {
            path.keys()
                .filter(|k| ["get", "put", "post", "delete", "patch"].contains(&k.as_str()))
                .count()
        })
        .sum()
}

fn requirements() -> PathBuf {
    repo_root().join("gateway/tests/requirements.txt")
}

/// The Python that runs schemathesis: `$PYTHON`, else `python3`.
fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_string())
}

/// The schemathesis version `requirements.txt` pins.
fn pinned_version() -> String {
    let text = std::fs::read_to_string(requirements()).expect("requirements.txt is readable");
    text.lines()
        .find_map(|line| line.trim().strip_prefix("schemathesis=="))
        .map(str::to_string)
        .expect("requirements.txt pins schemathesis==<version>")
}

/// Fails (never skips) unless the pinned schemathesis is installed.
fn require_schemathesis() {
    let install = format!(
        "run `{} -m pip install -r {}`",
        python(),
        requirements().display()
    );
    let output = Command::new(python())
        .args(["-m", "schemathesis.cli", "--version"])
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {}: {e}; install Python 3, then {install}",
                python()
            )
        });
    let printed = String::from_utf8_lossy(&output.stdout).to_string()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "schemathesis is not installed for {}: {install}\n{printed}",
        python()
    );
    let pinned = pinned_version();
    assert!(
        printed.contains(&format!("version {pinned}")),
        "schemathesis {pinned} is pinned, but {} has another: {install}\n{printed}",
        python()
    );
}

/// Runs schemathesis against `base` in `dir` and returns its exit status
/// and everything it printed.
fn run_schemathesis(base: &str, dir: &Path) -> (bool, String) {
    let config = repo_root().join("gateway/tests/schemathesis/schemathesis.toml");
    let hooks = repo_root().join("gateway/tests/schemathesis/hooks.py");
    let log = dir.join("schemathesis.log");
    let out = std::fs::File::create(&log).expect("create the log");
    let err = out.try_clone().expect("clone the log handle");
    let mut child = Command::new(python())
        .args(["-m", "schemathesis.cli", "--no-color", "--config-file"])
        .arg(&config)
        .arg("run")
        .arg(format!("{base}/openapi.json"))
        .args(["--url", base])
        .args(["--checks", "all"])
        .args(["--max-examples", MAX_EXAMPLES])
        .arg("--generation-deterministic")
        .args(["--workers", "1", "--request-timeout", "60"])
        .env("SCHEMATHESIS_HOOKS", &hooks)
        // No `__pycache__` beside the hooks in the source tree.
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("start schemathesis");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for schemathesis") {
            break status;
        }
        if started.elapsed() > HANG {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "schemathesis did not finish within {HANG:?}:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let printed = std::fs::read_to_string(&log).expect("read the log");
    (status.success(), printed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_nothing_against_the_document() {
    require_schemathesis();
    let gw = common::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let base = gw.base.clone();
    let path = dir.path().to_path_buf();
    let (passed, printed) = tokio::task::spawn_blocking(move || run_schemathesis(&base, &path))
        .await
        .expect("join");
    assert!(
        passed,
        "schemathesis found answers that contradict schemas/openapi.json:\n{printed}"
    );
    // Not vacuous: every operation of the document was exercised.
    let operations = load_operations();
    for summary in [
        format!("Selected: {operations}/{operations}"),
        format!("Tested: {operations}"),
        "No issues found".to_string(),
    ] {
        assert!(
            printed.contains(&summary),
            "schemathesis' summary lacks {summary:?}:\n{printed}"
        );
    }
}
