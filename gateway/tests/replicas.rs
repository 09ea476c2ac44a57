//! Many upstreams: three `gateway serve-spin` replicas (standing in for
//! `spin up`) on ONE data directory (SQLite in WAL mode is safe across
//! processes on one machine), the real gateway binary in front of them in
//! external mode, and sustained mixed load. One replica is SIGKILLed
//! mid-run, then restarted on the same port.
//!
//! What must hold: no request fails on the idempotent routes (`GET /items`,
//! `GET /items/{id}`: their retries go to another replica) nor on
//! `POST /validate` (an `auto` route: native stands in); every create
//! (each with its own `Idempotency-Key`, sent again with the same key
//! after a failure, as a client would) is stored exactly once; the dead
//! replica is ejected (seen in `/readyz`) within [`EJECTION_BOUND`]; the
//! restarted one takes traffic again (its `gateway_upstream_attempts_total`
//! grows) within [`RETURN_BOUND`].
//!
//! Figures go to stdout: `cargo test -p gateway --test replicas -- --nocapture`.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{free_port, repo_root, require_app_wasm};
use serde_json::Value;

/// Concurrent clients.
const WORKERS: usize = 8;
/// Failures in a row that eject a replica: the default, and no more than
/// the routes' `circuit.consecutive_failures` (5), so a replica is ejected
/// no later than a route's breaker would open on it (see the README,
/// "Breaker and ejection").
const FAILURES_TO_EJECT: u32 = 5;
/// Generous bounds (the measured figures are far below; see RELIABILITY.md).
const EJECTION_BOUND: Duration = Duration::from_secs(10);
const RETURN_BOUND: Duration = Duration::from_secs(60);

/// A child process, SIGKILLed when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn replica(port: u16, data_dir: &Path) -> Process {
    let child = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["serve-spin", "--manifest", "spin.toml", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(data_dir)
        .current_dir(repo_root())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("serve-spin starts");
    Process(child)
}

