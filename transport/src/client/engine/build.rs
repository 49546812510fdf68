//! Building packets: path selection, forward packets with SURB-ACKs, loop cover.

use super::*;

impl Engine {
    /// Picks one mix per layer, preferring nodes not under suspicion, then the provider `to`.
    /// The sender's own provider is not an onion hop: it relays submitted packets as they are.
    pub(super) fn route(
        &self,
        st: &mut State,
        doc: &Document,
        to: NodeId,
    ) -> Option<Vec<RouteHop>> {
        let last = doc.node(&to)?;
        let mu_us = doc.params.mu_ms * 1000.0;
        let mut route = Vec::with_capacity(4);
        for l in 1..=3 {
            let nodes: Vec<_> = doc.layer(l).collect();
            let best = nodes
                .iter()
                .map(|n| st.suspicion.get(&n.id).copied().unwrap_or(0))
                .min()?;
            let cands: Vec<_> = nodes
                .into_iter()
                .filter(|n| st.suspicion.get(&n.id).copied().unwrap_or(0) == best)
                .collect();
            let n = cands.choose(&mut st.rng)?;
            route.push(RouteHop {
                id: n.id,
                public: n.mix_key,
                delay_us: exp_sample(&mut st.rng, mu_us).min(u32::MAX as f64) as u32,
            });
        }
        route.push(RouteHop {
            id: last.id,
            public: last.mix_key,
            delay_us: 0,
        });
        Some(route)
    }

    /// Expected time until an acknowledgement can be seen, for attempt `a`.
    pub(super) fn ack_timeout(&self, doc: &Document, a: u32) -> Duration {
        let p = &doc.params;
        let rtt_ms =
            6.0 * p.mu_ms + 1000.0 / p.poll_per_s.max(0.01) + 2000.0 / p.lambda_per_s.max(0.01);
        let base = Duration::from_secs_f64(rtt_ms * 1.5 / 1000.0) + self.cfg.ack_slack;
        base.mul_f64(1.5f64.powi(a.min(5) as i32))
    }

    /// Builds the next packet for the Poisson stream: a queued one, or loop cover.
    pub(super) fn next_packet(&self) -> Option<(NodeId, Packet, bool)> {
        let doc = self.document();
        let mut st = self.state();
        // Each queued job is looked at most once per slot (jobs that cannot be built now go
        // to the back of the queue).
        let mut budget = st.queue.len();
        while budget > 0 {
            budget -= 1;
            let Some(job) = st.queue.pop_front() else {
                break;
            };
            match job {
                Job::Reply { surb, body } => {
                    if let Ok((first, p)) = surb.into_packet(&body) {
                        return Some((first, p, true));
                    }
                }
                Job::Fragment { msg, idx } => {
                    let Some(m) = st.messages.get(&msg) else {
                        continue;
                    };
                    if m.status[idx] != Status::Queued {
                        continue;
                    }
                    let to = m.to.clone();
                    let body = m.frags[idx].clone();
                    let attempt = m.attempts[idx];
                    let built = (|| {
                        let fwd = self.route(&mut st, &doc, to.provider)?;
                        let back = self.route(&mut st, &doc, self.address.provider)?;
                        let State { rng, .. } = &mut *st;
                        let ack = AckRoute {
                            route: &back,
                            mailbox: &self.mailbox,
                        };
                        let (p, secret) = self
                            .packets
                            .forward_acked(rng, &fwd, &to.mailbox, &to.key, ack, &body)
                            .ok()?;
                        Some((fwd, back, secret, p))
                    })();
                    let Some((fwd, back, secret, p)) = built else {
                        // No route now (e.g. the recipient's provider is not, or no longer,
                        // in our document): count it as a failed attempt and try again after
                        // the time a lost packet would wait.
                        ClientStats::inc(&self.stats.build_failures);
                        self.build_failed(&mut st, &doc, msg, idx);
                        continue;
                    };
                    let nodes = fwd[..3].iter().chain(&back[..3]).map(|h| h.id).collect();
                    if let Some(m) = st.messages.get_mut(&msg) {
                        m.status[idx] = Status::InFlight;
                    }
                    st.pending.insert(
                        secret.id,
                        AckWait {
                            secret,
                            msg,
                            idx,
                            deadline: Instant::now() + self.ack_timeout(&doc, attempt),
                            nodes,
                        },
                    );
                    return Some((fwd[0].id, p, true));
                }
            }
        }
        drop(st);
        self.loop_packet().map(|(n, p)| (n, p, false))
    }

    fn build_failed(&self, st: &mut State, doc: &Document, msg: MsgId, idx: usize) {
        let Some(m) = st.messages.get_mut(&msg) else {
            return;
        };
        let attempt = m.attempts[idx];
        m.attempts[idx] += 1;
        if m.attempts[idx] > self.cfg.max_retries {
            m.status[idx] = Status::Failed;
            self.evaluate(st, &msg);
        } else {
            let at = Instant::now() + self.ack_timeout(doc, attempt);
            st.deferred.push((at, msg, idx));
        }
    }

    /// Puts the deferred fragments that are due back in the send queue.
    pub(super) fn requeue_deferred(&self, st: &mut State, now: Instant) {
        let State {
            deferred, queue, ..
        } = st;
        deferred.retain(|&(at, msg, idx)| {
            if at <= now {
                queue.push_back(Job::Fragment { msg, idx });
                false
            } else {
                true
            }
        });
    }

    /// Loop cover: a packet to our own mailbox, with its own acknowledgement, built exactly
    /// like a real one so that cost and shape are identical.
    pub(super) fn loop_packet(&self) -> Option<(NodeId, Packet)> {
        let doc = self.document();
        let mut st = self.state();
        let me = self.address.provider;
        let fwd = self.route(&mut st, &doc, me)?;
        let back = self.route(&mut st, &doc, me)?;
        let mut id = [0u8; 16];
        st.rng.fill_bytes(&mut id);
        let body = fragment(&id, Kind::Loop, &[]).ok()?.swap_remove(0);
        let State { rng, .. } = &mut *st;
        let ack = AckRoute {
            route: &back,
            mailbox: &self.mailbox,
        };
        let (p, secret) = self
            .packets
            .forward_acked(rng, &fwd, &self.mailbox, &self.address.key, ack, &body)
            .ok()?;
        st.cover.insert(secret.id, Instant::now());
        Some((fwd[0].id, p))
    }

    pub(super) fn emit(&self, f: Frame) {
        if self.out.try_send(f).is_ok() {
            ClientStats::inc(&self.stats.frames_out);
        } else {
            ClientStats::inc(&self.stats.frames_dropped);
        }
    }
}
