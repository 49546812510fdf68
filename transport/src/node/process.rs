//! Packet processing: one layer, replay check, delay heap, delivery into mailboxes.

use super::*;

/// Packets the worker takes from the ingress queues at once (one per peer in turn).
const BATCH: usize = 16;

pub(super) async fn worker(inner: Arc<Inner>) {
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        inner.ingress.pop_batch(BATCH, &mut batch).await;
        for bytes in batch.drain(..) {
            handle_packet(&inner, &bytes[..]).await;
        }
        // Unwrapping is CPU work: let other tasks (links, timers) run between batches.
        tokio::task::yield_now().await;
    }
}

async fn handle_packet(inner: &Inner, bytes: &[u8]) {
    let st = &inner.stats;
    let (epoch, near_end) = inner.epoch_position();
    match inner.keys.process(epoch, near_end, bytes) {
        Err(PacketError::BadMac) | Err(PacketError::BadKey) => NodeStats::inc(&st.dropped_bad_mac),
        Err(PacketError::Replay) => NodeStats::inc(&st.dropped_replay),
        Err(_) => NodeStats::inc(&st.dropped_malformed),
        Ok(Processed::Relay {
            next,
            delay_us,
            packet,
        }) => {
            let known =
                next == inner.id || inner.document().is_some_and(|d| d.node(&next).is_some());
            if !known {
                NodeStats::inc(&st.dropped_unknown_hop);
                return;
            }
            let delay = Duration::from_micros(u64::from(delay_us)).min(inner.cfg.max_delay);
            if delay.is_zero() {
                inner.send_to(next, packet);
            } else if inner
                .delay_tx
                .try_send((Instant::now() + delay, next, packet))
                .is_err()
            {
                NodeStats::inc(&st.dropped_overload);
            }
        }
        Ok(Processed::Deliver { mailbox, delivered }) => {
            if mailbox == inner.id {
                NodeStats::inc(&st.loops_received);
                return;
            }
            let Some(boxes) = inner.mailboxes.as_ref() else {
                NodeStats::inc(&st.dropped_malformed);
                return;
            };
            let ack = match delivered.take_ack() {
                Ok(a) => a,
                Err(_) => {
                    NodeStats::inc(&st.dropped_tagged);
                    return;
                }
            };
            let bytes = delivered.to_bytes();
            debug_assert_eq!(bytes.len(), DELIVERED_SIZE);
            if boxes.store(mailbox, bytes).is_err() {
                NodeStats::inc(&st.dropped_quota);
                return;
            }
            NodeStats::inc(&st.stored);
            if let Some(ack) = ack {
                match ack.into_packet(&[]) {
                    Ok((first, p)) => {
                        NodeStats::inc(&st.acks_sent);
                        inner.send_to(first, p);
                    }
                    Err(_) => NodeStats::inc(&st.dropped_malformed),
                }
            }
        }
    }
}

/// Most packets a node holds in its delay heap at once.
const MAX_HELD: usize = 200_000;

/// Holds delayed packets in a heap and forwards each when its time comes (delay order).
pub(super) async fn delay_loop(
    inner: Arc<Inner>,
    mut rx: mpsc::Receiver<(Instant, NodeId, Packet)>,
) {
    let mut heap: BinaryHeap<Reverse<(Instant, u64, NodeId)>> = BinaryHeap::new();
    let mut held: std::collections::HashMap<u64, Packet> = std::collections::HashMap::new();
    let mut seq = 0u64;
    loop {
        let next_due = heap.peek().map(|Reverse((t, _, _))| *t);
        tokio::select! {
            item = rx.recv() => {
                let Some((t, next, p)) = item else { return };
                if held.len() >= MAX_HELD {
                    NodeStats::inc(&inner.stats.dropped_overload);
                    continue;
                }
                seq += 1;
                heap.push(Reverse((t, seq, next)));
                held.insert(seq, p);
            }
            _ = async {
                match next_due {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            } => {
                let now = Instant::now();
                while let Some(Reverse((t, s, next))) = heap.peek().copied() {
                    if t > now {
                        break;
                    }
                    heap.pop();
                    if let Some(p) = held.remove(&s) {
                        inner.send_to(next, p);
                    }
                }
            }
        }
    }
}
