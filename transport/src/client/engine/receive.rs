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

    /// Handles one poll answer. Returns a completed message for the application, if any.
    ///
    /// The answer's item id is acknowledged to the provider in the next poll, except for
    /// fragments of a message still incomplete: those are held and acknowledged together when
    /// the message completes, so a gateway that crashes half-way gets them again.
    pub(super) fn on_mailbox_frame(&self, body: &[u8]) -> Option<Received> {
        let (item, bytes) = poll::decode_answer(body)?;
        let (disp, out) = self.dispatch(bytes);
        let mut acks = self.to_ack.lock().unwrap_or_else(|p| p.into_inner());
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        match disp {
            Disposition::Ack => acks.push(item),
            Disposition::Hold(k) => held
                .entry(k)
                .or_insert_with(|| (Instant::now(), vec![]))
                .1
                .push(item),
            Disposition::Release(k) => {
                acks.extend(held.remove(&k).map(|h| h.1).unwrap_or_default());
                acks.push(item);
            }
        }
        out
    }

    /// The application stored message `id`: record it and release its poll acknowledgements.
    pub(crate) fn confirm(&self, id: MsgId) {
        let key = self
            .awaiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
        let Some(key) = key else { return };
        self.cfg.outbox.mark_received(&id);
        let ids = self
            .held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key)
            .map(|h| h.1)
            .unwrap_or_default();
        self.to_ack
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(ids);
    }

    /// Moves acknowledgements held longer than `age` (messages that never completed) to the
    /// acknowledgement list, so the provider stops offering them.
    pub(super) fn release_stale(&self, age: Duration) {
        let mut acks = self.to_ack.lock().unwrap_or_else(|p| p.into_inner());
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        held.retain(|_, (t, ids)| {
            if t.elapsed() > age {
                acks.append(ids);
                false
            } else {
                true
            }
        });
    }

    fn dispatch(&self, bytes: &[u8]) -> (Disposition, Option<Received>) {
        use Disposition::Ack;
        let Ok(d) = Delivered::from_bytes(bytes) else {
            ClientStats::inc(&self.stats.dropped_bad);
            return (Ack, None);
        };
        let mut st = self.state();
        if let Some(w) = st.pending.remove(&d.surb_id) {
            if w.secret.open(&d.payload).is_err() {
                ClientStats::inc(&self.stats.dropped_bad);
                return (Ack, None);
            }
            ClientStats::inc(&self.stats.acks);
            for n in &w.nodes {
                st.suspicion.remove(n);
            }
            if let Some(m) = st.messages.get_mut(&w.msg) {
                m.status[w.idx] = Status::Acked;
                self.evaluate(&mut st, &w.msg);
            }
            return (Ack, None);
        }
        if st.cover.remove(&d.surb_id).is_some() {
            ClientStats::inc(&self.stats.loops_received);
            return (Ack, None);
        }
        if let Some(secret) = st.replies.remove(&d.surb_id) {
            let Ok(b) = secret.open(&d.payload) else {
                ClientStats::inc(&self.stats.dropped_bad);
                return (Ack, None);
            };
            if let Ok(Added::Complete(h, msg)) = st.reasm.add(&b[..]) {
                if h.kind == Kind::Response {
                    if let Some(tx) = st.waiting.remove(&h.id) {
                        let _ = tx.send(msg);
                    }
                }
            }
            return (Ack, None);
        }
        let Ok(b) = d.open_forward(&self.e2e) else {
            ClientStats::inc(&self.stats.dropped_bad);
            return (Ack, None);
        };
        let h = match parse_header(&b[..]) {
            Ok(h) if h.kind == Kind::Loop => {
                ClientStats::inc(&self.stats.loops_received);
                return (Ack, None);
            }
            Ok(h) if h.kind != Kind::Response => h,
            _ => {
                ClientStats::inc(&self.stats.dropped_bad);
                return (Ack, None);
            }
        };
        let key = (h.id, h.kind);
        ClientStats::inc(&self.stats.fragments);
        match st.reasm.add(&b[..]) {
            Ok(Added::Pending) => (Disposition::Hold(key), None),
            Ok(Added::Duplicate) => {
                ClientStats::inc(&self.stats.duplicates);
                let awaiting = self
                    .awaiting
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .contains_key(&h.id);
                if awaiting {
                    (Disposition::Hold(key), None)
                } else {
                    (Disposition::Release(key), None)
                }
            }
            Ok(Added::Complete(h, msg)) => {
                drop(st);
                let fresh = if self.cfg.auto_confirm {
                    self.cfg.outbox.mark_received(&h.id)
                } else {
                    !self.cfg.outbox.was_received(&h.id)
                };
                if !fresh {
                    ClientStats::inc(&self.stats.duplicates);
                    return (Disposition::Release(key), None);
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
                if r.is_none() {
                    ClientStats::inc(&self.stats.dropped_bad);
                    return (Disposition::Release(key), None);
                }
                ClientStats::inc(&self.stats.received);
                if self.cfg.auto_confirm {
                    return (Disposition::Release(key), r);
                }
                self.awaiting
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(h.id, key);
                (Disposition::Hold(key), r)
            }
            Err(_) => {
                ClientStats::inc(&self.stats.dropped_bad);
                (Ack, None)
            }
        }
    }
}

/// What to do with a poll answer's acknowledgement.
enum Disposition {
    /// Acknowledge in the next poll.
    Ack,
    /// Hold until the message completes.
    Hold((MsgId, Kind)),
    /// The message completed (or was a duplicate): acknowledge it and everything held for it.
    Release((MsgId, Kind)),
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
