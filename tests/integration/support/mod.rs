//! The test world: a fresh moto_server per test on a free loopback port, an IAM client to seed it
//! and look at it, and the real `forcemfa` binary pointed at it.

pub mod daemon;
pub mod files;
pub mod lambda;
pub mod notify;
pub mod proxy;
pub mod queue;

use std::collections::BTreeSet;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_iam::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_iam::types::Tag;

pub const ACCOUNT_ID: &str = "123456789012";

/// A moto_server process, killed when dropped.
pub struct Moto {
    child: Child,
    pub endpoint: String,
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

impl Moto {
    /// Starts moto_server (`python3 -m moto.server`, or the command in FORCEMFA_TEST_MOTO).
    pub fn start() -> Moto {
        Moto::start_with_env(&[])
    }

    /// Starts moto_server with extra environment (e.g. INITIAL_NO_AUTH_ACTION_COUNT, after which
    /// it enforces IAM policies).
    pub fn start_with_env(env: &[(&str, &str)]) -> Moto {
        for _ in 0..5 {
            let port = free_port();
            let mut cmd = match std::env::var("FORCEMFA_TEST_MOTO") {
                Ok(command) => {
                    let mut c = Command::new(command);
                    c.arg("-p").arg(port.to_string());
                    c
                }
                Err(_) => {
                    let mut c = Command::new("python3");
                    c.args(["-m", "moto.server", "-p", &port.to_string()]);
                    c
                }
            };
            for (k, v) in env {
                cmd.env(k, v);
            }
            let mut child = cmd
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("moto_server starts (pip install 'moto[server]')");
            let addr: SocketAddr = ([127, 0, 0, 1], port).into();
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break; // lost the port to someone else: try another
                }
                if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                    return Moto {
                        child,
                        endpoint: format!("http://{addr}"),
                    };
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("moto_server did not start");
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What one run of the binary left behind.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The `--output json` report.
    pub fn report(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is one JSON object ({e}):\n{}", self.stdout))
    }

    /// The report's only account.
    pub fn account(&self) -> serde_json::Value {
        let report = self.report();
        let accounts = report["accounts"].as_array().expect("accounts array");
        assert_eq!(accounts.len(), 1, "{report}");
        accounts[0].clone()
    }

    /// Every stderr line parsed as JSON; fails on any line that is not one JSON object.
    pub fn log_lines(&self) -> Vec<serde_json::Value> {
        self.stderr
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("log line is not JSON ({e}): {l}"));
                assert!(v.is_object(), "log line is not an object: {l}");
                v
            })
            .collect()
    }
}

/// Skipped users of a report's account, with their reasons.
pub fn skipped(acct: &serde_json::Value) -> Vec<(String, String)> {
    pairs(&acct["skipped"], "user", "reason")
}

/// Two string fields of each object of a report's JSON list, in order.
pub fn pairs(v: &serde_json::Value, first: &str, second: &str) -> Vec<(String, String)> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o[first].as_str().unwrap().to_string(),
                o[second].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Names in a report's JSON list, in order.
pub fn names(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("expected a list, got {v}"))
        .iter()
        .map(|n| n.as_str().expect("a name").to_string())
        .collect()
}

/// A fresh emulated account with a seeding client.
pub struct Account {
    pub moto: Moto,
    pub iam: aws_sdk_iam::Client,
    pub dir: tempfile::TempDir,
    access_key: (String, String),
}

pub fn iam_client(endpoint: &str) -> aws_sdk_iam::Client {
    let config = aws_sdk_iam::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new("testing", "testing", None, None, "tests"))
        .build();
    aws_sdk_iam::Client::from_conf(config)
}

/// An IAM client for another account of the same moto_server, through sts:AssumeRole (moto
/// keeps one IAM per account id).
pub async fn iam_client_in(endpoint: &str, account_id: &str) -> aws_sdk_iam::Client {
    let c = credentials_in(endpoint, account_id).await;
    let config = aws_sdk_iam::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new(
            c.access_key_id(),
            c.secret_access_key(),
            Some(c.session_token().to_string()),
            None,
            "tests",
        ))
        .build();
    aws_sdk_iam::Client::from_conf(config)
}

/// Credentials for account `account_id` of the emulator at `endpoint`, from sts:AssumeRole.
pub async fn credentials_in(endpoint: &str, account_id: &str) -> aws_sdk_sts::types::Credentials {
    let sts = aws_sdk_sts::Client::from_conf(
        aws_sdk_sts::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(endpoint)
            .credentials_provider(Credentials::new("testing", "testing", None, None, "tests"))
            .build(),
    );
    let out = sts
        .assume_role()
        .role_arn(format!("arn:aws:iam::{account_id}:role/seeder"))
        .role_session_name("seeder")
        .send()
        .await
        .expect("assume role");
    out.credentials().expect("credentials").clone()
}

