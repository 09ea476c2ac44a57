//! Durability under concurrency, through the real `gateway` binary and the
//! embedded Spin host: every create answered 201 is stored exactly once,
//! even when the process is SIGKILLed mid-load and restarted on the same
//! data directory.
//!
//! What this proves: the create component commits before it answers 201,
//! nothing is acknowledged from memory, and SQLite's WAL recovers on the
//! next start. Then every create that got no 201 (timed out, or in flight
//! at the kill) is sent again with its `Idempotency-Key`: those that had
//! committed are replayed, the others created, and each create ends up
//! stored exactly once. A SIGKILL keeps the kernel's page cache, so it does not
//! exercise `synchronous=FULL` (that is for power loss; the host's unit
//! tests read the setting back).
//!
//! Numbers go to stdout: `cargo test -p gateway --test durability -- --nocapture`.

mod common;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{repo_root, require_app_wasm};

/// Concurrent connections (one client, so one connection, per worker).
const CONNECTIONS: usize = 64;
/// Ids below this are chosen by clients; server-assigned ones come after it
/// (a seed item holds it), so the two kinds never collide.
const SEED_ID: u32 = 1_000_000;

fn free_addr() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

/// The gateway binary on a data dir; SIGKILLed when dropped.
struct Gateway {
    child: Child,
    base: String,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Gateway {
    async fn start(data_dir: &Path) -> Gateway {
        let public = free_addr();
        let admin = free_addr();
        let child = Command::new(env!("CARGO_BIN_EXE_gateway"))
            .args(["--manifest", "spin.toml", "--data-dir"])
            .arg(data_dir)
            .args(["--listen", &public, "--admin-listen", &admin])
            .current_dir(repo_root())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the gateway binary starts");
        let gateway = Gateway {
            child,
            base: format!("http://{public}"),
        };
        assert!(
            common::comes_up(&format!("http://{admin}"), 1200).await,
            "the gateway did not come up"
        );
        gateway
    }

    /// SIGKILL: no shutdown code runs.
    fn kill(&mut self) {
        self.child.kill().expect("SIGKILL");
        let _ = self.child.wait();
    }
}

/// One connection's client: keep-alive, HTTP/1.1, a generous timeout so a
/// slow create is not mistaken for a lost one.
fn connection() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// One create a worker sends: unique name, maybe an id, its own key.
#[derive(Clone, Debug)]
struct Create {
    name: String,
    id: Option<u32>,
    key: String,
}

impl Create {
    fn planned(worker: usize, seq: usize) -> Create {
        let name = format!("w{worker}-n{seq}");
        // Half choose their id (unique below SEED_ID), half let the server.
        let global = seq * CONNECTIONS + worker;
        let id = global
            .is_multiple_of(2)
            .then(|| 1 + u32::try_from(global / 2).unwrap());
        Create {
            key: format!("durability-{name}"),
            name,
            id,
        }
    }

    fn body(&self) -> String {
        match self.id {
            Some(id) => serde_json::json!({"id": id, "name": self.name}),
            None => serde_json::json!({"name": self.name}),
        }
        .to_string()
    }
}

/// What became of one create.
#[derive(Debug)]
enum Outcome {
    /// 201 (body read): the stored id, and whether it was a replay.
    Acked(u32, bool),
    /// Another status.
    Refused(u16),
    /// No complete answer (connection broken, e.g. by the kill).
    Unanswered,
}

/// Sends one create (with its `Idempotency-Key`) and checks a 201's body.
async fn send(client: &reqwest::Client, base: &str, create: &Create) -> Outcome {
    let sent = client
        .post(format!("{base}/items"))
        .header("content-type", "application/json")
        .header("idempotency-key", &create.key)
        .body(create.body())
        .send()
        .await;
    let Ok(response) = sent else {
        return Outcome::Unanswered;
    };
    let status = response.status().as_u16();
    let replayed = response.headers().contains_key("idempotent-replayed");
    // A 201 counts once its body arrived: that is what a client acts on.
    let Ok(stored) = response.json::<serde_json::Value>().await else {
        return Outcome::Unanswered;
    };
    if status != 201 {
        return Outcome::Refused(status);
    }
    let id = stored["id"]
        .as_u64()
        .and_then(|i| u32::try_from(i).ok())
        .expect("a 201 carries the item's id");
    match create.id {
        Some(wanted) => assert_eq!(id, wanted, "an explicit id is kept"),
        None => assert!(id > SEED_ID, "server ids follow the seed: {id}"),
    }
    assert_eq!(stored["name"], create.name.as_str());
    Outcome::Acked(id, replayed)
}

/// Every create sent and what became of it.
#[derive(Default)]
struct Tally {
    outcomes: Vec<(Create, Outcome)>,
}

impl Tally {
    /// id -> name of every 201; panics if two 201s carry one id.
    fn acked(&self) -> HashMap<u32, String> {
        let mut acked = HashMap::new();
        for (create, outcome) in &self.outcomes {
            if let Outcome::Acked(id, _) = outcome {
                let earlier = acked.insert(*id, create.name.clone());
                assert!(earlier.is_none(), "two 201s for id {id}");
            }
        }
        acked
    }

