//! The `gateway` binary as an operator runs it: flags, SIGHUP reload,
//! graceful shutdown on SIGTERM.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::fake_spin::{self, Mode};
use common::{client, repo_root, require_app_wasm};

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
    for _ in 0..600 {
        if client()
            .get(format!("{}/healthz", running.admin))
            .send()
            .await
            .is_ok()
        {
            return running;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the gateway did not come up");
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
    for _ in 0..200 {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
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

    write("native");
    signal(&gw.child, "HUP");
    let mut switched = false;
    for _ in 0..200 {
        if backend().await == "native" {
            switched = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(switched, "SIGHUP reloaded the file");

    // A broken file on SIGHUP keeps the running config.
    std::fs::write(&path, "[[route]]\nname = 1\n").unwrap();
    signal(&gw.child, "HUP");
    tokio::time::sleep(Duration::from_millis(200)).await;
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
    let listed: serde_json::Value = client()
        .get(format!("{}/items", gw.public))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
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
    let upstream = fake_spin::closed_port_url().await;
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