/// Accounts 222222222222 and 333333333333, each with the group `ForceMFA` and a user `carol`
/// without MFA, and a proxy whose STS answers the role of 222222222222 with credentials of
/// 333333333333.
pub async fn role_answered_with_another_account() -> (Account, proxy::FaultProxy) {
    use proxy::{Fault, FaultProxy, Rule};
    let a = Account::empty();
    for id in ["222222222222", "333333333333"] {
        let other = a.other(id).await;
        other.group("ForceMFA").await;
        other.user("carol").await;
    }
    let wrong = credentials_in(&a.moto.endpoint, "333333333333").await;
    let proxy = FaultProxy::start(&a.moto.endpoint);
    proxy.set_rules(vec![Rule::new(
        &["Action=AssumeRole", "222222222222"],
        Fault::Answer {
            status: 200,
            body: assume_role_answer(&wrong, "222222222222"),
        },
    )]);
    (a, proxy)
}

/// An sts:AssumeRole answer that hands out `credentials` (of whichever account they are).
pub fn assume_role_answer(
    credentials: &aws_sdk_sts::types::Credentials,
    account_id: &str,
) -> String {
    format!(
        "<AssumeRoleResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><AssumeRoleResult>\
         <Credentials><AccessKeyId>{}</AccessKeyId><SecretAccessKey>{}</SecretAccessKey>\
         <SessionToken>{}</SessionToken><Expiration>2099-01-01T00:00:00Z</Expiration></Credentials>\
         <AssumedRoleUser><AssumedRoleId>AROAEXAMPLE:forcemfa</AssumedRoleId>\
         <Arn>arn:aws:sts::{account_id}:assumed-role/forcemfa/forcemfa</Arn></AssumedRoleUser>\
         </AssumeRoleResult><ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></AssumeRoleResponse>",
        credentials.access_key_id(),
        credentials.secret_access_key(),
        credentials.session_token(),
    )
}

impl Account {
    /// The same emulator seen as another account (`account_id`), sharing the test's directory.
    pub async fn other(&self, account_id: &str) -> Other<'_> {
        Other {
            iam: iam_client_in(&self.moto.endpoint, account_id).await,
            _base: self,
        }
    }

    /// Makes this account the management account of an organization with a member account for
    /// each of `names`; returns the members' ids, in that order.
    pub async fn organization(&self, names: &[&str]) -> Vec<String> {
        let orgs = aws_sdk_organizations::Client::from_conf(
            aws_sdk_organizations::Config::builder()
                .behavior_version(aws_sdk_organizations::config::BehaviorVersion::latest())
                .region(aws_sdk_organizations::config::Region::new("us-east-1"))
                .endpoint_url(&self.moto.endpoint)
                .credentials_provider(aws_sdk_organizations::config::Credentials::new(
                    "testing", "testing", None, None, "tests",
                ))
                .build(),
        );
        orgs.create_organization()
            .send()
            .await
            .expect("create organization");
        let mut members = Vec::new();
        for name in names {
            let out = orgs
                .create_account()
                .account_name(*name)
                .email(format!("{name}@example.com"))
                .send()
                .await
                .expect("create account");
            let id = out
                .create_account_status()
                .and_then(|s| s.account_id())
                .expect("account id");
            members.push(id.to_string());
        }
        members
    }

    /// An empty account.
    pub fn empty() -> Account {
        Account::on(Moto::start())
    }

    /// An empty account on a given emulator.
    pub fn on(moto: Moto) -> Account {
        let iam = iam_client(&moto.endpoint);
        Account {
            moto,
            iam,
            dir: tempfile::tempdir().expect("temp dir"),
            access_key: ("testing".into(), "testing".into()),
        }
    }

    /// An account holding the enforcement group `ForceMFA`.
    pub async fn with_group() -> Account {
        let account = Account::empty();
        account.create_group("ForceMFA").await;
        account
    }

    pub async fn create_group(&self, name: &str) {
        self.iam
            .create_group()
            .group_name(name)
            .send()
            .await
            .expect("create group");
    }

    pub async fn user(&self, name: &str) -> UserSeed<'_> {
        self.user_at(name, "/", &[]).await
    }

    pub async fn user_at(&self, name: &str, path: &str, tags: &[(&str, &str)]) -> UserSeed<'_> {
        let mut req = self.iam.create_user().user_name(name).path(path);
        for (k, v) in tags {
            req = req.tags(Tag::builder().key(*k).value(*v).build().expect("tag"));
        }
        req.send().await.expect("create user");
        UserSeed {
            account: self,
            name: name.to_string(),
        }
    }

    pub async fn members(&self, group: &str) -> BTreeSet<String> {
        members(&self.iam, group).await
    }

    /// A user created earlier, to give it more (an MFA device, a group).
    pub fn existing(&self, name: &str) -> UserSeed<'_> {
        UserSeed {
            account: self,
            name: name.to_string(),
        }
    }

    /// Makes forcemfa sign as `user` (with a fresh access key) instead of an anonymous caller.
    pub async fn sign_as(&mut self, user: &str) {
        let key = self
            .iam
            .create_access_key()
            .user_name(user)
            .send()
            .await
            .expect("access key");
        let key = key.access_key().expect("key");
        self.access_key = (
            key.access_key_id().to_string(),
            key.secret_access_key().to_string(),
        );
    }

    /// The secret key forcemfa signs with.
    pub fn secret_access_key(&self) -> String {
        self.access_key.1.clone()
    }

    /// The access key id and secret forcemfa signs with.
    pub fn access_key(&self) -> (String, String) {
        self.access_key.clone()
    }

    /// Writes a config file in the test's directory and returns its path.
    pub fn config(&self, text: &str) -> PathBuf {
        let path = self.dir.path().join("forcemfa.toml");
        std::fs::write(&path, text).expect("write config");
        path
    }

    /// Runs `forcemfa ARGS` against this account and waits for it.
    pub fn forcemfa(&self, args: &[&str]) -> Run {
        self.forcemfa_with(args, &[])
    }

    pub fn forcemfa_with(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        forcemfa(
            &self.moto.endpoint,
            &self.access_key,
            self.dir.path(),
            args,
            env,
        )
    }

    /// The binary, set up to talk to `endpoint` with this account's credentials.
    pub fn command(&self, endpoint: &str, args: &[&str]) -> Command {
        command(endpoint, &self.access_key, self.dir.path(), args)
    }

    /// `forcemfa reconcile --config CONFIG --output json` against this account.
    pub fn reconcile_json(&self, config: &Path) -> Run {
        self.reconcile_json_via(&self.moto.endpoint, config)
    }

    /// The same through another endpoint (a fault proxy).
    pub fn reconcile_json_via(&self, endpoint: &str, config: &Path) -> Run {
        let config = config.to_str().expect("a UTF-8 path");
        self.forcemfa_via(
            endpoint,
            &["reconcile", "--config", config, "--output", "json"],
        )
    }

    /// Runs `forcemfa ARGS` against this account through another endpoint (a fault proxy).
    pub fn forcemfa_via(&self, endpoint: &str, args: &[&str]) -> Run {
        forcemfa(endpoint, &self.access_key, self.dir.path(), args, &[])
    }
}