    fn refused(&self) -> HashMap<u16, usize> {
        let mut refused = HashMap::new();
        for (_, outcome) in &self.outcomes {
            if let Outcome::Refused(status) = outcome {
                *refused.entry(*status).or_default() += 1;
            }
        }
        refused
    }

    fn count(&self, f: impl Fn(&Outcome) -> bool) -> usize {
        self.outcomes.iter().filter(|(_, o)| f(o)).count()
    }

    /// The creates that got no 201.
    fn unacknowledged(&self) -> Vec<Create> {
        self.outcomes
            .iter()
            .filter(|(_, o)| !matches!(o, Outcome::Acked(..)))
            .map(|(c, _)| c.clone())
            .collect()
    }
}

/// Runs `CONNECTIONS` workers, each creating items one after another until
/// it has made `per_worker` requests or `stop` is set; a worker stops at
/// its first unanswered request. `acks` counts 201s as they arrive.
async fn load(
    base: &str,
    per_worker: usize,
    stop: Arc<AtomicBool>,
    acks: Arc<AtomicUsize>,
) -> Tally {
    let mut tasks = Vec::new();
    for worker in 0..CONNECTIONS {
        let base = base.to_string();
        let stop = stop.clone();
        let acks = acks.clone();
        tasks.push(tokio::spawn(async move {
            let client = connection();
            let mut mine = Vec::new();
            for seq in 0..per_worker {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let create = Create::planned(worker, seq);
                let outcome = send(&client, &base, &create).await;
                let unanswered = matches!(outcome, Outcome::Unanswered);
                if matches!(outcome, Outcome::Acked(..)) {
                    acks.fetch_add(1, Ordering::SeqCst);
                }
                mine.push((create, outcome));
                if unanswered {
                    break;
                }
            }
            mine
        }));
    }
    let mut tally = Tally::default();
    for task in tasks {
        tally.outcomes.extend(task.await.expect("worker"));
    }
    tally
}

/// Sends every unacknowledged create again, same key and body, as a client
/// that never saw an answer would; each must now be a 201. Returns how many
/// were replays (the first attempt had committed after all).
async fn retry_unacknowledged(base: &str, tally: &mut Tally) -> usize {
    let client = connection();
    let mut replays = 0;
    for create in tally.unacknowledged() {
        let outcome = send(&client, base, &create).await;
        match outcome {
            Outcome::Acked(_, replayed) => replays += usize::from(replayed),
            other => panic!("retry of {create:?}: {other:?}"),
        }
        tally.outcomes.push((create, outcome));
    }
    replays
}

/// Every stored item (id -> name), paging with `limit=1000` and the `Link`
/// header; panics on an id listed twice.
async fn list_all(base: &str) -> HashMap<u32, String> {
    let client = connection();
    let mut url = format!("{base}/items?limit=1000");
    let mut out = HashMap::new();
    let mut pages = 0;
    loop {
        let response = client.get(&url).send().await.expect("list");
        assert_eq!(response.status(), 200, "{url}");
        let next = response
            .headers()
            .get("link")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once('<'))
            .and_then(|(_, rest)| rest.split_once('>'))
            .map(|(target, _)| format!("{base}{target}"));
        let items: Vec<serde_json::Value> = response.json().await.expect("a JSON array");
        pages += 1;
        for item in items {
            let id = u32::try_from(item["id"].as_u64().expect("id")).unwrap();
            let name = item["name"].as_str().expect("name").to_string();
            assert!(
                out.insert(id, name).is_none(),
                "item {id} listed twice (page {pages})"
            );
        }
        match next {
            Some(next) => url = next,
            None => break,
        }
        assert!(pages < 100, "paging does not end");
    }
    out
}

/// Asserts every acknowledged create is stored under its id, and every
/// stored item is one create (no name twice). Returns how many were lost.
fn assert_all_acked_stored(tally: &Tally, listed: &HashMap<u32, String>) -> usize {
    let mut lost = Vec::new();
    for (id, name) in tally.acked() {
        match listed.get(&id) {
            Some(stored) => assert_eq!(stored, &name, "item {id} holds another item"),
            None => lost.push(id),
        }
    }
    lost.sort_unstable();
    assert!(lost.is_empty(), "acknowledged but not stored: {lost:?}");
    let names: HashSet<&String> = listed.values().collect();
    assert_eq!(names.len(), listed.len(), "one create stored twice");
    lost.len()
}

