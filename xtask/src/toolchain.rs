//! Finding (or installing) a toolchain that builds wasm32-wasip2 components.
//!
//! Two cases are supported, and `setup` detects which one it is in:
//!
//! * **rustup** – the machine has (or can download) rustup's
//!   `wasm32-wasip2` target. This is the normal developer laptop; the build is
//!   a plain `cargo build --target wasm32-wasip2 --release`, exactly what
//!   `spin build` runs.
//! * **debian-build-std** – rustup cannot download targets (an offline
//!   mirror of crates.io and Debian only). Debian ships a newer rustc
//!   (`rustc-web`) with the standard library's source (`rust-web-src`), plus
//!   `wasi-libc` and `lld-19`; `wasm-component-ld` comes from crates.io. The
//!   standard library is then built from source with `-Zbuild-std`. Every
//!   variable this needs is set on the child process only, so nothing leaks
//!   into the native build of the gateway.
//!
//! Force a case with `XTASK_WASM_TOOLCHAIN=rustup|debian`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use crate::run;

const TARGET: &str = "wasm32-wasip2";
/// The version of `wasm-component-ld` the Debian recipe was verified with.
const WASM_COMPONENT_LD_VERSION: &str = "0.5.31";
const DEBIAN_PACKAGES: &[&str] = &[
    "rustc-web",
    "cargo-web",
    "rust-web-src",
    "wasi-libc",
    "lld-19",
];
const DEBIAN_RUSTC: &str = "/usr/bin/rustc";
const DEBIAN_CARGO: &str = "/usr/bin/cargo";
const DEBIAN_STD_SRC: &str = "/usr/lib/rustlib/src/rust/library";
const DEBIAN_WASI_LIBC: &str = "/usr/lib/wasm32-wasi";
const DEBIAN_WASM_LD: &str = "/usr/bin/wasm-ld-19";

/// How components get built on this machine.
pub enum WasmToolchain {
    /// rustup's prebuilt `wasm32-wasip2` standard library.
    Rustup,
    /// Debian's rustc-web, std built from source, linked by wasm-component-ld.
    DebianBuildStd {
        /// Path of the `wasm-component-ld` linker.
        component_ld: PathBuf,
    },
}

impl WasmToolchain {
    /// A short human description for logs.
    pub fn describe(&self) -> String {
        match self {
            WasmToolchain::Rustup => "rustup target wasm32-wasip2".into(),
            WasmToolchain::DebianBuildStd { component_ld } => format!(
                "Debian rustc-web + -Zbuild-std, linker {}",
                component_ld.display()
            ),
        }
    }

    /// A `cargo` command configured for building components.
    pub fn cargo_command(&self) -> Command {
        match self {
            WasmToolchain::Rustup => Command::new(crate::cargo()),
            WasmToolchain::DebianBuildStd { component_ld } => {
                let mut cmd = Command::new(DEBIAN_CARGO);
                // `cargo xtask` runs under rustup's cargo, which exports
                // variables that would make Debian's cargo pick rustup's rustc.
                for var in [
                    "RUSTUP_TOOLCHAIN",
                    "CARGO",
                    "RUSTFLAGS",
                    "CARGO_ENCODED_RUSTFLAGS",
                ] {
                    cmd.env_remove(var);
                }
                cmd.env("RUSTC", DEBIAN_RUSTC)
                    .env("RUSTDOC", "/usr/bin/rustdoc")
                    .env("RUSTC_BOOTSTRAP", "1")
                    .env("CARGO_TARGET_WASM32_WASIP2_LINKER", component_ld)
                    .env(
                        "CARGO_TARGET_WASM32_WASIP2_RUSTFLAGS",
                        format!(
                            "-C link-self-contained=no -L {DEBIAN_WASI_LIBC} \
                             -C link-arg=--wasm-ld-path={DEBIAN_WASM_LD}"
                        ),
                    );
                cmd
            }
        }
    }

    /// Arguments `cargo build` needs on top of `--target wasm32-wasip2`.
    pub fn extra_build_args(&self) -> &'static [&'static str] {
        match self {
            WasmToolchain::Rustup => &[],
            WasmToolchain::DebianBuildStd { .. } => &["-Zbuild-std=std,panic_abort"],
        }
    }
}

/// Makes wasm32-wasip2 builds work; fast when already done.
pub fn setup() -> Result<WasmToolchain> {
    match std::env::var("XTASK_WASM_TOOLCHAIN").as_deref() {
        Ok("rustup") => return setup_rustup(),
        Ok("debian") => return setup_debian(),
        Ok(other) => bail!("XTASK_WASM_TOOLCHAIN must be `rustup` or `debian`, not `{other}`"),
        Err(_) => {}
    }
    if rustup_has_target() {
        return Ok(WasmToolchain::Rustup);
    }
    if let Some(tc) = debian_ready() {
        return Ok(tc);
    }
    if Path::new("/etc/debian_version").exists() && which("apt-get").is_some() {
        // rustup's download may be unreachable here; Debian's packages are not.
        return setup_debian();
    }
    setup_rustup()
}

