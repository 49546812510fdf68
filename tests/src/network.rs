//! A whole local network as a process: `mixgate up --data DIR --base-port P --gateways N`,
//! exactly the command a user runs. The harness waits for its JSON ready line on standard
//! output and kills the process (SIGKILL) on drop.

use std::{
    io::{BufRead, BufReader, Read, Seek},
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use crate::mixgate_binary;

/// How long `mixgate up` may take to print its ready line.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// One gateway of a [`TestNetwork`], as its ready line lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetGateway {
    /// Client-server API base URL, e.g. `http://127.0.0.1:41234`.
    pub url: String,
    /// The gateway's server name (52 base32 characters: its key).
    pub server_name: String,
}

/// A running `mixgate up` process with its own data folder (deleted on drop).
pub struct TestNetwork {
    child: Option<Child>,
    dir: tempfile::TempDir,
    /// The gateways, in order (gateway i on base port + i).
    pub gateways: Vec<NetGateway>,
    /// The network file it wrote (`DIR/network.toml`).
    pub network_file: PathBuf,
    /// Base URL of its metrics listener (`--metrics`), when started with one.
    pub metrics: Option<String>,
    base_port: u16,
    count: usize,
    with_metrics: bool,
}

/// A base port with `n` free consecutive loopback ports after it (checked by binding them).
fn free_port_range(n: usize) -> Option<u16> {
    for _ in 0..50 {
        let first = TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let fits = first.checked_add(u16::try_from(n).ok()?).is_some();
        if fits
            && (1..n).all(|i| {
                u16::try_from(i)
                    .ok()
                    .and_then(|i| first.checked_add(i))
                    .is_some_and(|p| TcpListener::bind(("127.0.0.1", p)).is_ok())
            })
        {
            return Some(first);
        }
    }
    None
}

impl TestNetwork {
    /// Starts `mixgate up` with `gateways` gateways in a fresh temporary folder.
    pub async fn start(gateways: usize) -> Self {
        Self::start_inner(gateways, false).await
    }

    /// Starts `mixgate up` with `gateways` gateways and `--metrics 127.0.0.1:0`; the metrics
    /// URL is in [`metrics`](Self::metrics).
    pub async fn start_with_metrics(gateways: usize) -> Self {
        Self::start_inner(gateways, true).await
    }

    async fn start_inner(gateways: usize, with_metrics: bool) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("mixgate-up-")
            .tempdir()
            .expect("temporary folder");
        let mut net = Self {
            child: None,
            dir,
            gateways: Vec::new(),
            network_file: PathBuf::new(),
            metrics: None,
            base_port: 0,
            count: gateways,
            with_metrics,
        };
        net.spawn(true).await;
        net
    }

    /// The data folder passed as `--data`.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("up.log")
    }

    /// The last `max` bytes of the process's log (standard error of every start).
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

    /// A folder inside this network's temporary folder (for a gateway started separately).
    pub fn scratch_dir(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    async fn spawn(&mut self, new_ports: bool) {
        let mut last_error = String::new();
        for attempt in 0..5 {
            if new_ports || attempt > 0 {
                self.base_port = free_port_range(self.count.max(1)).expect("free loopback ports");
            }
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.log_path())
                .expect("open log");
            let mut command = Command::new(mixgate_binary());
            if self.with_metrics {
                command.arg("up").arg("--metrics").arg("127.0.0.1:0");
            } else {
                command.arg("up");
            }
            let mut child = command
                .arg("--data")
                .arg(self.data_dir())
                .arg("--base-port")
                .arg(self.base_port.to_string())
                .arg("--gateways")
                .arg(self.count.to_string())
                .env(
                    "RUST_LOG",
                    std::env::var("MIXGATE_TEST_LOG")
                        .unwrap_or_else(|_| "info,sled=warn,ruma_state_res=warn".into()),
                )
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::from(log))
                .spawn()
                .expect("run mixgate up");
            let stdout = child.stdout.take().expect("piped stdout");
            match wait_ready_line(&mut child, stdout).await {
                Ok(ready) => {
                    self.accept(&ready);
                    self.child = Some(child);
                    return;
                }
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    last_error = format!("{e}\n--- mixgate up log ---\n{}", self.log_tail(4000));
                    if !last_error.contains("cannot listen") {
                        break;
                    }
                }
            }
        }
        panic!("mixgate up did not become ready: {last_error}");
    }

    fn accept(&mut self, ready: &serde_json::Value) {
        let gateways = ready["gateways"].as_array().cloned().unwrap_or_default();
        self.gateways = gateways
            .iter()
            .map(|g| NetGateway {
                url: g["url"].as_str().expect("url in the ready line").to_owned(),
                server_name: g["server_name"]
                    .as_str()
                    .expect("server_name in the ready line")
                    .to_owned(),
            })
            .collect();
        self.network_file = PathBuf::from(ready["network"].as_str().expect("network file"));
        self.metrics = ready["metrics"].as_str().map(str::to_owned);
    }

    /// Kills the process with SIGKILL and waits for it.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts `mixgate up` again on the same folder and ports (after [`kill9`](Self::kill9)).
    pub async fn restart(&mut self) {
        self.kill9();
        self.spawn(false).await;
    }
}

impl Drop for TestNetwork {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            eprintln!("--- mixgate up log ---\n{}", self.log_tail(8000));
        }
    }
}

/// Reads lines from `stdout` on a thread until one is the JSON ready line, the process exits,
/// or the timeout passes. The thread keeps draining the pipe afterwards.
async fn wait_ready_line(
    child: &mut Child,
    stdout: std::process::ChildStdout,
) -> Result<serde_json::Value, String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if sent {
                continue;
            }
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                if v["ready"] == serde_json::Value::Bool(true) {
                    sent = true;
                    let _ = tx.send(v);
                }
            }
        }
    });
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if let Ok(v) = rx.try_recv() {
            return Ok(v);
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("mixgate up exited with {status}"));
        }
        if Instant::now() > deadline {
            return Err(format!("no ready line within {READY_TIMEOUT:?}"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The `[network]` table for a `gateway.toml`, from a network file written by `mixgate up`
/// (its keys, under the table header).
pub fn network_table(network_file: &Path) -> String {
    let text = std::fs::read_to_string(network_file).expect("read the network file");
    let body: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    format!("[network]\n{body}")
}
