//! Incoming links: authentication, frames from nodes and gateways, poll answers.

use super::*;

pub(super) async fn accept_loop(inner: Arc<Inner>, listener: TcpListener) {
    let mut conns = JoinSet::new();
    loop {
        while conns.try_join_next().is_some() {}
        let Ok((sock, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        if conns.len() >= inner.cfg.max_links {
            NodeStats::inc(&inner.stats.links_refused);
            drop(sock);
            continue;
        }
        conns.spawn(serve_conn(inner.clone(), sock));
    }
}

async fn serve_conn(inner: Arc<Inner>, sock: TcpStream) {
    let doc = inner.document();
    let is_provider = inner.cfg.role == Role::Provider;
    let authorize = |k: &[u8; 32]| {
        is_provider
            || doc
                .as_ref()
                .is_some_and(|d| d.node_by_link_key(k).is_some())
    };
    let mut link_cfg = inner.cfg.link.clone();
    link_cfg.pq = doc.as_ref().is_some_and(|d| d.params.pq_links);
    let (peer, tx, rx) = match accept(sock, &inner.link, authorize, &link_cfg).await {
        Ok(x) => x,
        Err(e) => {
            debug!("link refused: {e}");
            NodeStats::inc(&inner.stats.links_refused);
            return;
        }
    };
    let Some(_slot) = PeerSlot::take(&inner, peer) else {
        debug!("link refused: the peer already holds {LINKS_PER_PEER} links");
        NodeStats::inc(&inner.stats.links_refused);
        return;
    };
    let is_node = doc
        .as_ref()
        .is_some_and(|d| d.node_by_link_key(&peer).is_some());
    let mailbox = (!is_node).then(|| mailbox_id(&peer));
    if let Err(e) = read_frames(&inner, rx, tx, peer, mailbox).await {
        debug!("link ended: {e}");
        NodeStats::inc(&inner.stats.link_errors);
    }
    // Answers not acknowledged on this link are offered again on the next one.
    if let (Some(mb), Some(boxes)) = (mailbox, inner.mailboxes.as_ref()) {
        boxes.requeue(&mb);
    }
}

async fn read_frames(
    inner: &Inner,
    mut rx: LinkReceiver,
    mut tx: LinkSender,
    peer: [u8; 32],
    client_mailbox: Option<[u8; 16]>,
) -> Result<(), crate::link::LinkError> {
    loop {
        let f = rx.recv().await?;
        match f.kind {
            FrameKind::Packet => {
                NodeStats::inc(&inner.stats.received);
                inner.enqueue_wait(peer, f.body).await;
            }
            FrameKind::Submit => {
                NodeStats::inc(&inner.stats.received);
                let known = inner
                    .document()
                    .and_then(|d| d.node(&f.next).map(|n| matches!(n.role, Role::Mix { .. })))
                    .unwrap_or(false);
                if client_mailbox.is_none() || !known {
                    NodeStats::inc(&inner.stats.dropped_unknown_hop);
                    continue;
                }
                match Packet::from_slice(&f.body[..]) {
                    Ok(p) => {
                        NodeStats::inc(&inner.stats.submitted);
                        inner.send_to(f.next, p);
                    }
                    Err(_) => NodeStats::inc(&inner.stats.dropped_malformed),
                }
            }
            FrameKind::Poll => {
                let (Some(mb), Some(boxes)) = (client_mailbox, inner.mailboxes.as_ref()) else {
                    NodeStats::inc(&inner.stats.dropped_malformed);
                    continue;
                };
                let (batch, poll_rate) = inner.document().map_or((1, 1.0), |d| {
                    (d.params.poll_batch.max(1) as usize, d.params.poll_per_s)
                });
                let body = poll::decode_poll(&f.body[..]);
                boxes.ack(&mb, &body.acks);
                boxes.hold(&mb, &body.receipts);
                let taken = boxes.take(&mb, batch, boxes.lease_for(poll_rate));
                for _ in 0..taken.expired {
                    NodeStats::inc(&inner.stats.expired);
                }
                for _ in 0..taken.offered_again {
                    NodeStats::inc(&inner.stats.offered_again);
                }
                let n = taken.items.len();
                for (id, item) in taken.items {
                    let body = poll::encode_answer(id, &item);
                    tx.feed(&Frame::new(FrameKind::Mailbox, &body)).await?;
                }
                for _ in n..batch {
                    tx.feed(&Frame::new(FrameKind::Mailbox, &poll::dummy_answer()))
                        .await?;
                }
                tx.flush().await?;
                NodeStats::inc(&inner.stats.polls_answered);
            }
            _ => NodeStats::inc(&inner.stats.dropped_malformed),
        }
    }
}

/// One of a peer's [`LINKS_PER_PEER`] link slots, given back when the link ends.
struct PeerSlot<'a> {
    inner: &'a Inner,
    peer: [u8; 32],
}

impl<'a> PeerSlot<'a> {
    fn take(inner: &'a Inner, peer: [u8; 32]) -> Option<Self> {
        let mut m = inner
            .links_per_peer
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let n = m.entry(peer).or_insert(0);
        if *n >= LINKS_PER_PEER {
            return None;
        }
        *n += 1;
        Some(PeerSlot { inner, peer })
    }
}

impl Drop for PeerSlot<'_> {
    fn drop(&mut self) {
        let mut m = self
            .inner
            .links_per_peer
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(n) = m.get_mut(&self.peer) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&self.peer);
            }
        }
    }
}