fn setup_rustup() -> Result<WasmToolchain> {
    if !rustup_has_target() {
        println!("xtask: rustup target add {TARGET}");
        run(Command::new("rustup").args(["target", "add", TARGET]))?;
    }
    Ok(WasmToolchain::Rustup)
}

fn setup_debian() -> Result<WasmToolchain> {
    if let Some(tc) = debian_ready() {
        return Ok(tc);
    }
    let missing: Vec<&str> = DEBIAN_PACKAGES
        .iter()
        .copied()
        .filter(|p| !debian_package_installed(p))
        .collect();
    if !missing.is_empty() {
        println!("xtask: installing Debian packages {}", missing.join(" "));
        run(privileged("apt-get").arg("update").arg("-q"))?;
        run(privileged("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"))?;
    }
    if find_component_ld().is_none() {
        println!("xtask: cargo install wasm-component-ld@{WASM_COMPONENT_LD_VERSION}");
        run(Command::new(crate::cargo()).args([
            "install",
            "--locked",
            "wasm-component-ld",
            "--version",
            WASM_COMPONENT_LD_VERSION,
        ]))?;
    }
    debian_ready().context(
        "the Debian wasm toolchain is still incomplete after installing it; \
         expected rustc-web at /usr/bin/rustc, std sources, wasi-libc, wasm-ld-19 \
         and wasm-component-ld",
    )
}

/// The Debian recipe's pieces, if all of them are present.
fn debian_ready() -> Option<WasmToolchain> {
    let pieces_present = [DEBIAN_CARGO, DEBIAN_STD_SRC, DEBIAN_WASM_LD]
        .iter()
        .all(|p| Path::new(p).exists())
        && Path::new(DEBIAN_WASI_LIBC).join("libc.a").exists();
    if !pieces_present || !debian_rustc_is_web() {
        return None;
    }
    find_component_ld().map(|component_ld| WasmToolchain::DebianBuildStd { component_ld })
}

/// Debian's default `rustc` package is too old for -Zbuild-std of today's
/// std; only `rustc-web` will do.
fn debian_rustc_is_web() -> bool {
    debian_package_installed("rustc-web") && debian_package_installed("rust-web-src")
}

fn debian_package_installed(name: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", name])
        .stderr(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        .unwrap_or(false)
}

fn rustup_has_target() -> bool {
    Command::new("rustup")
        .args(["target", "list", "--installed"])
        .stderr(Stdio::null())
        .output()
        .map(|o| {
            o.status.success()
                && String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .any(|l| l.trim() == TARGET)
        })
        .unwrap_or(false)
}

fn find_component_ld() -> Option<PathBuf> {
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    cargo_home
        .map(|h| h.join("bin/wasm-component-ld"))
        .filter(|p| p.exists())
        .or_else(|| which("wasm-component-ld"))
}

/// The first `program` on `PATH`.
pub(crate) fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|p| p.is_file())
    })
}

/// `apt-get` as root: directly when we are root, through sudo otherwise.
fn privileged(program: &str) -> Command {
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    if is_root {
        Command::new(program)
    } else {
        let mut cmd = Command::new("sudo");
        cmd.arg(program);
        cmd
    }
}

/// Debian packages the test suite runs for real: Prometheus + promtool
/// (scrape test, config checks), Chromium (dashboard page test) and wrk
/// (the benchmark's quick run).
const TEST_PACKAGES: &[(&str, &str)] = &[
    ("prometheus", "/usr/bin/promtool"),
    ("chromium", "/usr/bin/chromium"),
    ("wrk", "/usr/bin/wrk"),
];

/// Installs what the tests need besides Rust: Prometheus, Chromium, the
/// rotel OTLP collector (a PyPI wheel) and the pinned Python tools in
/// [`PYTHON_REQUIREMENTS`]. Fast when already present.
pub fn setup_test_tools(root: &Path) -> Result<()> {
    let missing: Vec<&str> = TEST_PACKAGES
        .iter()
        .filter(|(_, binary)| !Path::new(binary).exists())
        .map(|(package, _)| *package)
        .collect();
    if !missing.is_empty() {
        if which("apt-get").is_none() {
            bail!(
                "the tests need {} (Prometheus, Chromium); install them with your package manager",
                missing.join(", ")
            );
        }
        println!("xtask: installing test tools {}", missing.join(" "));
        run(privileged("apt-get").arg("update").arg("-q"))?;
        run(privileged("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"))?;
    }
    let rotel_present = Command::new("python3")
        .args(["-c", "import rotel, os, sys; sys.exit(0 if os.path.isfile(os.path.join(os.path.dirname(rotel.__file__), 'rotel-agent')) else 1)"])
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !rotel_present {
        println!("xtask: pip install rotel (OTLP collector for the telemetry tests)");
        run(Command::new("python3").args(["-m", "pip", "install", "--quiet", "rotel"]))?;
    }
    let mut pip = Command::new("python3");
    pip.args([
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
    ]);
    for file in PYTHON_REQUIREMENTS {
        pip.arg("-r").arg(root.join(file));
    }
    run(&mut pip)
}

