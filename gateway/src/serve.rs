//! Running a gateway: open storage, bind, serve until Ctrl-C.

use std::{net::SocketAddr, sync::Arc};

use anyhow::Context;

use crate::{
    config::GatewayConfig,
    peering::{
        self,
        net::{
            mixnet::{MixnetNet, MixnetOptions},
            PeerInbox, PeerNet,
        },
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
    let listener = bind(&config).await?;
    let (remote, commands) = peering::channel();
    let gateway = Gateway::open_with(config, Arc::new(remote)).context("opening the gateway")?;
    serve(listener, gateway, link.map(|l| (l, commands))).await
}

/// Opens the gateway and starts serving in the background; if its config names a network
/// (`[network]`, `mixgate gateway --network`), it first joins that mixnet and peers over it,
/// otherwise it runs alone and says so.
pub async fn start_joined(config: GatewayConfig) -> anyhow::Result<Running> {
    let listener = bind(&config).await?;
    let (remote, commands) = peering::channel();
    let gateway = Gateway::open_with(config, Arc::new(remote)).context("opening the gateway")?;
    let link = match &gateway.config.network {
        Some(network) => {
            let olm_key = crate::peering::groupkeys::GroupKeys::new(
                gateway.db.clone(),
                Arc::new(crate::service::clock::SystemClock),
                gateway.config.group_keys.clone(),
            )
            .olm_identity()
            .await
            .map_err(|e| anyhow::anyhow!("opening the Olm account: {e}"))?;
            let (net, inbox) = MixnetNet::start(
                &gateway.identity,
                gateway.db.clone(),
                network,
                MixnetOptions {
                    olm_key: Some(olm_key),
                    ..MixnetOptions::default()
                },
            )
            .await
            .with_context(|| {
                format!("joining the mixnet (directories {:?})", network.directories)
            })?;
            Some(PeerLink {
                net,
                inbox: Box::new(inbox),
            })
        }
        None => {
            tracing::info!(
                "no network configured ([network] or --network): this gateway runs alone and \
                 shares rooms with no other gateway"
            );
            None
        }
    };
    serve(listener, gateway, link.map(|l| (l, commands))).await
}

async fn bind(config: &GatewayConfig) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))
}

async fn serve(
    listener: tokio::net::TcpListener,
    gateway: Arc<Gateway>,
    link: Option<(PeerLink, peering::Commands)>,
) -> anyhow::Result<Running> {
    let addr = listener.local_addr()?;
    if let Some((link, commands)) = link {
        peering::spawn(gateway.clone(), link.net, link.inbox, commands);
    }
    gateway
        .appservices
        .ensure_senders(&gateway)
        .await
        .map_err(|e| anyhow::anyhow!("creating application-service users: {e}"))?;
    crate::service::pusher::spawn(gateway.clone(), Default::default());
    crate::service::appservice::txn::spawn_all(&gateway, Default::default());
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
    let running = start_joined(config).await?;
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