/// Waits until `url` answers 200 (at most 2 minutes: a cold compile).
async fn wait_healthy(url: &str) {
    let http = common::client();
    for _ in 0..1200 {
        if let Ok(r) = http.get(url).send().await
            && r.status() == 200
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{url} never answered 200");
}

/// The built-in routes with `[spin]` pointing at `upstreams`.
fn config(upstreams: &[String], public: u16, admin: u16) -> String {
    let builtin = gateway::config::BUILTIN;
    let end = builtin.find("[[route]]").expect("and routes");
    let list: Vec<String> = upstreams.iter().map(|u| format!("{u:?}")).collect();
    format!(
        "[server]\nlisten = \"127.0.0.1:{public}\"\nadmin_listen = \"127.0.0.1:{admin}\"\n\n\
         [spin]\nmode = \"external\"\nupstream = [{}]\n\
         outlier = {{ consecutive_failures = {FAILURES_TO_EJECT}, max_ejected_percent = 50, probe_every_ms = 200 }}\n\n{}",
        list.join(", "),
        // One retry, not two: it must land on another replica.
        builtin[end..].replace("retry = { attempts = 2", "retry = { attempts = 1")
    )
}

/// `/readyz`'s entry for the replica at `address`.
async fn replica_state(admin: &str, address: &str) -> Option<Value> {
    let ready: Value = common::client()
        .get(format!("{admin}/readyz"))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    ready["spin"]["replicas"]
        .as_array()?
        .iter()
        .find(|r| r["address"] == address)
        .cloned()
}

/// `gateway_upstream_attempts_total{outcome="ok",upstream=address}`.
async fn ok_attempts(admin: &str, address: &str) -> u64 {
    let text = common::admin_metrics(admin).await;
    text.lines()
        .filter(|l| l.starts_with("gateway_upstream_attempts_total{"))
        .filter(|l| l.contains("outcome=\"ok\"") && l.contains(&format!("upstream=\"{address}\"")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

#[derive(Default)]
struct Counts {
    sent: AtomicUsize,
    failed_idempotent: AtomicUsize,
    failed_validate: AtomicUsize,
    create_resends: AtomicUsize,
}

/// One create, sent until it gets its 201 (same key each time).
async fn create(http: &reqwest::Client, base: &str, name: &str, counts: &Counts) -> u64 {
    let body = serde_json::json!({ "name": name }).to_string();
    for attempt in 0..100 {
        counts.sent.fetch_add(1, Ordering::Relaxed);
        if attempt > 0 {
            counts.create_resends.fetch_add(1, Ordering::Relaxed);
        }
        let sent = http
            .post(format!("{base}/items"))
            .header("content-type", "application/json")
            .header("idempotency-key", format!("replicas-{name}"))
            .body(body.clone())
            .send()
            .await;
        if let Ok(response) = sent {
            let status = response.status().as_u16();
            if let Ok(stored) = response.json::<Value>().await {
                if status == 201 {
                    assert_eq!(stored["name"], name);
                    return stored["id"].as_u64().expect("a 201 names the id");
                }
                assert!(status >= 500, "create {name}: {status} {stored}");
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("create {name} never succeeded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_replica_is_ejected_and_a_restarted_one_serves_again() {
    require_app_wasm();
    let data = tempfile::tempdir().unwrap();
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let mut replicas: Vec<Process> = ports.iter().map(|p| replica(*p, data.path())).collect();
    for port in &ports {
        wait_healthy(&format!("http://127.0.0.1:{port}/.well-known/spin/health")).await;
    }
    let info: Value = common::get_json(&format!(
        "http://127.0.0.1:{}/.well-known/spin/info",
        ports[0]
    ))
    .await;
    assert_eq!(info["name"], "items", "{info}");

    let (public, admin_port) = (free_port(), free_port());
    let upstreams: Vec<String> = ports
        .iter()
        .map(|p| format!("http://127.0.0.1:{p}"))
        .collect();
    let config_path = data.path().join("gateway.toml");
    std::fs::write(&config_path, config(&upstreams, public, admin_port)).unwrap();
    let _gateway = Process(
        Command::new(env!("CARGO_BIN_EXE_gateway"))
            .arg("--config")
            .arg(&config_path)
            .current_dir(repo_root())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the gateway starts"),
    );
    let base = format!("http://127.0.0.1:{public}");
    let admin = format!("http://127.0.0.1:{admin_port}");
    assert!(common::comes_up(&admin, 1200).await, "the gateway came up");
    let counts = Arc::new(Counts::default());
    let seed = create(&common::client(), &base, "seed", &counts).await;

    let stop = Arc::new(AtomicBool::new(false));
    let load_started = Instant::now();
    let mut workers = Vec::new();
    for w in 0..WORKERS {
        let (base, counts, stop) = (base.clone(), counts.clone(), stop.clone());
        workers.push(tokio::spawn(async move {
            let http = common::client();
            let batch = common::small_batch();
            let mut created = Vec::new();
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                match i % 4 {
                    0 => created.push(create(&http, &base, &format!("w{w}-{i}"), &counts).await),
                    op => {
                        counts.sent.fetch_add(1, Ordering::Relaxed);
                        let request = match op {
                            1 => http.get(format!("{base}/items?limit=5")),
                            2 => http.get(format!("{base}/items/{seed}")),
                            _ => http
                                .post(format!("{base}/validate"))
                                .header("content-type", "application/json")
                                .body(batch.clone()),
                        };
                        let ok = match request.send().await {
                            Ok(r) => r.status() == 200 && r.bytes().await.is_ok(),
                            Err(_) => false,
                        };
                        if !ok {
                            let counter = if op == 3 {
                                &counts.failed_validate
                            } else {
                                &counts.failed_idempotent
                            };
                            counter.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
            created
        }));
    }

    tokio::time::sleep(Duration::from_secs(3)).await;
    let victim = format!("127.0.0.1:{}", ports[0]);
    let before_kill = ok_attempts(&admin, &victim).await;
    assert!(before_kill > 0, "the victim took traffic before the kill");
    let killed_at = Instant::now();
    drop(replicas.remove(0));
    let ejected_after = loop {
        let state = replica_state(&admin, &victim).await;
        if state.as_ref().is_some_and(|s| s["state"] == "ejected") {
            let s = state.unwrap_or_default();
            assert!(s["ejected_since_unix_ms"].is_u64(), "{s}");
            break killed_at.elapsed();
        }
        assert!(
            killed_at.elapsed() < EJECTION_BOUND,
            "not ejected: {state:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let ready: Value = common::get_json(&format!("{admin}/readyz")).await;
    assert_eq!(ready["ready"], true, "two replicas still serve: {ready}");
    tokio::time::sleep(Duration::from_secs(3)).await;

    let restarted_at = Instant::now();
    let at_restart = ok_attempts(&admin, &victim).await;
    replicas.insert(0, replica(ports[0], data.path()));
    let serving_after = loop {
        let state = replica_state(&admin, &victim).await;
        if state.is_some_and(|s| s["state"] == "healthy")
            && ok_attempts(&admin, &victim).await > at_restart
        {
            break restarted_at.elapsed();
        }
        assert!(
            restarted_at.elapsed() < RETURN_BOUND,
            "the restarted replica takes no traffic"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let mut created: Vec<u64> = vec![seed];
    for worker in workers {
        created.extend(worker.await.expect("a worker panicked"));
    }
    let took = load_started.elapsed();

    // Audit: every create stored exactly once, nothing else stored.
    let mut stored: HashMap<u64, String> = HashMap::new();
    let mut after = 0u64;
    loop {
        let page: Vec<Value> =
            common::get_json(&format!("{base}/items?limit=1000&after={after}")).await;
        for item in &page {
            let id = item["id"].as_u64().expect("an id");
            let name = item["name"].as_str().unwrap_or_default().to_string();
            assert!(stored.insert(id, name).is_none(), "id {id} listed twice");
            after = after.max(id);
        }
        if page.len() < 1000 {
            break;
        }
    }
    let mut names: Vec<&String> = stored.values().collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), stored.len(), "a create was stored twice");
    let mut ids = created.clone();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), created.len(), "two creates got one id");
    assert_eq!(
        stored.len(),
        created.len(),
        "stored items = acknowledged creates"
    );
    assert!(created.iter().all(|id| stored.contains_key(id)));

    let sent = counts.sent.load(Ordering::Relaxed);
    println!(
        "replicas: {sent} requests in {:.1} s ({WORKERS} clients; kill after 3 s); \
         failed: idempotent {}, validate {}; creates {} (resent with their key: {}); \
         ejected {} ms after SIGKILL; restarted replica serving {} ms after restart",
        took.as_secs_f64(),
        counts.failed_idempotent.load(Ordering::Relaxed),
        counts.failed_validate.load(Ordering::Relaxed),
        created.len(),
        counts.create_resends.load(Ordering::Relaxed),
        ejected_after.as_millis(),
        serving_after.as_millis(),
    );
    assert_eq!(
        counts.failed_idempotent.load(Ordering::Relaxed),
        0,
        "GET failures"
    );
    assert_eq!(
        counts.failed_validate.load(Ordering::Relaxed),
        0,
        "validate failures"
    );
}
