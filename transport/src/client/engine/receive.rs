//! Handling poll answers: acknowledgements, replies, loop cover and forward fragments.

use super::*;

impl Engine {
    /// Re-evaluates a message after a fragment changed state.
    pub(super) fn evaluate(&self, st: &mut State, id: &MsgId) {
        let Some(m) = st.messages.get(id) else { return };
        let k = m.k;
        let groups = k.div_ceil(GROUP);
        let mut ok = true;
        let mut lost = false;
        for g in 0..groups {
            let data = g * GROUP..((g + 1) * GROUP).min(k);
            let par = m.status[k + g];
            let missing = data
                .clone()
                .filter(|i| m.status[*i] != Status::Acked)
                .count();
            let failed = data.filter(|i| m.status[*i] == Status::Failed).count()
                + usize::from(par == Status::Failed);
            if !(missing == 0 || (missing == 1 && par == Status::Acked)) {
                ok = false;
            }
            if failed >= 2 || (failed == 1 && par == Status::Failed && missing > 0) {
                lost = true;
            }
        }
        let outcome = if ok {
            Outcome::Delivered
        } else if lost {
            Outcome::Failed
        } else {
            return;
        };
        if let Some(mut m) = st.messages.remove(id) {
            if let Some(tx) = m.tx.take() {
                let _ = tx.send(outcome);
            }
        }
        self.cfg.outbox.remove(id);
        match outcome {
            Outcome::Delivered => ClientStats::inc(&self.stats.delivered),
            Outcome::Failed => ClientStats::inc(&self.stats.failed),
        }
    }

    pub(super) fn on_mailbox_frame(&self, body: &[u8]) {
        let Some((item, bytes)) = poll::decode_answer(body) else {
            return;
        };
        self.to_ack
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(item);
        let Ok(d) = Delivered::from_bytes(bytes) else {
            ClientStats::inc(&self.stats.dropped_bad);
            return;
        };
        let mut st = self.state();
        if let Some(w) = st.pending.remove(&d.surb_id) {
            if w.secret.open(&d.payload).is_err() {
                ClientStats::inc(&self.stats.dropped_bad);
                return;
            }
            ClientStats::inc(&self.stats.acks);
            for n in &w.nodes {
                st.suspicion.remove(n);
            }
            if let Some(m) = st.messages.get_mut(&w.msg) {
                m.status[w.idx] = Status::Acked;
                self.evaluate(&mut st, &w.msg);
            }
            return;
        }
        if st.cover.remove(&d.surb_id).is_some() {
            ClientStats::inc(&self.stats.loops_received);
            return;
        }
        if let Some(secret) = st.replies.remove(&d.surb_id) {
            let Ok(b) = secret.open(&d.payload) else {
                ClientStats::inc(&self.stats.dropped_bad);
                return;
            };
            if let Ok(Added::Complete(h, msg)) = st.reasm.add(&b[..]) {
                if h.kind == Kind::Response {
                    if let Some(tx) = st.waiting.remove(&h.id) {
                        let _ = tx.send(msg);
                    }
                }
            }
            return;
        }
        let Ok(b) = d.open_forward(&self.e2e) else {
            ClientStats::inc(&self.stats.dropped_bad);
            return;
        };
        match parse_header(&b[..]) {
            Ok(h) if h.kind == Kind::Loop => {
                ClientStats::inc(&self.stats.loops_received);
                return;
            }
            Ok(h) if h.kind == Kind::Response => {
                ClientStats::inc(&self.stats.dropped_bad);
                return;
            }
            Ok(_) => {}
            Err(_) => {
                ClientStats::inc(&self.stats.dropped_bad);
                return;
            }
        }
        match st.reasm.add(&b[..]) {
            Ok(Added::Pending) => {}
            Ok(Added::Duplicate) => ClientStats::inc(&self.stats.duplicates),
            Ok(Added::Complete(h, msg)) => {
                drop(st);
                if !self.cfg.outbox.mark_received(&h.id) {
                    ClientStats::inc(&self.stats.duplicates);
                    return;
                }
                let r = if h.kind == Kind::Request {
                    parse_request(h.id, msg)
                } else {
                    Some(Received {
                        id: h.id,
                        bytes: msg,
                        reply: None,
                    })
                };
                match r {
                    Some(r) => {
                        ClientStats::inc(&self.stats.received);
                        if self.incoming.try_send(r).is_err() {
                            warn!("incoming queue full; message dropped");
                        }
                    }
                    None => ClientStats::inc(&self.stats.dropped_bad),
                }
            }
            Err(_) => ClientStats::inc(&self.stats.dropped_bad),
        }
    }
}

fn parse_request(id: MsgId, msg: Vec<u8>) -> Option<Received> {
    let n = u16::from_be_bytes([*msg.first()?, *msg.get(1)?]) as usize;
    let end = 2 + n * SURB_SIZE;
    if msg.len() < end {
        return None;
    }
    let surbs = msg[2..end]
        .chunks(SURB_SIZE)
        .map(Surb::from_bytes)
        .collect::<Result<Vec<_>, _>>()
        .ok()?;
    Some(Received {
        id,
        bytes: msg[end..].to_vec(),
        reply: Some(ReplyToken { id, surbs }),
    })
}
