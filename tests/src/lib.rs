//! Shared helpers for end-to-end tests: a real `mixgate gateway` process per test, plus a small
//! raw-HTTP client for the error-case tests and the load tool.
//!
//! The gateway binary is looked up next to the running executable (`target/<profile>/mixgate`,
//! which is where `cargo build -p gateway` puts it for the same `CARGO_TARGET_DIR`), or taken
//! from `MIXGATE_BIN`. Build it before running the tests: `./scripts/test.sh` does.

pub mod http;
pub mod network;
pub mod ops;

use std::{
    io::{Read, Seek},
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

pub use http::{Http, HttpError};
pub use network::{network_table, NetGateway, TestNetwork};

/// How long a gateway may take to answer `/versions` after it was started.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The `mixgate` executable the tests run.
///
/// `MIXGATE_BIN` wins; otherwise the first ancestor folder of the current executable that holds
/// a `mixgate` file (`target/debug/deps/test-… → target/debug/mixgate`).
pub fn mixgate_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("MIXGATE_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("current executable");
    for dir in exe.ancestors().skip(1) {
        let candidate = dir.join("mixgate");
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "no `mixgate` binary next to {} — run `cargo build -p gateway` first (or set MIXGATE_BIN)",
        exe.display()
    );
}

/// Registration policy passed as `--registration`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registration {
    /// Anyone may register with `m.login.dummy`.
    Open,
    /// Registration needs a token.
    Token,
    /// Nobody may register.
    Closed,
}

impl Registration {
    fn as_arg(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Token => "token",
            Self::Closed => "closed",
        }
    }
}

/// How to start a gateway.
#[derive(Debug, Clone)]
pub struct Options {
    /// `--registration`.
    pub registration: Registration,
    /// Extra TOML lines for the config file (e.g. `auth_attempts_per_minute = 10000`).
    pub config: String,
    /// The executable (defaults to [`mixgate_binary`]).
    pub binary: Option<PathBuf>,
    /// Extra command-line arguments after `mixgate gateway` (e.g. `--appservice FILE`).
    pub args: Vec<String>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            registration: Registration::Open,
            // Tests register and log in many users from one address; the rate-limit test sets
            // its own value.
            config: "auth_attempts_per_minute = 10000\n".into(),
            binary: None,
            args: Vec::new(),
        }
    }
}

/// A running `mixgate gateway` process on a loopback port, with its own data folder.
///
/// Dropping it kills the process (SIGKILL) and deletes the data folder.
pub struct TestGateway {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    options: Options,
    binary: PathBuf,
    starts: u32,
}

/// A free loopback port (bound, read and released; the gateway binds it right after).
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    listener.local_addr().expect("local address").port()
}

impl TestGateway {
    /// Starts a gateway with open registration.
    pub async fn start() -> Self {
        Self::start_with(Options::default()).await
    }

