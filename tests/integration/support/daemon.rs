//! A `forcemfa run` process under test: its admin listener, its logs, its signals.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::Account;

pub struct Daemon {
    child: Option<Child>,
    pub admin: SocketAddr,
    pub config: PathBuf,
    stdout: PathBuf,
    stderr: PathBuf,
}

/// Polls `check` every 100 ms until it holds or `secs` pass; returns whether it held.
pub async fn eventually<F, Fut>(secs: u64, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    check().await
}

/// Sends `request` as it is and reads the answer to the end: its status code and body, or why
/// there was none within `within` (for connecting, and again for the answer).
pub fn http_raw(
    addr: SocketAddr,
    request: &str,
    within: Duration,
) -> Result<(u16, String), String> {
    let mut stream =
        TcpStream::connect_timeout(&addr, within).map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(within))
        .map_err(|e| format!("timeout: {e}"))?;
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("send: {e}"))?;
    let mut answer = Vec::new();
    stream
        .read_to_end(&mut answer)
        .map_err(|e| format!("read: {e}"))?;
    let answer = String::from_utf8_lossy(&answer);
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no status in {answer:?}"))?;
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// The value of one series in the daemon's metrics, 0 when absent.
pub fn metric(d: &Daemon, series: &str) -> f64 {
    let (_, text) = d.get("/metrics");
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

/// A minimal HTTP/1.1 exchange: status code and body.
pub fn http(addr: SocketAddr, method: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read");
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {answer:?}"));
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

impl Daemon {
    /// Starts `forcemfa run` on `endpoint` with `config_text` plus an admin listener on a free
    /// loopback port (unless the text sets `[admin]` itself, with `{port}` for the port).
    pub fn start(account: &Account, endpoint: &str, config_text: &str) -> Daemon {
        Daemon::start_with(account, endpoint, config_text, &[])
    }

    pub fn start_with(
        account: &Account,
        endpoint: &str,
        config_text: &str,
        env: &[(&str, &str)],
    ) -> Daemon {
        Daemon::launch(account, endpoint, config_text, env, None, None)
    }

    /// Starts a second daemon on the same account, with its configuration and output in `dir`.
    pub fn start_in(account: &Account, dir: &Path, endpoint: &str, config_text: &str) -> Daemon {
        Daemon::launch_in(account, dir, endpoint, config_text, &[], None, None)
    }

    /// Starts it with a soft limit of `nofile` open files, as a service manager would set.
    pub fn start_with_nofile(
        account: &Account,
        endpoint: &str,
        config_text: &str,
        nofile: u64,
    ) -> Daemon {
        Daemon::launch(account, endpoint, config_text, &[], Some(nofile), None)
    }

    /// Starts it with no regular file allowed to grow past `bytes` (see
    /// [`super::with_file_size_limit`]).
    pub fn start_with_file_size_limit(
        account: &Account,
        endpoint: &str,
        config_text: &str,
        bytes: u64,
    ) -> Daemon {
        Daemon::launch(account, endpoint, config_text, &[], None, Some(bytes))
    }

    fn launch(
        account: &Account,
        endpoint: &str,
        config_text: &str,
        env: &[(&str, &str)],
        nofile: Option<u64>,
        file_size: Option<u64>,
    ) -> Daemon {
        let dir = account.dir.path().to_path_buf();
        Daemon::launch_in(account, &dir, endpoint, config_text, env, nofile, file_size)
    }

    fn launch_in(
        account: &Account,
        dir: &Path,
        endpoint: &str,
        config_text: &str,
        env: &[(&str, &str)],
        nofile: Option<u64>,
        file_size: Option<u64>,
    ) -> Daemon {
        // Port 0: the daemon binds a free port itself and logs the address it got, so no other
        // process can take the port between a test's choice and the daemon's bind.
        let text = if config_text.contains("[admin]") {
            config_text.replace("{port}", "0")
        } else {
            format!("{config_text}\n[admin]\nlisten = \"127.0.0.1:0\"\n")
        };
        let config = dir.join("forcemfa.toml");
        std::fs::write(&config, &text).expect("write config");
        let stdout = dir.join("daemon.stdout");
        let stderr = dir.join("daemon.stderr");
        let mut cmd: Command =
            account.command(endpoint, &["run", "--config", config.to_str().unwrap()]);
        for (k, v) in env {
            cmd.env(k, v);
        }
        if let Some(soft) = nofile {
            let hard = super::nofile_limit().1;
            // SAFETY: setrlimit is async-signal-safe, and nothing else runs between fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    let limit = libc::rlimit {
                        rlim_cur: soft.min(hard) as libc::rlim_t,
                        rlim_max: hard as libc::rlim_t,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        if let Some(bytes) = file_size {
            super::with_file_size_limit(&mut cmd, bytes);
        }
        let child = cmd
            .stdout(Stdio::from(
                std::fs::File::create(&stdout).expect("stdout file"),
            ))
            .stderr(Stdio::from(
                std::fs::File::create(&stderr).expect("stderr file"),
            ))
            .spawn()
            .expect("start forcemfa run");
        let mut daemon = Daemon {
            child: Some(child),
            admin: ([127, 0, 0, 1], 0).into(),
            config,
            stdout,
            stderr,
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        daemon.admin = loop {
            if let Some(listen) = daemon.bound_address() {
                break listen;
            }
            assert!(
                Instant::now() < deadline,
                "the admin listener never came up:\n{}",
                daemon.stderr_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        daemon
    }

    /// The admin listener's address, from the `forcemfa started` log line (a wildcard bind is
    /// reached on loopback).
    fn bound_address(&self) -> Option<SocketAddr> {
        let text = self.stderr_text();
        let started = text.lines().find(|l| l.contains("\"forcemfa started\""))?;
        let line: serde_json::Value = serde_json::from_str(started).ok()?;
        let mut addr: SocketAddr = line["listen"].as_str()?.parse().ok()?;
        if addr.ip().is_unspecified() {
            addr.set_ip([127, 0, 0, 1].into());
        }
        Some(addr)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// The process's resident memory now and at its peak, in KiB (VmRSS, VmHWM).
    pub fn memory_kib(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("the process's status");
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap_or_else(|| panic!("no {name} in {status}"))
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args(["-s", name, &self.pid().to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -s {name}");
    }

    pub fn get(&self, path: &str) -> (u16, String) {
        http(self.admin, "GET", path, None)
    }

    pub fn post(&self, path: &str, token: Option<&str>) -> (u16, String) {
        http(self.admin, "POST", path, token)
    }

    pub fn stderr_text(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Every log line so far, each parsed as one JSON object (fails on any that is not).
    pub fn logs(&self) -> Vec<serde_json::Value> {
        let text = self.stderr_text();
        text.lines()
            .filter(|l| !l.is_empty())
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("log line is not JSON ({e}): {l}"));
                assert!(v.is_object(), "log line is not an object: {l}");
                v
            })
            .collect()
    }

    /// Log events whose message is `message`.
    pub fn events(&self, message: &str) -> Vec<serde_json::Value> {
        self.logs()
            .into_iter()
            .filter(|l| l["message"] == message)
            .collect()
    }

    /// Runs finished so far.
    pub fn runs(&self) -> usize {
        self.events("run finished").len()
    }

    /// Waits until `n` runs in all have finished.
    pub async fn wait_runs(&self, n: usize, secs: u64) {
        let ok = eventually(secs, || async { self.runs() >= n }).await;
        assert!(
            ok,
            "expected {n} runs within {secs}s:\n{}",
            self.stderr_text()
        );
    }

    /// SIGTERM, then waits for the exit. Returns the exit code and how long it took; asserts that
    /// everything the process wrote, on stdout and stderr, was JSON lines.
    pub fn stop(&mut self) -> (i32, Duration) {
        self.signal("TERM");
        let started = Instant::now();
        let mut child = self.child.take().expect("running");
        let code = loop {
            if let Some(status) = child.try_wait().expect("wait") {
                break status.code().unwrap_or(-1);
            }
            if started.elapsed() > Duration::from_secs(30) {
                let _ = child.kill();
                panic!(
                    "forcemfa run did not stop within 30s:\n{}",
                    self.stderr_text()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let elapsed = started.elapsed();
        self.logs();
        let stdout = std::fs::read_to_string(&self.stdout).unwrap_or_default();
        for line in stdout.lines() {
            let v: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line}"));
            assert!(v.is_object());
        }
        (code, elapsed)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
