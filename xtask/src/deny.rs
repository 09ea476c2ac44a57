//! Supply-chain checks with cargo-deny, for both workspaces (the native
//! one and `components/`), against the policy in `deny.toml`.
//!
//! Licenses, bans and sources need nothing but the lock files, so they
//! always run, offline. Advisories need the RustSec database, which
//! cargo-deny clones from GitHub: it is fetched when possible and checked
//! when a copy exists; otherwise a line says plainly that advisories were
//! not checked, rather than passing silently.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::{cargo, run};

/// The manifests of the two workspaces, relative to the repository root.
const WORKSPACES: [&str; 2] = ["Cargo.toml", "components/Cargo.toml"];

/// A `cargo deny` invocation for one workspace with the root's policy.
fn deny(root: &Path, manifest: &str) -> Command {
    let mut cmd = Command::new(cargo());
    cmd.current_dir(root)
        .arg("deny")
        .arg("--manifest-path")
        .arg(root.join(manifest))
        .arg("--config")
        .arg(root.join("deny.toml"))
        .args(["--offline", "--locked"]);
    cmd
}

/// Downloads every crate of a workspace's lock file, for every platform.
///
/// `cargo deny --offline` reads the metadata of every package in the lock
/// file, including crates only a target other than this host's pulls in
/// (`web-sys`, `windows-sys`) and dev-dependencies no build has needed yet.
/// A build downloads only what it compiles, so on a machine with an empty
/// registry the offline check would fail on the first crate it has never
/// seen. `cargo fetch` without `--target` takes them all, and is a no-op
/// once they are cached.
fn fetch_all_platforms(root: &Path, manifest: &str) -> Result<()> {
    run(Command::new(cargo())
        .current_dir(root)
        .arg("fetch")
        .arg("--locked")
        .arg("--manifest-path")
        .arg(root.join(manifest)))
}

/// Runs the checks; fails on any license, ban, source or advisory error.
pub fn check(root: &Path) -> Result<()> {
    for manifest in WORKSPACES {
        println!(
            "xtask: cargo fetch --locked ({manifest}, every platform, for the offline checks)"
        );
        fetch_all_platforms(root, manifest)?;
        println!("xtask: cargo deny check licenses bans sources ({manifest})");
        run(deny(root, manifest).args([
            "check",
            "--hide-inclusion-graph",
            "licenses",
            "bans",
            "sources",
        ]))?;
    }
    let fetched = fetch_db(root);
    if !fetched && !advisory_db_cached() {
        println!(
            "xtask: cargo deny: ADVISORIES NOT CHECKED: the RustSec advisory database could \
             not be fetched (it is cloned from github.com) and no copy is cached in \
             $CARGO_HOME/advisory-dbs; run `cargo deny fetch db && cargo deny check \
             advisories` on a machine that can reach it"
        );
        return Ok(());
    }
    if !fetched {
        println!("xtask: cargo deny: advisory database not refreshed; checking the cached copy");
    }
    for manifest in WORKSPACES {
        println!("xtask: cargo deny check advisories ({manifest})");
        run(deny(root, manifest).args(["check", "--hide-inclusion-graph", "advisories"]))?;
    }
    Ok(())
}

/// How long fetching the advisory database may take before it is given up
/// (a network that drops packets instead of refusing would hang git).
const FETCH_TIMEOUT: Duration = Duration::from_secs(120);

/// `cargo deny fetch db`, bounded by [`FETCH_TIMEOUT`]; whether it worked.
fn fetch_db(root: &Path) -> bool {
    let child = Command::new(cargo())
        .current_dir(root)
        .args(["deny", "fetch", "db"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let Ok(mut child) = child else {
        return false;
    };
    let deadline = Instant::now() + FETCH_TIMEOUT;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status.success(),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
        }
    }
}

/// Whether cargo-deny has a database under `$CARGO_HOME/advisory-dbs`.
fn advisory_db_cached() -> bool {
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    cargo_home
        .map(|h| h.join("advisory-dbs"))
        .and_then(|dir| std::fs::read_dir(dir).ok())
        .is_some_and(|mut entries| entries.any(|e| e.is_ok_and(|e| e.path().join(".git").exists())))
}
