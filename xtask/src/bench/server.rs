//! The servers under test: spawned on free loopback ports, probed with a
//! tiny HTTP/1.1 client, measured (RSS), and killed when dropped.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// How long a server may take to answer its first request.
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// A running server; killed (and reaped) on drop.
pub struct Server {
    pub name: String,
    pub addr: SocketAddr,
    child: Child,
    log: PathBuf,
    command: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback address with a port that was free a moment ago.
pub fn free_addr() -> Result<SocketAddr> {
    let listener =
        TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0 to find a free port")?;
    listener
        .local_addr()
        .context("reading the address of a fresh listener")
}

impl Server {
    /// Spawns `cmd` (stdout and stderr to `<work_dir>/<name>.log`) and waits
    /// until `GET probe_path` on `addr` answers 2xx.
    pub fn start(
        name: &str,
        cmd: &mut Command,
        addr: SocketAddr,
        probe_path: &str,
        work_dir: &Path,
    ) -> Result<Server> {
        let mut server = Server::spawn(name, cmd, addr, work_dir)?;
        server.wait_ready(probe_path, START_TIMEOUT)?;
        Ok(server)
    }

    /// Spawns without waiting.
    pub fn spawn(
        name: &str,
        cmd: &mut Command,
        addr: SocketAddr,
        work_dir: &Path,
    ) -> Result<Server> {
        let log = work_dir.join(format!("{name}.log"));
        let file =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let err = file
            .try_clone()
            .with_context(|| format!("duplicating the handle of {}", log.display()))?;
        let command = format!("{cmd:?}");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::from(file))
            .stderr(Stdio::from(err))
            .spawn()
            .with_context(|| format!("could not start {name}: {command}"))?;
        Ok(Server {
            name: name.to_string(),
            addr,
            child,
            log,
            command,
        })
    }

    /// Polls `GET path` until it answers 2xx; fails early when the process
    /// exits, with the end of its log.
    pub fn wait_ready(&mut self, path: &str, timeout: Duration) -> Result<()> {
        let started = Instant::now();
        loop {
            if let Some(status) = self
                .child
                .try_wait()
                .with_context(|| format!("checking on {}", self.name))?
            {
                bail!(
                    "{} exited ({status}) before serving {path}: {}\n{}",
                    self.name,
                    self.command,
                    self.log_tail()
                );
            }
            if let Ok((status, _)) = http(self.addr, "GET", path, None)
                && (200..300).contains(&status)
            {
                return Ok(());
            }
            if started.elapsed() > timeout {
                bail!(
                    "{} did not answer 2xx on http://{}{path} within {timeout:?}: {}\n{}",
                    self.name,
                    self.addr,
                    self.command,
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// `http://ADDR` + path.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Resident set size of the process, bytes (Linux `/proc`).
    pub fn rss_bytes(&self) -> Result<u64> {
        let path = format!("/proc/{}/status", self.child.id());
        let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
        let kib = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .with_context(|| format!("no VmRSS line in {path}"))?;
        Ok(kib * 1024)
    }

    /// CPU time the process has used so far (user + system, all its
    /// threads), seconds, from `/proc/PID/stat`.
    pub fn cpu_seconds(&self) -> Result<f64> {
        let path = format!("/proc/{}/stat", self.child.id());
        let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
        // The command name (field 2) may hold spaces; fields after it are
        // plain numbers: state is field 3, utime 14, stime 15.
        let after_name = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest)
            .with_context(|| format!("no command name in {path}"))?;
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        let ticks = |i: usize| -> Result<f64> {
            fields
                .get(i)
                .and_then(|v| v.parse::<u64>().ok())
                .map(|v| v as f64)
                .with_context(|| format!("field {} of {path} is not a number", i + 3))
        };
        Ok((ticks(11)? + ticks(12)?) / clock_ticks_per_second())
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(20)..].join("\n");
        format!("(end of {})\n{tail}", self.log.display())
    }
}

/// `getconf CLK_TCK`: the unit of `/proc/PID/stat`'s CPU times (100 on
/// every Linux this runs on; asked once, in case).
fn clock_ticks_per_second() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .trim()
                    .parse::<f64>()
                    .ok()
            })
            .filter(|t| *t > 0.0)
            .unwrap_or(100.0)
    })
}

/// One HTTP/1.1 request on a fresh connection (`Connection: close`);
/// returns the status and the body. Enough for probes and warm-ups.
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
) -> Result<(u16, Vec<u8>)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .with_context(|| format!("connecting to {addr}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .context("setting a read timeout")?;
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(body) = body {
        request.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    request.push_str("\r\n");
    stream
        .write_all(request.as_bytes())
        .and_then(|()| stream.write_all(body.unwrap_or_default()))
        .with_context(|| format!("sending {method} {path} to {addr}"))?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .with_context(|| format!("reading the answer to {method} {path} from {addr}"))?;
    let head_end = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .with_context(|| format!("no complete HTTP head from {addr}"))?;
    let status = std::str::from_utf8(&response[..head_end])
        .ok()
        .and_then(|head| head.split(' ').nth(1))
        .and_then(|code| code.parse::<u16>().ok())
        .with_context(|| format!("no status line from {addr}"))?;
    let head = String::from_utf8_lossy(&response[..head_end]).to_ascii_lowercase();
    let mut body = response[head_end + 4..].to_vec();
    if head.contains("transfer-encoding: chunked") {
        body = dechunk(&body);
    }
    Ok((status, body))
}

/// Decodes a chunked body (best effort: stops at the first malformed chunk).
fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(line_end) = data.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&data[..line_end])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next().unwrap_or("").trim(), 16).ok());
        let Some(size) = size else { break };
        let start = line_end + 2;
        if size == 0 || data.len() < start + size {
            break;
        }
        out.extend_from_slice(&data[start..start + size]);
        data = data.get(start + size + 2..).unwrap_or_default();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_bodies_are_decoded() {
        assert_eq!(dechunk(b"2\r\nok\r\n3;x=1\r\n!!!\r\n0\r\n\r\n"), b"ok!!!");
    }
}
