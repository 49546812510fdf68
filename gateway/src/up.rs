//! `mixgate up`: a whole local network in one process, the embedded default a new user starts
//! with. A directory authority, 3 mix layers × 2 mix nodes and 2 providers
//! (`transport::local::LocalMixnet`), and N gateways that join it through the same path as
//! `mixgate gateway --network` ([`serve::start_joined`]).
//!
//! Layout of the data folder (`--data`, default `./mixgate-data`):
//!
//! | path | what |
//! |---|---|
//! | `mixnet.key` | 32-byte seed (mode 0600) every mixnet key derives from: the authority key, node identities and link keys stay the same across restarts |
//! | `network.toml` | what a separately started gateway needs to join (`mixgate gateway --network DIR/network.toml`): directory address, authority key, threshold; rewritten at every start |
//! | `gateway-<i>/` | gateway i's data (database and `identity.key`, whose public key is its server name) |
//!
//! Ports: gateway i's client-server API listens on `127.0.0.1:(base port + i)`; the directory,
//! mix nodes and providers listen on ephemeral loopback ports (the directory's is in
//! `network.toml`), so nothing collides with a second network on another base port.
//!
//! When the network is ready it prints, on standard output, a human summary and then one
//! JSON line: `{"ready":true,"gateways":[{"url":…,"server_name":…}],"network":"DIR/network.toml"}`
//! (scripts and the end-to-end tests wait for it).

use std::{
    io::Write,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::Context;
use transport::{
    directory::TrafficParams,
    local::{LocalMixnet, LocalMixnetConfig},
};

use crate::{
    config::{AuthorityKey, GatewayConfig, NetworkConfig, RegistrationMode},
    metrics::{DirectorySource, Metrics, NodeSource},
    serve::{self, Running},
};

/// What `mixgate up` starts.
#[derive(Debug, Clone)]
pub struct UpOptions {
    /// Data folder of the whole network.
    pub data: PathBuf,
    /// Port of the first gateway's client-server API; gateway i listens on `base_port + i`.
    pub base_port: u16,
    /// Number of gateways (0: only the mixnet).
    pub gateways: usize,
    /// Serve metrics and the status page of the whole network here (`--metrics`).
    pub metrics: Option<SocketAddr>,
}

/// Traffic parameters of the local network: cheap when idle on a 2-core machine, quick to
/// deliver. Every gateway sends λ = 10 packets/s (real or cover) plus 1 loop packet/s and polls
/// its mailbox 4 times a second (8 frames each: 32/s against the 27.5/s its own cover needs,
/// `TrafficParams::check`); each node adds 0.5 loop packets/s; μ = 5 ms per mix layer. A
/// one-fragment message then waits ≈ 100 ms for a send slot, 15 ms in the mixes and ≈ 125 ms
/// for the recipient's poll: about a quarter of a second from gateway to gateway. The defaults
/// for a real network (`TrafficParams::default`) trade latency for bandwidth the other way.
pub fn local_params() -> TrafficParams {
    TrafficParams {
        lambda_per_s: 10.0,
        loop_per_s: 1.0,
        mix_loop_per_s: 0.5,
        mu_ms: 5.0,
        poll_per_s: 4.0,
        poll_batch: 8,
        ..TrafficParams::default()
    }
}

/// The network file's header (the rest is the keys of a `[network]` table).
const NETWORK_HEADER: &str = "\
# Written by `mixgate up`: how to join its local mixnet. Start another gateway with
#   mixgate gateway --network <this file> --listen 127.0.0.1:PORT --data DIR --registration open
# or copy these keys under a [network] table of gateway.toml. Rewritten at every start (the
# directory's port is ephemeral); the authority key stays (derived from mixnet.key).
";

/// A started local network.
pub struct Up {
    /// The mixnet (directory, mixes, providers); dropping it stops them.
    pub mixnet: LocalMixnet,
    /// The gateways, in order.
    pub gateways: Vec<Running>,
    /// Where the network file was written.
    pub network_file: PathBuf,
    /// The metrics listener (`--metrics`), if any.
    pub metrics: Option<crate::metrics::MetricsServer>,
}

/// Starts the mixnet and the gateways.
pub async fn start(options: &UpOptions) -> anyhow::Result<Up> {
    let last_port = u16::try_from(options.gateways.saturating_sub(1))
        .ok()
        .and_then(|n| options.base_port.checked_add(n));
    if options.gateways > 0 && last_port.is_none() {
        anyhow::bail!(
            "--base-port {} with --gateways {}: the last port would exceed 65535",
            options.base_port,
            options.gateways
        );
    }
    std::fs::create_dir_all(&options.data)
        .with_context(|| format!("cannot create the data folder {}", options.data.display()))?;
    let seed = transport::config::load_or_create_seed(&options.data.join("mixnet.key"))?;
    let mixnet = LocalMixnet::start(LocalMixnetConfig {
        params: local_params(),
        per_layer: 2,
        providers: 2,
        seed,
        refresh: Duration::from_secs(5),
        ..LocalMixnetConfig::default()
    })
    .await
    .context("starting the local mixnet")?;
    let network = NetworkConfig {
        directories: vec![mixnet.directory],
        authorities: vec![AuthorityKey(mixnet.authority)],
        threshold: Some(1),
    };
    let network_file = options.data.join("network.toml");
    write_network_file(&network_file, &network)?;
    let metrics = options.metrics.map(|_| Metrics::new());
    if let Some(m) = &metrics {
        add_mixnet_sources(m, &mixnet);
    }
    let server = match (options.metrics, &metrics) {
        (Some(addr), Some(m)) => Some(crate::metrics::serve(addr, m.clone(), "--metrics").await?),
        _ => None,
    };
    let mut gateways = Vec::with_capacity(options.gateways);
    for i in 0..options.gateways {
        // Checked above: base_port + i fits.
        let port = options
            .base_port
            .saturating_add(u16::try_from(i).unwrap_or(u16::MAX));
        let config = GatewayConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], port)),
            data_dir: options.data.join(format!("gateway-{i}")),
            registration: RegistrationMode::Open,
            network: Some(network.clone()),
            ..GatewayConfig::default()
        };
        let hook = metrics.as_ref().map(|m| serve::MetricsHook {
            metrics: m.clone(),
            label: i.to_string(),
        });
        let running = serve::start_joined_with(config, hook)
            .await
            .with_context(|| format!("starting gateway {i} on 127.0.0.1:{port}"))?;
        gateways.push(running);
    }
    Ok(Up {
        mixnet,
        gateways,
        network_file,
        metrics: server,
    })
}