/// The real binary with a clean AWS environment pointed at `endpoint`.
pub fn command(endpoint: &str, key: &(String, String), home: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_forcemfa"));
    cmd.args(args);
    with_clean_env(&mut cmd, endpoint, key, home);
    cmd
}

/// Clears the environment but for the AWS settings that point the SDK at `endpoint` with `key`.
pub fn with_clean_env(cmd: &mut Command, endpoint: &str, key: &(String, String), home: &Path) {
    cmd.env_clear()
        .env("HOME", home)
        .env("AWS_CONFIG_FILE", home.join("no-aws-config"))
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            home.join("no-aws-credentials"),
        )
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_ACCESS_KEY_ID", &key.0)
        .env("AWS_SECRET_ACCESS_KEY", &key.1)
        .env("FORCEMFA_LOG_FORMAT", "json");
}

/// Runs the real binary to completion.
pub fn forcemfa(
    endpoint: &str,
    key: &(String, String),
    home: &Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> Run {
    let mut cmd = command(endpoint, key, home, args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    run(&mut cmd)
}

/// Runs a command set up by [`command`] to completion.
pub fn run(cmd: &mut Command) -> Run {
    let out = cmd.output().expect("run forcemfa");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Makes `cmd` start with this umask.
pub fn with_umask(cmd: &mut Command, mask: u32) -> &mut Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: umask is async-signal-safe, and nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            libc::umask(mask as libc::mode_t);
            Ok(())
        })
    }
}

/// Makes `cmd` start with no regular file allowed to grow past `bytes`, as on a full disk: a
/// write past it fails with EFBIG (SIGXFSZ is ignored, so that the write fails instead).
pub fn with_file_size_limit(cmd: &mut Command, bytes: u64) -> &mut Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: signal and setrlimit are async-signal-safe, and nothing else runs between fork
    // and exec.
    unsafe {
        cmd.pre_exec(move || {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let rl = libc::rlimit {
                rlim_cur: bytes as libc::rlim_t,
                rlim_max: bytes as libc::rlim_t,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &rl) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    }
}

/// A file size limit under which the log files of a short test still fit, and at which
/// [`audit_log_at_limit`] leaves the audit log full.
pub const FULL: u64 = 16 << 20;

/// An audit log already at `limit` bytes, ending on a whole line: under that file size limit no
/// record fits any more. (Sparse: it takes no room.)
pub fn audit_log_at_limit(path: &Path, limit: u64) {
    use std::os::unix::fs::FileExt;
    let file = std::fs::File::create(path).expect("create the audit log");
    file.write_all_at(b"\n", limit - 1)
        .expect("grow the audit log");
}

/// Another account of the same emulator.
pub struct Other<'a> {
    pub iam: aws_sdk_iam::Client,
    _base: &'a Account,
}