async fn seed(base: &str) {
    let response = connection()
        .post(format!("{base}/items"))
        .header("content-type", "application/json")
        .body(format!(r#"{{"id": {SEED_ID}, "name": "seed"}}"#))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_are_all_stored_exactly_once() {
    require_app_wasm();
    let dir = tempfile::tempdir().unwrap();
    let gateway = Gateway::start(dir.path()).await;
    seed(&gateway.base).await;

    let per_worker = 3000 / CONNECTIONS + 1; // 3,008 creates
    let attempted = per_worker * CONNECTIONS;
    let started = Instant::now();
    let mut tally = load(
        &gateway.base,
        per_worker,
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicUsize::new(0)),
    )
    .await;
    let took = started.elapsed();
    let first_round = tally.acked().len();
    let refused = tally.refused();
    let listed = list_all(&gateway.base).await;
    let lost = assert_all_acked_stored(&tally, &listed);
    let stored_unacked = listed.len() - 1 - first_round;

    let replays = retry_unacknowledged(&gateway.base, &mut tally).await;
    let listed = list_all(&gateway.base).await;
    assert_all_acked_stored(&tally, &listed);
    println!(
        "durability/concurrent: {attempted} creates over {CONNECTIONS} connections in {:.1} s \
         ({:.0}/s): {first_round} acknowledged, refused {refused:?}, listed {} (+1 seed), \
         lost {lost}, stored but unacknowledged {stored_unacked}; retried with the same \
         Idempotency-Key: {replays} replayed, all {} now stored once",
        took.as_secs_f64(),
        attempted as f64 / took.as_secs_f64(),
        first_round + stored_unacked,
        listed.len() - 1,
    );
    assert_eq!(
        listed.len(),
        attempted + 1,
        "one item per create, after retries"
    );
    assert_eq!(
        replays, stored_unacked,
        "a stored create is replayed, not repeated"
    );
    // Not a correctness property, but the write queue's purpose: under this
    // load no create should wait past the route's 5 s timeout.
    let refused_total: usize = refused.values().sum();
    assert!(
        refused_total * 100 <= attempted,
        "more than 1% refused: {refused:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_creates_survive_sigkill() {
    require_app_wasm();
    let dir = tempfile::tempdir().unwrap();
    let mut gateway = Gateway::start(dir.path()).await;
    seed(&gateway.base).await;

    let stop = Arc::new(AtomicBool::new(false));
    let acks = Arc::new(AtomicUsize::new(0));
    let load = tokio::spawn({
        let base = gateway.base.clone();
        let stop = stop.clone();
        let acks = acks.clone();
        async move { load(&base, 1000, stop, acks).await }
    });
    // Kill in the middle: after ~1,500 acknowledgements, with 64 in flight.
    let deadline = Instant::now() + Duration::from_secs(120);
    while acks.load(Ordering::SeqCst) < 1500 {
        assert!(Instant::now() < deadline, "the load did not get going");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    gateway.kill();
    let acked_at_kill = acks.load(Ordering::SeqCst);
    stop.store(true, Ordering::SeqCst);
    let mut tally = load.await.expect("load");
    let acked = tally.acked().len();
    let unanswered = tally.count(|o| matches!(o, Outcome::Unanswered));
    let refused = tally.refused();

    let restarted = Gateway::start(dir.path()).await;
    let listed = list_all(&restarted.base).await;
    let lost = assert_all_acked_stored(&tally, &listed);
    let stored_unacked = listed.len() - 1 - acked;
    assert!(unanswered > 0, "the kill happened mid-load");
    // Only requests without a 201 may have been stored unacknowledged.
    assert!(stored_unacked <= tally.unacknowledged().len());

    let replays = retry_unacknowledged(&restarted.base, &mut tally).await;
    let listed = list_all(&restarted.base).await;
    assert_all_acked_stored(&tally, &listed);
    println!(
        "durability/sigkill: SIGKILL after {acked_at_kill} acknowledgements; {acked} \
         acknowledged in all, unanswered (in flight at the kill) {unanswered}, refused \
         {refused:?}; after restart: lost {lost}, stored but unacknowledged {stored_unacked}; \
         retried with the same Idempotency-Key: {replays} replayed, {} stored once each",
        listed.len() - 1,
    );
    assert_eq!(
        replays, stored_unacked,
        "a stored create is replayed, not repeated"
    );
    assert_eq!(listed.len() - 1, tally.acked().len());
}
