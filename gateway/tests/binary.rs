//! The `gateway` binary as an operator runs it: flags, SIGHUP reload,
//! graceful shutdown on SIGTERM.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::fake_spin::{self, Mode};
use common::{client, repo_root, require_app_wasm, require_wasm};

fn free_addr() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

struct Running {
    child: Child,
    public: String,
    admin: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the binary and waits until its admin listener answers.
async fn spawn(args: &[&str]) -> Running {
    let public = free_addr();
    let admin = free_addr();
    let child = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(args)
        .args(["--listen", &public, "--admin-listen", &admin])
        .current_dir(repo_root())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the gateway binary starts");
    let running = Running {
        child,
        public: format!("http://{public}"),
        admin: format!("http://{admin}"),
    };
    assert!(
        common::comes_up(&running.admin, 600).await,
        "the gateway did not come up"
    );
    running
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Waits for the process to exit after SIGTERM; `None` if it did not.
async fn exit_status(child: &mut Child) -> Option<std::process::ExitStatus> {
    for _ in 0..600 {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

/// `(generation, reloads_failed)` from `/admin/config`.
async fn reloads(gw: &Running) -> (u64, u64) {
    let config: serde_json::Value = common::get_json(&format!("{}/admin/config", gw.admin)).await;
    (
        config["generation"].as_u64().expect("generation"),
        config["reloads_failed"].as_u64().expect("reloads_failed"),
    )
}

/// Waits (up to 20 s) until the reload counters reach `want`.
async fn wait_for_reloads(gw: &Running, want: (u64, u64)) {
    let mut seen = (0, 0);
    for _ in 0..400 {
        seen = reloads(gw).await;
        if seen == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("reload counters stayed at {seen:?}, expected {want:?}");
}

#[tokio::test]
async fn config_file_reloads_on_sighup_and_sigterm_stops_gracefully() {
    let fake = fake_spin::start(Mode::Ok).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.toml");
    let write = |backend: &str| {
        std::fs::write(
            &path,
            format!(
                "[spin]\nmode = \"external\"\nupstream = \"{}\"\n\n[[route]]\nname = \"validate\"\n\
                 match = {{ method = \"POST\", path = \"/validate\" }}\nbackend = \"{backend}\"\n\
                 spin_path = \"/validate\"\nnative = \"validate\"\n",
                fake.served.base
            ),
        )
        .unwrap();
    };
    write("spin");
    let mut gw = spawn(&["--config", path.to_str().unwrap()]).await;
    let backend = || async {
        let response = client()
            .post(format!("{}/validate", gw.public))
            .header("content-type", "application/json")
            .body(r#"{"items": []}"#)
            .send()
            .await
            .unwrap();
        response.headers()["x-gateway-backend"]
            .to_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(backend().await, "spin-external");

    assert_eq!(reloads(&gw).await, (0, 0), "generation 0 at start");

    write("native");
    signal(&gw.child, "HUP");
    // The reload is seen to happen (the generation moves), then its effect.
    wait_for_reloads(&gw, (1, 0)).await;
    assert_eq!(backend().await, "native", "SIGHUP reloaded the file");

    // A broken file on SIGHUP is seen to be refused, and the running
    // config stays.
    std::fs::write(&path, "[[route]]\nname = 1\n").unwrap();
    signal(&gw.child, "HUP");
    wait_for_reloads(&gw, (1, 1)).await;
    assert_eq!(backend().await, "native");

    signal(&gw.child, "TERM");
    let status = exit_status(&mut gw.child)
        .await
        .expect("exits after SIGTERM");
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn manifest_flag_serves_the_built_in_routes_in_process() {
    require_app_wasm();
    let dir = tempfile::tempdir().unwrap();
    let mut gw = spawn(&[
        "--manifest",
        "spin.toml",
        "--data-dir",
        dir.path().to_str().unwrap(),
    ])
    .await;
    let created = client()
        .post(format!("{}/items", gw.public))
        .header("content-type", "application/json")
        .body(r#"{"id": 1, "name": "Item1"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    assert_eq!(created.headers()["x-gateway-backend"], "spin-embedded");
    let listed: serde_json::Value = common::get_json(&format!("{}/items", gw.public)).await;
    assert_eq!(listed[0]["name"], "Item1");
    assert!(
        dir.path().join("default.db").exists(),
        "SQLite lives in --data-dir"
    );
    signal(&gw.child, "INT");
    let status = exit_status(&mut gw.child)
        .await
        .expect("exits after SIGINT");
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn upstream_flag_fronts_an_external_spin() {
    let closed = fake_spin::closed_port().await;
    let upstream = closed.url.clone();
    let gw = spawn(&["--upstream", &upstream]).await;
    let verdict = client()
        .post(format!("{}/validate", gw.public))
        .header("content-type", "application/json")
        .body(r#"{"items": [{"id": 1, "name": "Item1"}]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(verdict.headers()["x-gateway-backend"], "native");
    assert_eq!(verdict.headers()["x-gateway-fallback"], "connect-error");
    let list = client()
        .get(format!("{}/items", gw.public))
        .send()
        .await
        .unwrap();
    assert_eq!(list.status(), 503);
    let ready = client()
        .get(format!("{}/readyz", gw.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
}

#[test]
fn bad_flags_and_bad_files_fail_fast_with_a_message() {
    let out = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["--upstream", "https://spin.example"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("only http://"));

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[server]\nlisten = \"nowhere\"\n[[route]]\nname = \"x\"\nmatch = { method = \"GET\", path = \"/x\" }\nspin_path = \"/x\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("bad.toml:2:"), "{stderr}");
    assert!(stderr.contains("server.listen"), "{stderr}");
}

/// A config fronting `upstream` with one slow-capable route and the given
/// drain time.
fn drain_config(upstream: &str, drain_ms: u64) -> String {
    format!(
        "[server]\ndrain_ms = {drain_ms}\n\n[spin]\nmode = \"external\"\nupstream = \"{upstream}\"\n\n\
         [[route]]\nname = \"list\"\nmatch = {{ method = \"GET\", path = \"/items\" }}\n\
         backend = \"spin\"\nspin_path = \"/list\"\ntimeout_ms = 60000\n"
    )
}

/// Waits until connecting to `base` is refused; `false` after 20 s.
async fn refuses_connections(base: &str) -> bool {
    let addr = base.trim_start_matches("http://").to_string();
    for _ in 0..400 {
        if tokio::net::TcpStream::connect(&addr).await.is_err() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test]
async fn sigterm_drains_in_flight_requests_and_refuses_new_connections() {
    let fake = fake_spin::start(Mode::Hang).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, drain_config(&fake.served.base, 30_000)).unwrap();
    let mut gw = spawn(&["--config", path.to_str().unwrap()]).await;

    let url = format!("{}/items", gw.public);
    let in_flight = tokio::spawn(async move { client().get(url).send().await });
    for _ in 0..400 {
        if fake.hits() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(fake.hits(), 1, "the request reached Spin");

    signal(&gw.child, "TERM");
    assert!(
        refuses_connections(&gw.public).await,
        "new connections are refused once SIGTERM arrived"
    );
    assert!(
        !in_flight.is_finished(),
        "the in-flight request is still being served"
    );
    assert!(gw.child.try_wait().unwrap().is_none(), "still draining");

    fake.open_gate();
    let response = in_flight
        .await
        .unwrap()
        .expect("the in-flight request completes");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.json::<serde_json::Value>().await.unwrap()["released"],
        true
    );
    let status = exit_status(&mut gw.child)
        .await
        .expect("exits once drained");
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn sigterm_cuts_off_what_outlasts_the_drain_time() {
    require_wasm("misbehave.wasm");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.toml");
    let manifest = repo_root().join("gateway/spin-host/tests/fixtures/misbehave.toml");
    // `/loop` spins until its 60 s deadline: far past the 500 ms drain.
    std::fs::write(
        &path,
        format!(
            "[server]\ndrain_ms = 500\n\n[spin]\nmode = \"embedded\"\nmanifest = \"{}\"\n\
             data_dir = \"{}\"\ncomponent_timeout_ms = 60000\n\n\
             [[route]]\nname = \"loop\"\nmatch = {{ method = \"GET\", path = \"/loop\" }}\n\
             backend = \"spin\"\nspin_path = \"/loop\"\ntimeout_ms = 60000\n",
            manifest.display(),
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let mut gw = spawn(&["--config", path.to_str().unwrap()]).await;
    let url = format!("{}/loop", gw.public);
    let in_flight = tokio::spawn(async move { client().get(url).send().await });
    // Give it time to start spinning.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!in_flight.is_finished());

    let signalled = std::time::Instant::now();
    signal(&gw.child, "TERM");
    let status = exit_status(&mut gw.child)
        .await
        .expect("exits after the drain time, not after the request");
    // Generous: only a hang (waiting for the 60 s request) fails this.
    assert!(
        signalled.elapsed() < Duration::from_secs(30),
        "took {:?}",
        signalled.elapsed()
    );
    assert!(status.success(), "{status}");
    let cut = in_flight.await.unwrap();
    assert!(cut.is_err(), "the cut-off request gets no answer: {cut:?}");
}

/// `--runtime-config-file` (Spin's flag and format) reaches the embedded
/// host, in `gateway` and in `gateway serve-spin`: a file-backed SQLite
/// database is used where the file says (relative to the file), and a store
/// the host cannot honour refuses the start, pointing to external mode.
#[tokio::test]
async fn the_runtime_config_file_flag_reaches_the_embedded_host() {
    require_app_wasm();
    let dir = tempfile::tempdir().unwrap();
    let runtime_config = dir.path().join("runtime-config.toml");
    std::fs::write(
        &runtime_config,
        "[sqlite_database.default]\ntype = \"spin\"\npath = \"elsewhere/items.db\"\n",
    )
    .unwrap();
    std::fs::create_dir_all(dir.path().join("elsewhere")).unwrap();
    let data_dir = dir.path().join("data");
    let rc = runtime_config.to_str().unwrap();
    let gw = spawn(&[
        "--manifest",
        "spin.toml",
        "--data-dir",
        data_dir.to_str().unwrap(),
        "--runtime-config-file",
        rc,
    ])
    .await;
    let created = client()
        .post(format!("{}/items", gw.public))
        .header("content-type", "application/json")
        .body(r#"{"name":"kept elsewhere","tags":[],"price":{"amount_cents":1,"currency":"EUR"}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201, "{}", created.text().await.unwrap());
    assert!(
        dir.path().join("elsewhere/items.db").exists(),
        "the database is where the runtime config puts it"
    );
    let config: serde_json::Value = common::get_json(&format!("{}/admin/config", gw.admin)).await;
    assert_eq!(config["spin"]["runtime_config_file"], rc, "{config}");
    drop(gw);

    std::fs::write(
        &runtime_config,
        "[sqlite_database.default]\ntype = \"libsql\"\nurl = \"https://db.example\"\ntoken = \"t\"\n",
    )
    .unwrap();
    let refused = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_gateway"))
            .args(args)
            .args(["--runtime-config-file", rc])
            .current_dir(repo_root())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            !out.status.success(),
            "{args:?} started with a libSQL store"
        );
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            stderr.contains("external mode") && stderr.contains("libsql"),
            "{args:?}: {stderr}"
        );
    };
    let data = data_dir.to_str().unwrap();
    let listen = free_addr();
    let admin = free_addr();
    refused(&[
        "--manifest",
        "spin.toml",
        "--data-dir",
        data,
        "--listen",
        &listen,
        "--admin-listen",
        &admin,
    ]);
    refused(&[
        "serve-spin",
        "--manifest",
        "spin.toml",
        "--data-dir",
        data,
        "--listen",
        &free_addr(),
    ]);
}
