//! Running a gateway: open storage, bind, serve until Ctrl-C.

use std::{net::SocketAddr, sync::Arc};

use anyhow::Context;

use crate::{
    config::GatewayConfig,
    metrics::{ClientProbe, GatewaySource, Metrics, MetricsServer},
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
    /// Its own metrics listener (`metrics_listen`), if it has one.
    pub metrics: Option<MetricsServer>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// Where a gateway reports its metrics: the process's [`Metrics`] and its label there.
pub struct MetricsHook {
    /// The process's metrics.
    pub metrics: Arc<Metrics>,
    /// This gateway's `gateway` label value.
    pub label: String,
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
    serve(listener, gateway, link.map(|l| (l, commands)), None, None).await
}

/// Opens the gateway and starts serving in the background; if its config names a network
/// (`[network]`, `mixgate gateway --network`), it first joins that mixnet and peers over it,
/// otherwise it runs alone and says so.
pub async fn start_joined(config: GatewayConfig) -> anyhow::Result<Running> {
    let Some(addr) = config.metrics_listen else {
        return start_joined_with(config, None).await;
    };
    let metrics = Metrics::new();
    let origin = match &config.file {
        Some(f) => f.display().to_string(),
        None => "gateway (--metrics)".into(),
    };
    let server = crate::metrics::serve(addr, metrics.clone(), &origin).await?;
    let hook = MetricsHook {
        metrics,
        label: "0".into(),
    };
    let mut running = start_joined_with(config, Some(hook)).await?;
    running.metrics = Some(server);
    Ok(running)
}

/// [`start_joined`] reporting to `hook` (`mixgate up` shares one [`Metrics`] between the
/// mixnet and its gateways); `metrics_listen` of the config is not looked at.
pub async fn start_joined_with(
    config: GatewayConfig,
    hook: Option<MetricsHook>,
) -> anyhow::Result<Running> {
    let listener = bind(&config).await?;
    let (remote, commands) = peering::channel();
    let gateway = Gateway::open_with(config, Arc::new(remote)).context("opening the gateway")?;
    let mut client = None;
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
            client = Some(ClientProbe {
                stats: net.client_stats(),
                latency: net.delivery_latency(),
            });
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
    serve(listener, gateway, link.map(|l| (l, commands)), hook, client).await
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
    hook: Option<MetricsHook>,
    client: Option<ClientProbe>,
) -> anyhow::Result<Running> {
    let addr = listener.local_addr()?;
    let peering = link
        .map(|(link, commands)| peering::spawn(gateway.clone(), link.net, link.inbox, commands));
    gateway
        .appservices
        .ensure_senders(&gateway)
        .await
        .map_err(|e| anyhow::anyhow!("creating application-service users: {e}"))?;
    crate::service::pusher::spawn(gateway.clone(), Default::default());
    crate::service::appservice::txn::spawn_all(&gateway, Default::default());
    let mut app = crate::api::router(gateway.clone());
    if let Some(hook) = hook {
        hook.metrics.sources().add_gateway(GatewaySource {
            label: hook.label.clone(),
            gateway: gateway.clone(),
            peering,
            client,
        });
        app = app.layer(axum::middleware::from_fn_with_state(
            hook.metrics.tracker(&hook.label),
            crate::metrics::http::track,
        ));
    }
    let limits = crate::http_limits::HttpLimits::from_config(&gateway.config);
    let task = tokio::spawn(crate::http_limits::serve(listener, app, limits));
    Ok(Running {
        addr,
        gateway,
        metrics: None,
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
    crate::shutdown::signal()
        .await
        .context("waiting for Ctrl-C or SIGTERM")?;
    running.abort();
    running.gateway.db.flush().await?;
    tracing::info!("stopped");
    Ok(())
}
