//! The function binary served by a real implementation of the Lambda runtime API: `cargo lambda
//! watch --only-lambda-apis` (PyPI `cargo-lambda`, installed by scripts/ensure-tools), which
//! takes invocations on one port and hands them to the function through the runtime API.

use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::daemon::http_raw;
use super::{free_port, with_clean_env, Account};

/// `cargo lambda watch --only-lambda-apis` on a free loopback port, killed when dropped.
pub struct LambdaApi {
    child: Child,
    pub addr: SocketAddr,
}

/// Whether `cargo lambda` runs here. Where PyPI has no build of it, the tests that need it say
/// so and pass; on Linux x86_64 and aarch64 (PyPI's wheels) it must be there.
pub fn available() -> bool {
    let runs = Command::new("cargo")
        .args(["lambda", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !runs {
        let installable = cfg!(target_os = "linux")
            && (cfg!(target_arch = "x86_64") || cfg!(target_arch = "aarch64"));
        assert!(
            !installable,
            "cargo-lambda is missing: scripts/ensure-tools installs it (pip install cargo-lambda)"
        );
        eprintln!("skipping: cargo-lambda has no build for this platform on PyPI");
    }
    runs
}

impl LambdaApi {
    pub fn start() -> LambdaApi {
        for _ in 0..5 {
            let port = free_port();
            let child = Command::new("cargo")
                .args(["lambda", "watch", "--only-lambda-apis", "--quiet"])
                .args(["--invoke-address", "127.0.0.1", "--invoke-port"])
                .arg(port.to_string())
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("cargo lambda watch starts");
            let mut api = LambdaApi {
                child,
                addr: SocketAddr::from(([127, 0, 0, 1], port)),
            };
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(60) {
                if TcpStream::connect(api.addr).is_ok() {
                    return api;
                }
                if api.child.try_wait().ok().flatten().is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = api.child.kill();
        }
        panic!("cargo lambda watch did not listen");
    }
}

impl Drop for LambdaApi {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The function binary in its execution environment, polling the runtime API.
pub struct Function {
    child: Child,
    pub api: LambdaApi,
    dir: tempfile::TempDir,
}

impl Function {
    /// Starts the function against `endpoint` (moto, or a proxy in front of it) with the
    /// account's credentials and `env` (its FORCEMFA_* settings).
    pub fn start(account: &Account, endpoint: &str, env: &[(&str, &str)]) -> Function {
        let api = LambdaApi::start();
        let dir = tempfile::tempdir().expect("temp dir");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_forcemfa-lambda"));
        with_clean_env(
            &mut cmd,
            endpoint,
            &account.access_key(),
            account.dir.path(),
        );
        cmd.env("AWS_LAMBDA_RUNTIME_API", format!("http://{}/.rt", api.addr))
            .env("AWS_LAMBDA_FUNCTION_NAME", "_")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
            .env("AWS_REGION", "us-east-1");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = std::fs::File::create(dir.path().join("stdout")).expect("stdout file");
        let err = std::fs::File::create(dir.path().join("stderr")).expect("stderr file");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("the function starts");
        Function { child, api, dir }
    }

    /// Invokes the function with `payload` and waits for its answer: the HTTP status and the
    /// body (the function's response, or its error).
    pub fn invoke(&mut self, payload: &Value) -> (u16, Value) {
        assert!(self.running(), "the function exited:\n{}", self.stderr());
        let body = payload.to_string();
        let request = format!(
            "POST /2015-03-31/functions/_/invocations HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.api.addr,
            body.len()
        );
        let (status, text) = http_raw(self.api.addr, &request, Duration::from_secs(120))
            .unwrap_or_else(|e| panic!("invocation: {e}\n{}", self.stderr()));
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, value)
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.file("stderr")).unwrap_or_default()
    }

    /// The JSON log lines so far.
    pub fn logs(&self) -> Vec<Value> {
        self.stderr()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// The log lines whose message is `message`.
    pub fn events(&self, message: &str) -> Vec<Value> {
        self.logs()
            .into_iter()
            .filter(|l| l["message"] == message)
            .collect()
    }

    /// The EMF lines written on stdout.
    pub fn metrics(&self) -> Vec<Value> {
        std::fs::read_to_string(self.file("stdout"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }

    /// Whether the process is still serving.
    pub fn running(&mut self) -> bool {
        self.child.try_wait().ok().flatten().is_none()
    }
}

impl Drop for Function {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
