//! Running a gateway: open storage, bind, serve until Ctrl-C.

use std::{net::SocketAddr, sync::Arc};

use anyhow::Context;

use crate::{
    config::GatewayConfig,
    peering::{
        self,
        net::{PeerInbox, PeerNet},
    },
    service::Gateway,
};

/// How a gateway reaches other gateways: a network handle and its inbox.
pub struct PeerLink {
    /// Sends to and asks other gateways.
    pub net: Arc<dyn PeerNet>,
    /// Messages from other gateways.
    pub inbox: Box<dyn PeerInbox>,
}

/// A gateway serving on a bound socket.
pub struct Running {
    /// The address actually bound (useful with port 0).
    pub addr: SocketAddr,
    /// The gateway's services.
    pub gateway: Arc<Gateway>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Running {
    /// Stops serving.
    pub fn abort(&self) {
        self.task.abort();
    }
}

/// Opens the gateway and starts serving in the background, alone (no other gateways).
pub async fn start(config: GatewayConfig) -> anyhow::Result<Running> {
    start_peered(config, None).await
}

/// Opens the gateway and starts serving in the background; with a [`PeerLink`] it also starts
/// peering, so its rooms are shared with other gateways on that network.
pub async fn start_peered(
    config: GatewayConfig,
    link: Option<PeerLink>,
) -> anyhow::Result<Running> {
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener.local_addr()?;
    let gateway = match link {
        Some(link) => {
            let (remote, commands) = peering::channel();
            let gateway =
                Gateway::open_with(config, Arc::new(remote)).context("opening the gateway")?;
            peering::spawn(gateway.clone(), link.net, link.inbox, commands);
            gateway
        }
        None => Gateway::open(config).context("opening the gateway")?,
    };
    let app = crate::api::router(gateway.clone());
    let limits = crate::http_limits::HttpLimits::from_config(&gateway.config);
    let task = tokio::spawn(crate::http_limits::serve(listener, app, limits));
    Ok(Running {
        addr,
        gateway,
        task,
    })
}

/// Runs a gateway until Ctrl-C.
pub async fn run(config: GatewayConfig) -> anyhow::Result<()> {
    let running = start(config).await?;
    tracing::info!(
        addr = %running.addr,
        server_name = %running.gateway.server_name(),
        registration = ?running.gateway.config.registration,
        "gateway ready: point a Matrix client at http://{}",
        running.addr
    );
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    running.abort();
    running.gateway.db.flush().await?;
    tracing::info!("stopped");
    Ok(())
}