impl Other<'_> {
    pub async fn group(&self, name: &str) {
        self.iam
            .create_group()
            .group_name(name)
            .send()
            .await
            .expect("create group");
    }

    pub async fn user(&self, name: &str) {
        self.iam
            .create_user()
            .user_name(name)
            .send()
            .await
            .expect("create user");
    }

    pub async fn members(&self, group: &str) -> BTreeSet<String> {
        members(&self.iam, group).await
    }
}

/// One seeded user, for chaining its MFA devices, group and password.
pub struct UserSeed<'a> {
    account: &'a Account,
    pub name: String,
}

impl UserSeed<'_> {
    /// A virtual MFA device, created and enabled as the console does.
    pub async fn virtual_mfa(self) -> Self {
        let device = self
            .account
            .iam
            .create_virtual_mfa_device()
            .virtual_mfa_device_name(format!("{}-phone", self.name))
            .send()
            .await
            .expect("create virtual device");
        let serial = device
            .virtual_mfa_device()
            .map(|d| d.serial_number().to_string())
            .expect("serial");
        self.enable(&serial).await
    }

    /// A hardware TOTP token (or any device that is not a virtual one).
    pub async fn hardware_mfa(self) -> Self {
        let serial = format!("GAHT{:08}", self.name.len() * 7919 % 100_000_000);
        self.enable(&serial).await
    }

    async fn enable(self, serial: &str) -> Self {
        self.account
            .iam
            .enable_mfa_device()
            .user_name(&self.name)
            .serial_number(serial)
            .authentication_code1("123456")
            .authentication_code2("654321")
            .send()
            .await
            .expect("enable MFA device");
        self
    }

    pub async fn member_of(self, group: &str) -> Self {
        self.account
            .iam
            .add_user_to_group()
            .group_name(group)
            .user_name(&self.name)
            .send()
            .await
            .expect("add to group");
        self
    }

    pub async fn console_password(self) -> Self {
        self.account
            .iam
            .create_login_profile()
            .user_name(&self.name)
            .password("Correct-Horse-Battery-9")
            .send()
            .await
            .expect("login profile");
        self
    }
}

/// The names of `group`'s members.
pub async fn members(iam: &aws_sdk_iam::Client, group: &str) -> BTreeSet<String> {
    let out = iam
        .get_group()
        .group_name(group)
        .send()
        .await
        .expect("get group");
    out.users()
        .iter()
        .map(|u| u.user_name().to_string())
        .collect()
}

/// This process's limit on open files: (soft, hard).
pub fn nofile_limit() -> (u64, u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes only into `limit`.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    assert_eq!(rc, 0, "getrlimit: {}", std::io::Error::last_os_error());
    (limit.rlim_cur, limit.rlim_max)
}

/// Raises this process's soft limit on open files to at least `needed` (up to the hard limit);
/// fails when the hard limit is lower.
pub fn raise_nofile(needed: u64) {
    let (soft, hard) = nofile_limit();
    if soft >= needed {
        return;
    }
    assert!(
        hard >= needed,
        "this test needs {needed} open files; the hard limit is {hard}"
    );
    let limit = libc::rlimit {
        rlim_cur: needed as libc::rlim_t,
        rlim_max: hard as libc::rlim_t,
    };
    // SAFETY: setrlimit reads only `limit`.
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) };
    assert_eq!(rc, 0, "setrlimit: {}", std::io::Error::last_os_error());
}

/// Sorted set of names, for comparing group membership.
pub fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(std::string::ToString::to_string).collect()
}

/// Every line of an audit log, each of which must be one whole JSON object.
pub fn audit_lines(path: &std::path::Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "the audit log ends in a partial line: {text:?}"
    );
    text.lines()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not a whole JSON line ({e}): {l:?}"))
        })
        .collect()
}

/// Users with a line of `step` for `action` in the audit log.
pub fn audited(lines: &[serde_json::Value], action: &str, step: &str) -> BTreeSet<String> {
    lines
        .iter()
        .filter(|l| l["action"] == action && l["outcome"] == step)
        .map(|l| l["user"].as_str().unwrap().to_string())
        .collect()
}
