//! What the metrics endpoint reads at scrape time: the counters the gateway, the transport
//! client, peering, mix nodes, providers and directory authorities already keep. Nothing here
//! is updated on the hot path; a scrape reads atomics and a few locks.

use std::{
    fmt,
    sync::{Arc, Mutex},
};

use prometheus_client::{collector::Collector, encoding::DescriptorEncoder};
use transport::{
    client::ClientStats,
    directory::{DirectoryProbe, DirectoryStats},
    latency::LatencyHistogram,
    node::{NodeProbe, NodeStats},
};

use super::encode::{counters, gauge_value, gauges, histograms, Label};
use crate::{peering::PeeringStats, service::Gateway};

/// A gateway's transport client counters.
#[derive(Clone)]
pub struct ClientProbe {
    /// Packet and message counters.
    pub stats: Arc<ClientStats>,
    /// Delivery latency.
    pub latency: Arc<LatencyHistogram>,
}

/// One gateway of this process.
#[derive(Clone)]
pub struct GatewaySource {
    /// Its label value ("0" for a lone gateway).
    pub label: String,
    /// Its services (accounts, rooms and events are counted from storage).
    pub gateway: Arc<Gateway>,
    /// Peering counters, when it peers.
    pub peering: Option<Arc<PeeringStats>>,
    /// Transport client, when it joined a mixnet.
    pub client: Option<ClientProbe>,
}

/// One mix node or provider of this process.
#[derive(Clone)]
pub struct NodeSource {
    /// Its label value (`mix1.0`, `provider0`, or the role name for a lone node).
    pub label: String,
    /// Counters.
    pub stats: Arc<NodeStats>,
    /// Queues and links.
    pub probe: NodeProbe,
}

/// One directory authority of this process.
#[derive(Clone)]
pub struct DirectorySource {
    /// Its label value.
    pub label: String,
    /// Counters.
    pub stats: Arc<DirectoryStats>,
    /// Epoch and signatures.
    pub probe: DirectoryProbe,
}

/// Every source of a process; registered once as a collector, filled as roles start.
#[derive(Default)]
pub struct Sources {
    gateways: Mutex<Vec<GatewaySource>>,
    nodes: Mutex<Vec<NodeSource>>,
    directories: Mutex<Vec<DirectorySource>>,
}

impl fmt::Debug for Sources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sources").finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Sources {
    /// Adds a gateway.
    pub fn add_gateway(&self, s: GatewaySource) {
        lock(&self.gateways).push(s);
    }

    /// Adds a mix node or provider.
    pub fn add_node(&self, s: NodeSource) {
        lock(&self.nodes).push(s);
    }

    /// Adds a directory authority.
    pub fn add_directory(&self, s: DirectorySource) {
        lock(&self.directories).push(s);
    }

    /// The gateways (copies of the handles).
    pub fn gateways(&self) -> Vec<GatewaySource> {
        lock(&self.gateways).clone()
    }

    /// The nodes.
    pub fn nodes(&self) -> Vec<NodeSource> {
        lock(&self.nodes).clone()
    }

    /// The directory authorities.
    pub fn directories(&self) -> Vec<DirectorySource> {
        lock(&self.directories).clone()
    }
}

impl Collector for Sources {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        encode_gateways(&mut enc, &self.gateways())?;
        encode_clients(&mut enc, &self.gateways())?;
        encode_peering(&mut enc, &self.gateways())?;
        encode_nodes(&mut enc, &self.nodes())?;
        encode_directories(&mut enc, &self.directories())
    }
}

fn encode_gateways(enc: &mut DescriptorEncoder, gws: &[GatewaySource]) -> fmt::Result {
    let (mut users, mut rooms, mut events) = (vec![], vec![], vec![]);
    for g in gws {
        let l = vec![("gateway", g.label.as_str())];
        match g.gateway.users.count() {
            Ok(n) => users.push((l.clone(), i64::try_from(n).unwrap_or(i64::MAX))),
            Err(e) => tracing::warn!("metrics: counting accounts: {}", e.message),
        }
        match g.gateway.rooms.counts() {
            Ok((r, ev)) => {
                rooms.push((l.clone(), i64::try_from(r).unwrap_or(i64::MAX)));
                events.push((l, i64::try_from(ev).unwrap_or(i64::MAX)));
            }
            Err(e) => tracing::warn!("metrics: counting rooms: {}", e.message),
        }
    }
    gauges(
        enc,
        "mixgate_users",
        "Local accounts (deactivated ones included)",
        &users,
    )?;
    gauges(enc, "mixgate_rooms", "Rooms this gateway holds", &rooms)?;
    gauges(
        enc,
        "mixgate_events_stored",
        "Events (PDUs) stored",
        &events,
    )
}