    /// Starts a gateway with `options`.
    pub async fn start_with(options: Options) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("mixgate-test-")
            .tempdir()
            .expect("temporary folder");
        Self::start_in(dir, options).await
    }

    /// Starts a gateway on an existing folder (its `data/` subfolder is the gateway's data);
    /// used after preparing data with [`admin`](Self::admin_in).
    pub async fn start_in(dir: tempfile::TempDir, options: Options) -> Self {
        let binary = options.binary.clone().unwrap_or_else(mixgate_binary);
        let mut gw = Self {
            child: None,
            port: 0,
            dir,
            options,
            binary,
            starts: 0,
        };
        gw.spawn().await;
        gw
    }

    /// A fresh temporary folder for [`start_in`](Self::start_in).
    pub fn temp_dir() -> tempfile::TempDir {
        tempfile::Builder::new()
            .prefix("mixgate-test-")
            .tempdir()
            .expect("temporary folder")
    }

    /// Runs `mixgate admin --data DIR/data <args>` (the gateway must not be running on it) and
    /// returns its standard output, trimmed.
    pub fn admin_in(dir: &Path, args: &[&str]) -> String {
        let data = dir.join("data");
        let out = Command::new(mixgate_binary())
            .arg("admin")
            .arg("--data")
            .arg(&data)
            .args(args)
            .output()
            .expect("run mixgate admin");
        assert!(
            out.status.success(),
            "mixgate admin {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// The data folder.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("gateway.log")
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("gateway.toml")
    }

    /// The last `max` bytes of the gateway's log (stderr of every start).
    pub fn log_tail(&self, max: u64) -> String {
        let Ok(mut f) = std::fs::File::open(self.log_path()) else {
            return String::new();
        };
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        let _ = f.seek(std::io::SeekFrom::Start(len.saturating_sub(max)));
        let mut s = String::new();
        let _ = f.read_to_string(&mut s);
        s
    }

    async fn spawn(&mut self) {
        std::fs::write(self.config_path(), &self.options.config).expect("write config");
        let mut last_error = String::new();
        for attempt in 0..5 {
            // After a restart, try the same port first so clients keep their base URL.
            let port = if attempt == 0 && self.port != 0 {
                self.port
            } else {
                free_port()
            };
            self.starts += 1;
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.log_path())
                .expect("open log");
            let mut child = Command::new(&self.binary)
                .arg("gateway")
                .arg("--config")
                .arg(self.config_path())
                .arg("--listen")
                .arg(format!("127.0.0.1:{port}"))
                .arg("--data")
                .arg(self.data_dir())
                .arg("--registration")
                .arg(self.options.registration.as_arg())
                .args(&self.options.args)
                .env(
                    "RUST_LOG",
                    std::env::var("MIXGATE_TEST_LOG").unwrap_or_else(|_| "info,sled=warn".into()),
                )
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::from(log))
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.binary.display()));
            match wait_ready(&mut child, port).await {
                Ok(()) => {
                    self.port = port;
                    self.child = Some(child);
                    return;
                }
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    last_error = format!("{e}\n--- gateway log ---\n{}", self.log_tail(4000));
                    if !last_error.contains("cannot listen") {
                        break;
                    }
                }
            }
        }
        panic!("gateway did not start: {last_error}");
    }

    /// The port the gateway listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The client-server API base URL, e.g. `http://127.0.0.1:41234`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The process id (for /proc figures).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills the process with SIGKILL (no clean shutdown, no final flush) and waits for it.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the process gracefully (SIGINT, as Ctrl-C), waiting up to 10 s before SIGKILL.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .arg("-INT")
            .arg(child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Starts the gateway again on the same data folder (after [`kill9`](Self::kill9) or
    /// [`stop`](Self::stop)), on the same port when it is still free (otherwise on another one:
    /// read [`url`](Self::url) again).
    pub async fn restart(&mut self) {
        self.kill9();
        self.spawn().await;
    }

    /// A raw HTTP client for this gateway.
    pub fn http(&self) -> Http {
        Http::new(self.url())
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            eprintln!(
                "--- gateway log ({}, {} start(s)) ---\n{}",
                self.log_path().display(),
                self.starts,
                self.log_tail(8000)
            );
            if std::env::var_os("MIXGATE_KEEP_DATA").is_some() {
                let path = self.dir.path().to_owned();
                eprintln!("keeping {}", path.display());
                std::mem::forget(std::mem::replace(&mut self.dir, Self::temp_dir()));
            }
        }
    }
}

/// Polls `/versions` until it answers 200, the process exits, or the start timeout passes.
async fn wait_ready(child: &mut Child, port: u16) -> Result<(), String> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .map_err(|e| e.to_string())?;
    let url = format!("http://127.0.0.1:{port}/_matrix/client/versions");
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("gateway exited with {status}"));
        }
        if let Ok(res) = client.get(&url).send().await {
            if res.status().is_success() {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            return Err(format!("no answer on {url} within {START_TIMEOUT:?}"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs `fut` with a deadline, panicking with `what` when it passes.
pub async fn within<T>(secs: u64, what: &str, fut: impl std::future::IntoFuture<Output = T>) -> T {
    match tokio::time::timeout(Duration::from_secs(secs), fut.into_future()).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {secs}s: {what}"),
    }
}

/// Reads the peak resident set size (VmHWM) of process `pid`, in KiB.
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    proc_status_kib(pid, "VmHWM:")
}

/// Reads the current resident set size (VmRSS) of process `pid`, in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    proc_status_kib(pid, "VmRSS:")
}

fn proc_status_kib(pid: u32, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}
