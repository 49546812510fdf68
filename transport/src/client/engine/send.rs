//! The sender's side of end-to-end confirmation.
//!
//! A message accepted by `send` is written to the outbox first, then sent as a
//! *transmission*: `message id (16) ‖ confirmation SURB (442) ‖ bytes`, fragmented under a
//! fresh random transmission id. The per-fragment SURB-ACKs repair losses on the way to the
//! recipient's provider. Once that provider stored enough fragments, the sender waits for the
//! recipient's confirmation on the SURB; without it, a new transmission (fresh SURB, fresh
//! paths) goes out after [`Engine::confirm_timeout`], at most `max_sends` times. The message
//! leaves the outbox only when confirmed (`Delivered`) or given up (`Failed`).

use super::*;

/// Bytes in front of the message in a data transmission.
pub(super) const DATA_PREFIX: usize = 16 + SURB_SIZE;

impl Engine {
    /// Persists a message (durably) and starts sending it.
    pub(crate) async fn send(
        &self,
        to: &Address,
        bytes: Vec<u8>,
    ) -> Result<SendHandle, ClientError> {
        if bytes.len() > super::super::MAX_MESSAGE {
            return Err(ClientError::Message(super::super::FragError::TooLarge));
        }
        let mut id = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut id);
        let entry = OutboxEntry {
            to: to.clone(),
            bytes,
            request: None,
        };
        let entry = self.persist(id, entry).await?;
        match self.submit(id, entry.to, entry.bytes) {
            Ok(h) => Ok(h),
            Err(e) => {
                if let Err(err) = self.cfg.outbox.remove(&id) {
                    warn!("outbox: {err}");
                }
                Err(e)
            }
        }
    }

    /// Writes an outbox entry and waits until it is durable; gives it back.
    pub(super) async fn persist(
        &self,
        id: MsgId,
        entry: OutboxEntry,
    ) -> Result<OutboxEntry, ClientError> {
        self.cfg.outbox.put(&id, &entry)?;
        self.cfg.outbox.sync().await?;
        Ok(entry)
    }

    /// Starts sending an outbox message (new, or resent after a restart).
    pub(super) fn submit(
        &self,
        id: MsgId,
        to: Address,
        bytes: Vec<u8>,
    ) -> Result<SendHandle, ClientError> {
        let (tx, rx) = oneshot::channel();
        let mut st = self.state();
        st.sends.insert(
            id,
            Sending {
                to,
                bytes,
                sends: 0,
                current: None,
                deadline: None,
                surbs: Vec::new(),
                handle: Some(tx),
                accepted: Instant::now(),
            },
        );
        if let Err(e) = self.transmit(&mut st, id) {
            st.sends.remove(&id);
            return Err(e);
        }
        Ok(SendHandle { id, rx })
    }

    /// Starts a new transmission of message `id` with a fresh confirmation SURB.
    fn transmit(&self, st: &mut State, id: MsgId) -> Result<(), ClientError> {
        let doc = self.document();
        let route = self
            .route(st, &doc, self.address.provider)
            .ok_or(ClientError::Topology("no route"))?;
        let State { rng, .. } = &mut *st;
        let (surb, secret) = self
            .packets
            .surb(rng, &route, &self.mailbox)
            .map_err(|_| ClientError::Topology("bad route"))?;
        let mut tx = [0u8; 16];
        st.rng.fill_bytes(&mut tx);
        let Some(m) = st.sends.get(&id) else {
            return Ok(());
        };
        let to = m.to.clone();
        let mut content = Vec::with_capacity(DATA_PREFIX + m.bytes.len());
        content.extend_from_slice(&id);
        content.extend_from_slice(&surb.to_bytes());
        content.extend_from_slice(&m.bytes);
        self.enqueue(st, tx, Some(id), &to, &content, Kind::Data)?;
        let surb_id = secret.id;
        st.confirms.insert(surb_id, (secret, id));
        if let Some(m) = st.sends.get_mut(&id) {
            m.sends += 1;
            m.current = Some(tx);
            m.deadline = None;
            m.surbs.push(surb_id);
        }
        Ok(())
    }

    /// Time to wait for a confirmation after transmission `a` (0-based) of an `n`-fragment
    /// message was stored at the recipient's provider: the recipient's poll wait and the
    /// draining of `n` packets, one send slot on its side, three mix delays back and our poll
    /// wait, with a 1.5× margin plus `ack_slack`; doubled per transmission (at most 32×).
    pub(super) fn confirm_timeout(&self, doc: &Document, n: usize, a: u32) -> Duration {
        let p = &doc.params;
        let poll = p.poll_per_s.max(0.01);
        let ms = 6.0 * p.mu_ms
            + 2000.0 / poll
            + 2000.0 / p.lambda_per_s.max(0.01)
            + 1000.0 * n as f64 / (poll * f64::from(p.poll_batch.max(1)));
        let base = Duration::from_secs_f64(ms * 1.5 / 1000.0) + self.cfg.ack_slack;
        base * 2u32.pow(a.min(5))
    }

    /// A transmission's fragments are stored at the recipient's provider: wait for the
    /// confirmation.
    pub(super) fn on_stored(&self, st: &mut State, tx: MsgId, parent: MsgId, n: usize) {
        let doc = self.document();
        let Some(m) = st.sends.get_mut(&parent) else {
            return;
        };
        if m.current == Some(tx) {
            m.current = None;
            m.deadline = Some(Instant::now() + self.confirm_timeout(&doc, n, m.sends - 1));
        }
    }

    /// A confirmation arrived on one of our confirmation SURBs.
    pub(super) fn on_confirmation(
        &self,
        st: &mut State,
        secret: SurbSecret,
        id: MsgId,
        payload: &[u8; crate::packet::PAYLOAD_SIZE],
    ) {
        let confirmed = secret
            .open(payload)
            .ok()
            .and_then(|b| parse_header(&b[..]).ok())
            .is_some_and(|h| h.kind == Kind::Confirm && h.id == id);
        if !confirmed {
            ClientStats::inc(&self.stats.dropped_bad);
            return;
        }
        ClientStats::inc(&self.stats.confirmations);
        self.resolve(st, id, Outcome::Delivered);
    }

    /// Ends message `id`: forgets it everywhere and reports the outcome.
    pub(super) fn resolve(&self, st: &mut State, id: MsgId, outcome: Outcome) {
        let Some(mut m) = st.sends.remove(&id) else {
            return;
        };
        if let Some(tx) = m.current {
            st.messages.remove(&tx);
        }
        for s in &m.surbs {
            st.confirms.remove(s);
            st.retired.add(*s);
        }
        if let Err(err) = self.cfg.outbox.remove(&id) {
            warn!("outbox: {err}");
        }
        if let Some(h) = m.handle.take() {
            let _ = h.send(outcome);
        }
        match outcome {
            Outcome::Delivered => {
                ClientStats::inc(&self.stats.delivered);
                self.latency.observe(m.accepted.elapsed());
            }
            Outcome::Failed => ClientStats::inc(&self.stats.failed),
        }
        debug!(?outcome, sends = m.sends, "message resolved");
    }

    /// Transmits again every message whose confirmation is overdue, or gives it up after
    /// `max_sends` transmissions.
    pub(super) fn check_confirmations(&self, st: &mut State, now: Instant) {
        let due: Vec<(MsgId, u32)> = st
            .sends
            .iter()
            .filter(|(_, m)| m.deadline.is_some_and(|d| d <= now))
            .map(|(id, m)| (*id, m.sends))
            .collect();
        for (id, sends) in due {
            if sends >= self.cfg.max_sends {
                self.resolve(st, id, Outcome::Failed);
                continue;
            }
            ClientStats::inc(&self.stats.resends);
            if let Err(err) = self.transmit(st, id) {
                warn!("retransmission failed: {err}");
                self.resolve(st, id, Outcome::Failed);
            }
        }
    }
}
