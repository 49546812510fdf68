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
        if !ok && !lost {
            return;
        }
        let Some(m) = st.messages.remove(id) else {
            return;
        };
        let reachable = m.status.contains(&Status::Acked);
        match (m.parent, ok) {
            // Stored at the recipient's provider: now wait for the recipient's confirmation.
            (Some(parent), true) => self.on_stored(st, *id, parent, m.frags.len()),
            // Some fragments ran out of retries, but the recipient's provider acknowledged
            // others: on a lossy network the missing acknowledgements were most likely lost on
            // their way back, not the fragments. Wait for the confirmation as if stored; if it
            // does not come, the next transmission (fresh paths, fresh retries) repairs it,
            // within `max_sends`.
            (Some(parent), false) if reachable => self.on_stored(st, *id, parent, m.frags.len()),
            // The recipient's provider acknowledged nothing within the retry budget.
            (Some(parent), false) => self.resolve(st, parent, Outcome::Failed),
            // Requests: the response (or its absence) is what the caller sees.
            (None, _) => {}
        }
    }

    /// Handles one poll answer. Returns a completed message for the application, if any.
    ///
    /// The answer's item id is acknowledged to the provider in the next poll, except for
    /// fragments of a message still incomplete: those are held and acknowledged together when
    /// the message completes, so a gateway that crashes half-way gets them again.
    pub(super) fn on_mailbox_frame(self: &Arc<Self>, body: &[u8]) -> Option<Received> {
        let (item, bytes) = poll::decode_answer(body)?;
        // `held` is locked across dispatch so a concurrent confirmation cannot release a
        // message's acknowledgements before this item joins them.
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let (disp, out) = self.dispatch(bytes);
        let mut acks = self.to_ack.lock().unwrap_or_else(|p| p.into_inner());
        match disp {
            Disposition::Ack => acks.push(item),
            Disposition::Hold(k) => {
                let ids = &mut held.entry(k).or_insert_with(|| (Instant::now(), vec![])).1;
                if !ids.contains(&item) {
                    ids.push(item);
                }
                self.to_receipt
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(item);
            }
            Disposition::Release(k) => {
                acks.extend(held.remove(&k).map(|h| h.1).unwrap_or_default());
                acks.push(item);
            }
        }
        drop((acks, held));
        if self.cfg.auto_confirm {
            if let Some(r) = &out {
                self.confirm(r.id);
            }
        }
        out
    }

    /// Moves acknowledgements held longer than `age` (messages that never completed) to the
    /// acknowledgement list, so the provider stops offering them.
    pub(super) fn release_stale(&self, age: Duration) {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let mut acks = self.to_ack.lock().unwrap_or_else(|p| p.into_inner());
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
        if let Some((secret, id)) = st.confirms.remove(&d.surb_id) {
            self.on_confirmation(&mut st, secret, id, &d.payload);
            return (Ack, None);
        }
        if st.retired.contains(&d.surb_id) {
            ClientStats::inc(&self.stats.late_replies);
            return (Ack, None);
        }
        if let Some(secret) = st.replies.remove(&d.surb_id) {
            let Ok(b) = secret.open(&d.payload) else {
                ClientStats::inc(&self.stats.dropped_bad);
                return (Ack, None);
            };
            if let Ok(Added::Complete(h, msg)) = st.reasm.add(&b[..]) {
                if h.kind == Kind::Response {
                    if let Some((tx, surbs)) = st.waiting.remove(&h.id) {
                        for s in surbs {
                            st.replies.remove(&s);
                            st.retired.add(s);
                        }
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
            Ok(h) if matches!(h.kind, Kind::Data | Kind::Request) => h,
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
                let held = self
                    .awaiting
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .values()
                    .any(|a| a.keys.contains(&key));
                if held {
                    (Disposition::Hold(key), None)
                } else {
                    (Disposition::Release(key), None)
                }
            }
            Ok(Added::Complete(h, msg)) => {
                drop(st);
                let parsed = if h.kind == Kind::Request {
                    parse_request(h.id, msg).map(|r| (r, None))
                } else {
                    parse_data(msg)
                };
                let Some((r, surb)) = parsed else {
                    ClientStats::inc(&self.stats.dropped_bad);
                    return (Disposition::Release(key), None);
                };
                self.on_complete(key, r, surb)
            }
            Err(_) => {
                ClientStats::inc(&self.stats.dropped_bad);
                (Ack, None)
            }
        }
    }
}

/// What to do with a poll answer's acknowledgement.
pub(super) enum Disposition {
    /// Acknowledge in the next poll.
    Ack,
    /// Hold until the message completes (and, once complete, until it is confirmed).
    Hold((MsgId, Kind)),
    /// The message completed (or was a duplicate): acknowledge it and everything held for it.
    Release((MsgId, Kind)),
}

/// Splits a data transmission into the message id, its confirmation SURB and the bytes.
fn parse_data(msg: Vec<u8>) -> Option<(Received, Option<Box<Surb>>)> {
    let id: MsgId = msg.get(..16)?.try_into().ok()?;
    let surb = Surb::from_bytes(msg.get(16..send::DATA_PREFIX)?).ok()?;
    Some((
        Received {
            id,
            bytes: msg.get(send::DATA_PREFIX..)?.to_vec(),
            reply: None,
        },
        Some(Box::new(surb)),
    ))
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
