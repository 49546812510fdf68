//! Running the mixnet roles (`mixgate mixnode`, `provider`, `directory`) from their config
//! files, with their metrics listener when one is configured.

use std::{net::SocketAddr, path::Path};

use anyhow::Context;
use transport::{
    config::{metrics_listen, DirectoryFile, NodeFile},
    directory::{DirectoryServer, Role},
    node::Node,
};

use crate::metrics::{self, DirectorySource, Metrics, MetricsServer, NodeSource};

/// Which node role a command expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    /// `mixgate mixnode`.
    Mix,
    /// `mixgate provider`.
    Provider,
}

/// The metrics address: `--metrics` wins over the file's `metrics_listen`; with the origin to
/// name in a bind error.
fn metrics_addr(
    file: &Path,
    flag: Option<SocketAddr>,
) -> anyhow::Result<Option<(SocketAddr, String)>> {
    Ok(match flag {
        Some(a) => Some((a, "--metrics".into())),
        None => metrics_listen(file)?.map(|a| (a, file.display().to_string())),
    })
}

async fn start_metrics(
    at: Option<(SocketAddr, String)>,
    add: impl FnOnce(&Metrics),
) -> anyhow::Result<Option<MetricsServer>> {
    let Some((addr, origin)) = at else {
        return Ok(None);
    };
    let m = Metrics::new();
    add(&m);
    Ok(Some(metrics::serve(addr, m, &origin).await?))
}

/// Runs a mix node or provider from `file` until the process ends.
pub async fn run_node(
    file: &Path,
    kind: NodeKind,
    metrics_flag: Option<SocketAddr>,
) -> anyhow::Result<()> {
    let cfg = NodeFile::load(file)?;
    let ok = match kind {
        NodeKind::Mix => matches!(cfg.role, Role::Mix { .. }),
        NodeKind::Provider => matches!(cfg.role, Role::Provider),
    };
    let (word, command) = match kind {
        NodeKind::Mix => ("mix", "mixnode"),
        NodeKind::Provider => ("provider", "provider"),
    };
    anyhow::ensure!(
        ok,
        "{}: key `role`: expected \"{word}\" for `mixgate {command}`",
        file.display()
    );
    let at = metrics_addr(file, metrics_flag)?;
    tracing::info!(listen = %cfg.listen, "{word} starting");
    let node = Node::bind(cfg, None)
        .await
        .with_context(|| format!("{}: key `listen`", file.display()))?;
    let _metrics = start_metrics(at, |m| {
        m.sources().add_node(NodeSource {
            label: word.into(),
            stats: node.stats(),
            probe: node.probe(),
        })
    })
    .await?;
    node.run().await?;
    Ok(())
}

/// Runs a directory authority from `file` until the process ends.
pub async fn run_directory(file: &Path, metrics_flag: Option<SocketAddr>) -> anyhow::Result<()> {
    let cfg = DirectoryFile::load(file)?;
    let at = metrics_addr(file, metrics_flag)?;
    tracing::info!(listen = %cfg.listen, "directory authority starting");
    let dir = DirectoryServer::bind(cfg)
        .await
        .with_context(|| format!("{}: key `listen`", file.display()))?;
    let _metrics = start_metrics(at, |m| {
        m.sources().add_directory(DirectorySource {
            label: "self".into(),
            stats: dir.stats(),
            probe: dir.probe(),
        })
    })
    .await?;
    dir.run().await;
    Ok(())
}

/// The Ed25519 public key (64 hex characters) of a node's or authority's key file, creating
/// the file (mode 0600) if it does not exist: what goes into `authorities`, `[[peers]] key`
/// and `allowed` of the other machines' files.
pub fn public_key(file: &Path) -> anyhow::Result<String> {
    let seed = transport::config::load_or_create_seed(file)?;
    let key = ed25519_dalek::SigningKey::from_bytes(&seed);
    Ok(data_encoding::HEXLOWER.encode(&key.verifying_key().to_bytes()))
}