/// Pinned Python tools the tests run, one file per place that uses them:
/// schemathesis against the OpenAPI document, Grafana's dashboard schema
/// (grafana-foundation-sdk), and the offline Kubernetes validators
/// (kubectl's kustomize, the API schemas, hadolint). One `pip install`
/// resolves them together, so clashing pins are an error here, not a
/// surprise in a test; with everything present it takes a few seconds.
const PYTHON_REQUIREMENTS: &[&str] = &[
    "gateway/tests/requirements.txt",
    "observability/requirements.txt",
    "deploy/requirements.txt",
];

/// The cargo-deny release `cargo xtask test` installs; 0.20.2 needs rustc
/// 1.88 and builds with the workspace's 1.95.
pub const CARGO_DENY_VERSION: &str = "0.20.2";

/// Makes `cargo deny` available: kept when any version is installed,
/// otherwise `cargo install --locked cargo-deny@CARGO_DENY_VERSION` (from
/// crates.io, so it works wherever the crates do). Fast when present.
pub fn ensure_cargo_deny() -> Result<()> {
    let installed = Command::new(crate::cargo())
        .args(["deny", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if installed {
        return Ok(());
    }
    println!("xtask: cargo install --locked cargo-deny@{CARGO_DENY_VERSION} (supply-chain checks)");
    run(Command::new(crate::cargo()).args([
        "install",
        "--locked",
        &format!("cargo-deny@{CARGO_DENY_VERSION}"),
    ]))
}

/// The `wasmtime` CLI the benchmark compares the embedded host with
/// (`wasmtime serve`), matching the wasmtime line the gateway embeds.
const WASMTIME_CLI_VERSION: &str = "48.0.8";
/// Only what `wasmtime serve` needs: builds in a fraction of the default
/// feature set's time.
const WASMTIME_CLI_FEATURES: &str = "run,serve,component-model,component-model-async,cranelift,pooling-allocator,cache,clap/default";

/// What `cargo xtask bench` runs besides the project: wrk and the wasmtime
/// CLI. Fast when both are present.
pub fn setup_bench_tools() -> Result<()> {
    if which("wrk").is_none() {
        if which("apt-get").is_none() {
            bail!("the benchmark needs wrk; install it with your package manager");
        }
        println!("xtask: installing wrk");
        run(privileged("apt-get").arg("update").arg("-q"))?;
        run(privileged("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends", "wrk"])
            .env("DEBIAN_FRONTEND", "noninteractive"))?;
    }
    setup_wasmtime_cli().map(|_| ())
}

/// Installs `wasmtime-cli@48.0.8` with cargo unless that version is the
/// `wasmtime` found (several minutes the first time).
pub fn setup_wasmtime_cli() -> Result<PathBuf> {
    if let Some(path) =
        wasmtime_cli().filter(|p| wasmtime_version(p).as_deref() == Some(WASMTIME_CLI_VERSION))
    {
        return Ok(path);
    }
    println!(
        "xtask: cargo install wasmtime-cli@{WASMTIME_CLI_VERSION} (serve only; takes a few minutes once)"
    );
    run(Command::new(crate::cargo()).args([
        "install",
        "--locked",
        &format!("wasmtime-cli@{WASMTIME_CLI_VERSION}"),
        "--no-default-features",
        "--features",
        WASMTIME_CLI_FEATURES,
    ]))?;
    let path = wasmtime_cli()
        .context("`cargo install wasmtime-cli` finished but no `wasmtime` binary was found")?;
    match wasmtime_version(&path) {
        Some(v) if v == WASMTIME_CLI_VERSION => Ok(path),
        other => bail!(
            "{} reports version {other:?}, expected {WASMTIME_CLI_VERSION}; is another wasmtime earlier on PATH?",
            path.display()
        ),
    }
}

/// The `wasmtime` CLI: on `PATH`, else in cargo's bin directory.
pub(crate) fn wasmtime_cli() -> Option<PathBuf> {
    which("wasmtime").or_else(|| {
        std::env::var_os("CARGO_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
            .map(|h| h.join("bin/wasmtime"))
            .filter(|p| p.is_file())
    })
}

/// `48.0.8` from `wasmtime 48.0.8 (hash date)`.
fn wasmtime_version(path: &Path) -> Option<String> {
    let out = Command::new(path).arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace().nth(1).map(str::to_string)
}