/// Registers the local mixnet's directory and nodes with `m` (labels `mix1.0`, `provider0`).
fn add_mixnet_sources(m: &Metrics, mixnet: &LocalMixnet) {
    m.sources().add_directory(DirectorySource {
        label: "0".into(),
        stats: mixnet.directory_stats.clone(),
        probe: mixnet.directory_probe.clone(),
    });
    for (i, node) in mixnet.mixes.iter().enumerate() {
        let layer = match node.cfg.role {
            transport::directory::Role::Mix { layer } => layer,
            transport::directory::Role::Provider => 0,
        };
        let per_layer = mixnet.mixes.len() / 3;
        m.sources().add_node(NodeSource {
            label: format!("mix{layer}.{}", i % per_layer.max(1)),
            stats: node.stats.clone(),
            probe: node.probe.clone(),
        });
    }
    for (i, node) in mixnet.providers.iter().enumerate() {
        m.sources().add_node(NodeSource {
            label: format!("provider{i}"),
            stats: node.stats.clone(),
            probe: node.probe.clone(),
        });
    }
}

fn write_network_file(path: &Path, network: &NetworkConfig) -> anyhow::Result<()> {
    let body = toml::to_string(network).context("writing the network file")?;
    std::fs::write(path, format!("{NETWORK_HEADER}{body}"))
        .with_context(|| format!("cannot write {}", path.display()))
}

impl Up {
    /// The summary for people and the JSON ready line for scripts.
    pub fn announcement(&self) -> (String, serde_json::Value) {
        let mut text = String::new();
        let gateways: Vec<_> = self
            .gateways
            .iter()
            .map(|g| {
                serde_json::json!({
                    "url": format!("http://{}", g.addr),
                    "server_name": g.gateway.server_name().as_str(),
                })
            })
            .collect();
        text.push_str(&format!(
            "mixgate: local mixnet up (directory {}, 3 layers × 2 mix nodes, 2 providers); \
             network file {}\n",
            self.mixnet.directory,
            self.network_file.display()
        ));
        for (i, g) in self.gateways.iter().enumerate() {
            text.push_str(&format!(
                "gateway {i}: http://{}  server name {}\n",
                g.addr,
                g.gateway.server_name()
            ));
        }
        if let Some(first) = self.gateways.first() {
            text.push_str(&format!(
                "Registration is open. In Element Web choose Edit homeserver → http://{} (a second \
                 browser tab or client on the next URL for a second user), create an account, and \
                 invite @name:<the other gateway's server name>.\n",
                first.addr
            ));
        } else {
            text.push_str("No gateways (--gateways 0): only the mixnet runs.\n");
        }
        let mut ready = serde_json::json!({
            "ready": true,
            "gateways": gateways,
            "network": self.network_file.display().to_string(),
        });
        if let Some(m) = &self.metrics {
            text.push_str(&format!(
                "metrics: http://{0}/metrics  status page: http://{0}/\n",
                m.addr
            ));
            ready["metrics"] = serde_json::Value::String(format!("http://{}", m.addr));
        }
        (text, ready)
    }

    /// Stops the gateways and writes their data to disk.
    pub async fn stop(self) {
        for g in &self.gateways {
            g.abort();
        }
        for g in &self.gateways {
            if let Err(e) = g.gateway.db.flush().await {
                tracing::warn!("flushing a gateway's data: {e}");
            }
        }
    }
}

/// Runs `mixgate up` until Ctrl-C.
pub async fn run(options: UpOptions) -> anyhow::Result<()> {
    let up = start(&options).await?;
    let (text, ready) = up.announcement();
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    writeln!(out, "{ready}")?;
    out.flush()?;
    drop(out);
    crate::shutdown::signal()
        .await
        .context("waiting for Ctrl-C or SIGTERM")?;
    up.stop().await;
    tracing::info!("stopped");
    Ok(())
}
