//! Headless Chromium for the dashboard tests: find it, run it on a URL
//! (DOM dump, screenshot), and read what the page logged to its console.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The Chromium binary; fails (never skips) when it is missing.
pub fn require_chromium() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs: Vec<PathBuf> = std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/local/bin")])
        .collect();
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .flat_map(|name| dirs.iter().map(move |dir| dir.join(name)))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "headless Chromium is not installed (no chromium on PATH nor in /usr/bin): \
                 run `cargo xtask setup` (Debian: `apt-get install chromium`)"
            )
        })
}

/// What one Chromium run printed.
pub struct Run {
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The page's console messages: with `--enable-logging=stderr` Chromium
    /// prints each as a line with `CONSOLE` in its prefix.
    pub fn console(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| l.contains(":CONSOLE"))
            .collect()
    }
}

/// Runs headless Chromium on `url` with `extra` arguments (the page's
/// console goes to stderr); killed if it has not finished after 120 s.
pub fn run_chromium(chromium: &Path, url: &str, extra: &[String]) -> Run {
    let profile = tempfile::tempdir().expect("temp dir");
    let mut child = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--virtual-time-budget=5000",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(extra)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {}: {e}", chromium.display()));
    // Read the pipes on threads so a chatty Chromium cannot block on them.
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut s).ok();
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut s).ok();
        s
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    match status {
        Some(status) if status.success() => Run { stdout, stderr },
        Some(status) => panic!("chromium exited with {status}:\n{stderr}"),
        None => panic!("chromium did not finish within 120 s:\n{stderr}"),
    }
}

/// [`run_chromium`] off the async runtime.
pub async fn chromium_async(chromium: &Path, url: String, extra: Vec<String>) -> Run {
    let chromium = chromium.to_path_buf();
    tokio::task::spawn_blocking(move || run_chromium(&chromium, &url, &extra))
        .await
        .expect("join chromium")
}

/// The page's DOM after its scripts ran.
pub async fn dump_dom(chromium: &Path, url: &str) -> Run {
    chromium_async(chromium, url.to_string(), vec!["--dump-dom".into()]).await
}

/// A screenshot of `url` at `path` (width × height); asserts it is a real
/// PNG of some size and returns the run.
pub async fn screenshot(chromium: &Path, url: &str, path: &Path, size: (u32, u32)) -> Run {
    let _ = std::fs::remove_file(path);
    let run = chromium_async(
        chromium,
        url.to_string(),
        vec![
            format!("--screenshot={}", path.display()),
            format!("--window-size={},{}", size.0, size.1),
            "--hide-scrollbars".into(),
        ],
    )
    .await;
    let png =
        std::fs::read(path).unwrap_or_else(|e| panic!("no screenshot at {}: {e}", path.display()));
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n"),
        "{} is not a PNG",
        path.display()
    );
    assert!(
        png.len() > 10 * 1024,
        "the screenshot is only {} bytes",
        png.len()
    );
    run
}

/// The text between `start` and the next `end` after it.
pub fn between<'a>(text: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = text.find(start)? + start.len();
    let len = text[from..].find(end)?;
    Some(&text[from..from + len])
}

/// The opening tags in `html` that contain every one of `needles`.
pub fn tags_with<'a>(html: &'a str, needles: &[&str]) -> Vec<&'a str> {
    html.split('<')
        .filter_map(|chunk| chunk.split('>').next())
        .filter(|tag| needles.iter().all(|n| tag.contains(n)))
        .collect()
}

/// The value of `attr="..."` in one opening tag.
pub fn attr<'a>(tag: &'a str, attr: &str) -> Option<&'a str> {
    between(tag, &format!(" {attr}=\""), "\"")
}