fn encode_clients(enc: &mut DescriptorEncoder, gws: &[GatewaySource]) -> fmt::Result {
    let clients: Vec<(&str, &ClientProbe)> = gws
        .iter()
        .filter_map(|g| Some((g.label.as_str(), g.client.as_ref()?)))
        .collect();
    let per = |f: &dyn Fn(&ClientStats) -> Vec<(&'static str, u64)>, key: &'static str| {
        let mut out: Vec<(Vec<Label>, u64)> = vec![];
        for (gw, c) in &clients {
            for (value, n) in f(&c.stats) {
                out.push((vec![("gateway", *gw), (key, value)], n));
            }
        }
        out
    };
    let one = |f: &dyn Fn(&ClientStats) -> u64| {
        clients
            .iter()
            .map(|(gw, c)| (vec![("gateway", *gw)], f(&c.stats)))
            .collect::<Vec<_>>()
    };
    use std::sync::atomic::Ordering::Relaxed;
    counters(
        enc,
        "mixgate_transport_packets_sent",
        "Packets the transport client sent, by kind: real, loop cover, drop cover (Poisson cover)",
        &per(
            &|s| {
                vec![
                    ("real", s.sent_real.load(Relaxed)),
                    ("loop_cover", s.sent_loops.load(Relaxed)),
                    ("drop_cover", s.sent_cover.load(Relaxed)),
                ]
            },
            "kind",
        ),
    )?;
    counters(
        enc,
        "mixgate_transport_retransmissions",
        "Retransmissions: a fragment whose acknowledgement was late, or a whole message whose \
         end-to-end confirmation was late",
        &per(
            &|s| {
                vec![
                    ("fragment", s.retransmits.load(Relaxed)),
                    ("message", s.resends.load(Relaxed)),
                ]
            },
            "scope",
        ),
    )?;
    counters(
        enc,
        "mixgate_transport_unroutable_fragments",
        "Fragments whose packet could not be built (the recipient's provider is not in the \
         current directory document); each waits like a lost packet before its next attempt",
        &one(&|s| s.build_failures.load(Relaxed)),
    )?;
    counters(
        enc,
        "mixgate_transport_deliveries",
        "Messages sent by this gateway, by outcome (confirmed end to end, or given up)",
        &per(
            &|s| {
                vec![
                    ("delivered", s.delivered.load(Relaxed)),
                    ("failed", s.failed.load(Relaxed)),
                ]
            },
            "outcome",
        ),
    )?;
    counters(
        enc,
        "mixgate_transport_mailbox_polls",
        "Mailbox polls sent to the provider",
        &one(&|s| s.polls.load(Relaxed)),
    )?;
    counters(
        enc,
        "mixgate_transport_messages_received",
        "Messages received (after duplicate suppression)",
        &one(&|s| s.received.load(Relaxed)),
    )?;
    counters(
        enc,
        "mixgate_transport_packets_dropped",
        "Received packets dropped, by reason",
        &per(
            &|s| {
                vec![
                    ("undecodable", s.dropped_bad.load(Relaxed)),
                    ("duplicate", s.duplicates.load(Relaxed)),
                    ("late_reply", s.late_replies.load(Relaxed)),
                    ("link_full", s.frames_dropped.load(Relaxed)),
                ]
            },
            "reason",
        ),
    )?;
    counters(
        enc,
        "mixgate_transport_reconnects",
        "Reconnections of the link to the provider",
        &one(&|s| s.reconnects.load(Relaxed)),
    )?;
    let latency: Vec<_> = clients
        .iter()
        .map(|(gw, c)| (vec![("gateway", *gw)], c.latency.snapshot()))
        .collect();
    histograms(
        enc,
        "mixgate_transport_delivery_latency_seconds",
        "From sending a message to its end-to-end confirmation",
        &latency,
    )
}

fn encode_peering(enc: &mut DescriptorEncoder, gws: &[GatewaySource]) -> fmt::Result {
    let peers: Vec<(&str, &Arc<PeeringStats>)> = gws
        .iter()
        .filter_map(|g| Some((g.label.as_str(), g.peering.as_ref()?)))
        .collect();
    let one = |f: &dyn Fn(&PeeringStats) -> u64| {
        peers
            .iter()
            .map(|(gw, p)| (vec![("gateway", *gw)], f(p)))
            .collect::<Vec<_>>()
    };
    counters(
        enc,
        "mixgate_peering_messages_sent",
        "Messages handed to the network for other gateways",
        &one(&|p| p.messages_out()),
    )?;
    counters(
        enc,
        "mixgate_peering_bytes_sent",
        "Bytes of those messages, before the transport's padding",
        &one(&|p| p.bytes_out()),
    )?;
    counters(
        enc,
        "mixgate_peering_messages_received",
        "Messages received from other gateways",
        &one(&|p| p.messages_in()),
    )?;
    counters(
        enc,
        "mixgate_peering_pdus_accepted",
        "Remote PDUs accepted into rooms",
        &one(&|p| p.pdus_accepted()),
    )?;
    let drops: Vec<(&str, std::collections::BTreeMap<&'static str, u64>)> =
        peers.iter().map(|(gw, p)| (*gw, p.drops())).collect();
    let mut rejected: Vec<(Vec<Label>, u64)> = vec![];
    for (gw, map) in &drops {
        for (reason, n) in map {
            rejected.push((vec![("gateway", *gw), ("reason", *reason)], *n));
        }
    }
    counters(
        enc,
        "mixgate_peering_rejected",
        "Peer messages and PDUs dropped or refused, by reason",
        &rejected,
    )?;
    let notes: Vec<(&str, std::collections::BTreeMap<&'static str, u64>)> =
        peers.iter().map(|(gw, p)| (*gw, p.notes())).collect();
    let mut events: Vec<(Vec<Label>, u64)> = vec![];
    for (gw, map) in &notes {
        for (what, n) in map {
            events.push((vec![("gateway", *gw), ("event", *what)], *n));
        }
    }
    counters(
        enc,
        "mixgate_peering_group_key_events",
        "Group-key events: epochs started (by reason), keys accepted, messages held for \
         their key, keys recovered by request, Olm resets",
        &events,
    )
}

fn encode_nodes(enc: &mut DescriptorEncoder, nodes: &[NodeSource]) -> fmt::Result {
    use std::sync::atomic::Ordering::Relaxed;
    let one = |f: &dyn Fn(&NodeStats) -> u64| {
        nodes
            .iter()
            .map(|n| (vec![("node", n.label.as_str())], f(&n.stats)))
            .collect::<Vec<_>>()
    };
    counters(
        enc,
        "mixgate_node_packets_received",
        "Packets received on links (processed by the node)",
        &one(&|s| s.received.load(Relaxed)),
    )?;
    counters(
        enc,
        "mixgate_node_packets_forwarded",
        "Packets forwarded to a next hop",
        &one(&|s| s.relayed.load(Relaxed)),
    )?;
    counters(
        enc,
        "mixgate_node_packets_submitted",
        "Packets gateways submitted to this provider",
        &one(&|s| s.submitted.load(Relaxed)),
    )?;
    counters(
        enc,
        "mixgate_node_packets_stored",
        "Packets stored in mailboxes (providers)",
        &one(&|s| s.stored.load(Relaxed)),
    )?;
    counters(
        enc,
        "mixgate_node_polls_answered",
        "Mailbox polls answered (providers)",
        &one(&|s| s.polls_answered.load(Relaxed)),
    )?;
    counters(
        enc,
        "mixgate_node_loop_cover_sent",
        "The node's own loop-cover packets sent",
        &one(&|s| s.loops_sent.load(Relaxed)),
    )?;
    counters(
        enc,
        "mixgate_node_loop_cover_received",
        "The node's own loop-cover packets that came back",
        &one(&|s| s.loops_received.load(Relaxed)),
    )?;
    let mut dropped: Vec<(Vec<Label>, u64)> = vec![];
    for n in nodes {
        let s = &n.stats;
        for (reason, v) in [
            ("malformed", s.dropped_malformed.load(Relaxed)),
            ("mac", s.dropped_bad_mac.load(Relaxed)),
            ("replay", s.dropped_replay.load(Relaxed)),
            ("tagged", s.dropped_tagged.load(Relaxed)),
            ("unknown_hop", s.dropped_unknown_hop.load(Relaxed)),
            ("overload", s.dropped_overload.load(Relaxed)),
            ("peer_full", s.dropped_peer_full.load(Relaxed)),
            ("quota", s.dropped_quota.load(Relaxed)),
            ("expired", s.expired.load(Relaxed)),
        ] {
            dropped.push((vec![("node", n.label.as_str()), ("reason", reason)], v));
        }
    }
    counters(
        enc,
        "mixgate_node_packets_dropped",
        "Packets dropped, by reason",
        &dropped,
    )?;
    counters(
        enc,
        "mixgate_node_mailbox_offered_again",
        "Mailbox packets a provider handed out again: neither an acknowledgement nor a receipt \
         came within their lease (a lost poll answer or poll)",
        &one(&|s| s.offered_again.load(Relaxed)),
    )?;
    counters(
        enc,
        "mixgate_node_links_refused",
        "Incoming links refused (handshake failure, unknown key, timeout, too many)",
        &one(&|s| s.links_refused.load(Relaxed)),
    )?;
    counters(
        enc,
        "mixgate_node_link_errors",
        "Links that ended with an error",
        &one(&|s| s.link_errors.load(Relaxed)),
    )?;
    let gauges_now: Vec<_> = nodes.iter().map(|n| (n, n.probe.gauges())).collect();
    let mut queues: Vec<(Vec<Label>, i64)> = vec![];
    let mut links: Vec<(Vec<Label>, i64)> = vec![];
    for (n, g) in &gauges_now {
        let l = n.label.as_str();
        queues.push((
            vec![("node", l), ("queue", "ingress")],
            gauge_value(g.ingress_queue),
        ));
        queues.push((
            vec![("node", l), ("queue", "delay")],
            gauge_value(g.delay_queue),
        ));
        queues.push((
            vec![("node", l), ("queue", "link")],
            gauge_value(g.link_queue),
        ));
        links.push((
            vec![("node", l), ("direction", "in")],
            gauge_value(g.links_in),
        ));
        links.push((
            vec![("node", l), ("direction", "out")],
            gauge_value(g.links_out),
        ));
    }
    gauges(
        enc,
        "mixgate_node_queue_depth",
        "Packets waiting: to be processed (ingress), for their mixing delay (delay), to be \
         written to a link (link)",
        &queues,
    )?;
    gauges(enc, "mixgate_node_links", "Open links", &links)
}

fn encode_directories(enc: &mut DescriptorEncoder, dirs: &[DirectorySource]) -> fmt::Result {
    use std::sync::atomic::Ordering::Relaxed;
    let now: Vec<_> = dirs.iter().map(|d| (d, d.probe.gauges())).collect();
    let gauge = |f: &dyn Fn(&transport::directory::DirectoryGauges) -> i64| {
        now.iter()
            .map(|(d, g)| (vec![("authority", d.label.as_str())], f(g)))
            .collect::<Vec<_>>()
    };
    let counter = |f: &dyn Fn(&DirectoryStats) -> u64| {
        dirs.iter()
            .map(|d| (vec![("authority", d.label.as_str())], f(&d.stats)))
            .collect::<Vec<_>>()
    };
    gauges(
        enc,
        "mixgate_directory_epoch",
        "The current directory epoch",
        &gauge(&|g| i64::try_from(g.epoch).unwrap_or(i64::MAX)),
    )?;
    gauges(
        enc,
        "mixgate_directory_signatures",
        "Authority signatures on the current epoch's document (0: no consensus yet)",
        &gauge(&|g| gauge_value(g.signatures)),
    )?;
    gauges(
        enc,
        "mixgate_directory_signature_threshold",
        "Signatures a document needs",
        &gauge(&|g| gauge_value(g.threshold)),
    )?;
    gauges(
        enc,
        "mixgate_directory_nodes",
        "Mix nodes and providers registered",
        &gauge(&|g| gauge_value(g.nodes)),
    )?;
    gauges(
        enc,
        "mixgate_directory_gateways",
        "Gateway descriptors held",
        &gauge(&|g| gauge_value(g.gateways)),
    )?;
    counters(
        enc,
        "mixgate_directory_documents_served",
        "Directory documents served",
        &counter(&|s| s.served.load(Relaxed)),
    )?;
    counters(
        enc,
        "mixgate_directory_registrations",
        "Node registrations accepted",
        &counter(&|s| s.registered.load(Relaxed)),
    )?;
    counters(
        enc,
        "mixgate_directory_requests_refused",
        "Requests refused (malformed, bad signature, oversized, timed out)",
        &counter(&|s| s.refused.load(Relaxed)),
    )?;
    counters(
        enc,
        "mixgate_directory_consensus_rounds",
        "Consensus documents computed",
        &counter(&|s| s.consensus_rounds.load(Relaxed)),
    )
}
