//! Helpers of the operations tests: the Python tools they drive (the official Prometheus text
//! parser, synadm) from the virtual environment `.ci/run` creates in `target/ops-venv`.

use std::{
    io::Write,
    path::PathBuf,
    process::{Command, Stdio},
};

use serde_json::Value;

/// The `bin/` folder of the operations venv: `MIXGATE_OPS_VENV` or `<workspace>/target/ops-venv`.
pub fn venv_bin() -> PathBuf {
    let venv = std::env::var_os("MIXGATE_OPS_VENV").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/ops-venv"),
        PathBuf::from,
    );
    let bin = venv.join("bin");
    assert!(
        bin.join("python3").is_file(),
        "no Python venv at {}: run .ci/run, or `python3 -m venv target/ops-venv && \
         target/ops-venv/bin/pip install -r tests/ops/requirements.txt` (or set MIXGATE_OPS_VENV)",
        venv.display()
    );
    bin
}

/// One sample of a scrape: metric name (with `_total`, `_bucket`, … suffixes), labels, value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Sample name.
    pub name: String,
    /// Label pairs.
    pub labels: Vec<(String, String)>,
    /// Value.
    pub value: f64,
}

/// A parsed scrape.
#[derive(Debug, Clone, Default)]
pub struct Scrape {
    /// Every sample.
    pub samples: Vec<Sample>,
    /// Family name → type (`counter`, `gauge`, `histogram`), as the parser saw them.
    pub families: Vec<(String, String)>,
}

impl Scrape {
    /// The value of sample `name` whose labels include all of `labels` (summed over the
    /// samples that match), or `None` if none does.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut found = None;
        for s in &self.samples {
            if s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.iter().any(|(a, b)| a == k && b == v))
            {
                *found.get_or_insert(0.0) += s.value;
            }
        }
        found
    }

    /// Like [`value`](Self::value), 0 when absent.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.value(name, labels).unwrap_or(0.0)
    }

    /// Whether a family of that name and type was announced.
    pub fn has_family(&self, name: &str, kind: &str) -> bool {
        self.families.iter().any(|(n, t)| n == name && t == kind)
    }

    /// Every label value of every sample.
    pub fn label_values(&self) -> impl Iterator<Item = &str> {
        self.samples
            .iter()
            .flat_map(|s| s.labels.iter().map(|(_, v)| v.as_str()))
    }
}

/// Parses Prometheus text with Python's `prometheus_client.parser` (`tests/ops/prom_parse.py`);
/// panics if the parser rejects it.
pub fn parse_prometheus(text: &str) -> Scrape {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("ops/prom_parse.py");
    let mut child = Command::new(venv_bin().join("python3"))
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run prom_parse.py");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write the scrape");
    let out = child.wait_with_output().expect("prom_parse.py output");
    assert!(
        out.status.success(),
        "the Prometheus parser rejected the scrape: {}\n--- scrape ---\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("parser JSON");
    let samples = v["samples"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|s| Sample {
                    name: s[0].as_str().unwrap_or_default().to_owned(),
                    labels: s[1]
                        .as_object()
                        .map(|o| {
                            o.iter()
                                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().into()))
                                .collect()
                        })
                        .unwrap_or_default(),
                    value: s[2].as_f64().unwrap_or(f64::NAN),
                })
                .collect()
        })
        .unwrap_or_default();
    let families = v["families"]
        .as_object()
        .map(|o| {
            o.iter()
                .map(|(k, t)| (k.clone(), t.as_str().unwrap_or_default().to_owned()))
                .collect()
        })
        .unwrap_or_default();
    Scrape { samples, families }
}

/// `GET {base}/metrics`, parsed.
pub async fn scrape(base: &str) -> Scrape {
    let res = reqwest::get(format!("{base}/metrics"))
        .await
        .expect("GET /metrics");
    assert!(res.status().is_success(), "GET /metrics: {}", res.status());
    let text = res.text().await.expect("metrics body");
    parse_prometheus(&text)
}

/// A `mixgate` process of any role started with `args`, its standard error in a log file;
/// killed (SIGKILL) on drop.
pub struct RoleProcess {
    child: Option<std::process::Child>,
    log: PathBuf,
}

impl RoleProcess {
    /// Starts `mixgate <args>` with its log in `log`.
    pub fn start(args: &[&str], log: PathBuf) -> Self {
        let file = std::fs::File::create(&log).expect("create the log file");
        let child = Command::new(crate::mixgate_binary())
            .args(args)
            .env(
                "RUST_LOG",
                std::env::var("MIXGATE_TEST_LOG").unwrap_or_else(|_| "info,sled=warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(file))
            .spawn()
            .expect("run mixgate");
        Self {
            child: Some(child),
            log,
        }
    }

    /// Waits (bounded: `secs`) for the process to exit; its status, or `None` if it still runs.
    pub async fn wait_exit(&mut self, secs: u64) -> Option<std::process::ExitStatus> {
        let child = self.child.as_mut()?;
        for _ in 0..secs * 20 {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        None
    }

    /// The process's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Kills the process (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for RoleProcess {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("--- {} ---\n{}", self.log.display(), self.log());
        }
    }
}

/// A free loopback port (bound, read and released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Waits (bounded: `secs`) until `GET {base}/metrics` answers.
pub async fn wait_metrics(base: &str, secs: u64) {
    for _ in 0..secs * 10 {
        if let Ok(r) = reqwest::get(format!("{base}/metrics")).await {
            if r.status().is_success() {
                return;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("{base}/metrics never answered");
}

/// Runs `synadm -c CONFIG --batch -o json ARGS…` (from the ops venv, with `HOME` in `home` so
/// its log file lands there) and returns the last JSON document it printed (its whole output
/// as a JSON string when it printed none, e.g. "… successfully deleted."); panics if it fails.
pub fn synadm(config: &std::path::Path, home: &std::path::Path, args: &[&str]) -> Value {
    let out = Command::new(venv_bin().join("synadm"))
        .arg("-c")
        .arg(config)
        .args(["--batch", "-o", "json"])
        .args(args)
        .env("HOME", home)
        .stdin(Stdio::null())
        .output()
        .expect("run synadm");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "synadm {args:?} failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Some commands print notices and a document before the result (`user modify` shows the
    // settings before and after): the result is the last JSON document that starts a line.
    let mut last = None;
    let mut offset = 0;
    for line in stdout.split_inclusive('\n') {
        if line.starts_with(['{', '[']) {
            if let Some(Ok(v)) = serde_json::Deserializer::from_str(&stdout[offset..])
                .into_iter::<Value>()
                .next()
            {
                last = Some(v);
            }
        }
        offset += line.len();
    }
    last.unwrap_or_else(|| Value::String(stdout.into_owned()))
}

/// Writes a synadm config for an admin `user` with `token` on the gateway at `url` (whose
/// server name is `server`); returns its path.
pub fn synadm_config(
    dir: &std::path::Path,
    url: &str,
    user: &str,
    token: &str,
    server: &str,
) -> PathBuf {
    let path = dir.join("synadm.yaml");
    let text = format!(
        "user: \"{user}\"\ntoken: \"{token}\"\nbase_url: \"{url}\"\nadmin_path: /_synapse/admin\n\
         matrix_path: /_matrix\nformat: json\ntimeout: 30\nserver_discovery: well-known\n\
         homeserver: \"{server}\"\nssl_verify: false\n"
    );
    std::fs::write(&path, text).expect("write synadm.yaml");
    path
}
