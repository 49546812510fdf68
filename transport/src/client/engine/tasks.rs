//! The client's tasks: send, loop and poll streams, retransmission timer, directory refresh
//! and the provider link.

use super::*;

/// The next send time of a Poisson stream: the previous deadline plus an Exp(1/rate) gap,
/// but never in the past (a stalled stream sends one frame at once, never a burst).
fn next_deadline(rng: &mut StdRng, prev: Instant, rate: f64) -> Instant {
    let gap = if rate > 0.0 {
        exp_sample(rng, 1.0 / rate)
    } else {
        1.0
    };
    (prev + Duration::from_secs_f64(gap)).max(Instant::now())
}

/// How long before a slot's deadline its packet is built (building takes well under this).
const BUILD_MARGIN: Duration = Duration::from_millis(5);

/// The Poisson(λ) stream. The packet for each slot is built [`BUILD_MARGIN`] before the slot's
/// deadline, so when a frame leaves depends only on the timer, never on what it carries.
pub(super) async fn send_stream(e: Arc<Engine>) {
    let mut rng = StdRng::from_entropy();
    let mut next = Instant::now();
    loop {
        next = next_deadline(&mut rng, next, e.document().params.lambda_per_s);
        tokio::time::sleep_until(next.checked_sub(BUILD_MARGIN).unwrap_or(next)).await;
        let packet = e.next_packet();
        tokio::time::sleep_until(next).await;
        if let Some((first, p, real)) = packet {
            ClientStats::inc(if real {
                &e.stats.sent_real
            } else {
                &e.stats.sent_cover
            });
            e.emit(Frame::submit(first, p.as_bytes()));
        }
    }
}

/// The loop-cover stream, scheduled the same way.
pub(super) async fn loop_stream(e: Arc<Engine>) {
    let mut rng = StdRng::from_entropy();
    let mut next = Instant::now();
    loop {
        next = next_deadline(&mut rng, next, e.document().params.loop_per_s);
        tokio::time::sleep_until(next.checked_sub(BUILD_MARGIN).unwrap_or(next)).await;
        let packet = e.loop_packet();
        tokio::time::sleep_until(next).await;
        if let Some((first, p)) = packet {
            ClientStats::inc(&e.stats.sent_loops);
            e.emit(Frame::submit(first, p.as_bytes()));
        }
    }
}

pub(super) async fn poll_stream(e: Arc<Engine>) {
    let mut next = Instant::now();
    loop {
        let rate = e.document().params.poll_per_s.max(0.01);
        next += Duration::from_secs_f64(1.0 / rate);
        tokio::time::sleep_until(next).await;
        ClientStats::inc(&e.stats.polls);
        e.release_stale(Duration::from_secs(600));
        e.forget_unconfirmed(Duration::from_secs(3600));
        let acks: Vec<u64> = {
            let mut a = e.to_ack.lock().unwrap_or_else(|p| p.into_inner());
            let n = a.len().min(poll::MAX_POLL_ACKS);
            a.drain(..n).collect()
        };
        let receipts: Vec<u64> = {
            let mut r = e.to_receipt.lock().unwrap_or_else(|p| p.into_inner());
            // An item acknowledged in this poll needs no receipt.
            r.retain(|id| !acks.contains(id));
            let n = r.len().min(poll::MAX_POLL_RECEIPTS);
            r.drain(..n).collect()
        };
        e.emit(Frame::new(
            FrameKind::Poll,
            &poll::encode_poll(&acks, &receipts),
        ));
    }
}

pub(super) async fn timer(e: Arc<Engine>) {
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = Instant::now();
        let mut st = e.state();
        let expired: Vec<[u8; 16]> = st
            .pending
            .iter()
            .filter(|(_, w)| w.deadline <= now)
            .map(|(k, _)| *k)
            .collect();
        for k in expired {
            let Some(w) = st.pending.remove(&k) else {
                continue;
            };
            for n in &w.nodes {
                *st.suspicion.entry(*n).or_insert(0) += 1;
            }
            let Some(m) = st.messages.get_mut(&w.msg) else {
                continue;
            };
            if m.status[w.idx] != Status::InFlight {
                continue;
            }
            m.attempts[w.idx] += 1;
            if m.attempts[w.idx] > e.cfg.max_retries {
                m.status[w.idx] = Status::Failed;
                e.evaluate(&mut st, &w.msg);
            } else {
                m.status[w.idx] = Status::Queued;
                ClientStats::inc(&e.stats.retransmits);
                st.queue.push_back(Job::Fragment {
                    msg: w.msg,
                    idx: w.idx,
                });
            }
        }
        e.requeue_deferred(&mut st, now);
        e.check_confirmations(&mut st, now);
        st.cover
            .retain(|_, t| t.elapsed() < Duration::from_secs(600));
    }
}

pub(super) async fn refresh(e: Arc<Engine>) {
    loop {
        tokio::time::sleep(e.cfg.refresh).await;
        match e.refresh_once().await {
            Ok(_) | Err(ClientError::Topology(_)) => {}
            Err(err @ ClientError::Directory(DirectoryError::Io(_))) => {
                debug!("directory refresh failed: {err}");
            }
            Err(err) => warn!("directory document refused: {err}"),
        }
    }
}

impl Engine {
    /// Fetches the directory document once and, if it is complete, makes it the one in use.
    /// A refused or incomplete document is counted and the old one kept.
    pub(crate) async fn refresh_once(self: &Arc<Self>) -> Result<Arc<Document>, ClientError> {
        let d = match fetch(&self.cfg).await {
            Ok(d) => d,
            Err(err) => {
                if !matches!(err, ClientError::Directory(DirectoryError::Io(_))) {
                    ClientStats::inc(&self.stats.bad_documents);
                }
                return Err(err);
            }
        };
        if !complete_topology(&d, Some(self.address.provider)) {
            ClientStats::inc(&self.stats.bad_documents);
            warn!("directory document lacks a complete topology; keeping the old one");
            return Err(ClientError::Topology("incomplete"));
        }
        // Tabulate the new epoch's node keys off the async threads (about 1 ms each), so the
        // Poisson stream does not pause on the first packets of the epoch.
        let prep = Arc::clone(self);
        let keys: Vec<[u8; 32]> = d.nodes.iter().map(|n| n.mix_key).collect();
        let prepared = tokio::task::spawn_blocking(move || {
            for k in &keys {
                if prep.packets.tables().prepare(k).is_err() {
                    debug!("directory lists a node key that cannot be a mix key");
                }
            }
        })
        .await;
        if prepared.is_err() {
            debug!("key table preparation did not finish");
        }
        let d = Arc::new(d);
        *self.doc.write().unwrap_or_else(|p| p.into_inner()) = Arc::clone(&d);
        Ok(d)
    }
}

async fn reader(e: Arc<Engine>, mut rx: LinkReceiver) {
    loop {
        match rx.recv().await {
            Ok(f) if f.kind == FrameKind::Mailbox => {
                if let Some(r) = e.on_mailbox_frame(&f.body[..]) {
                    // Back-pressure: an application that stops reading stalls this link, and
                    // the provider keeps what it has not yet handed out.
                    if e.incoming.send(r).await.is_err() {
                        return;
                    }
                }
            }
            Ok(_) => ClientStats::inc(&e.stats.dropped_bad),
            Err(err) => {
                debug!("provider link ended: {err}");
                return;
            }
        }
    }
}

pub(super) async fn link_task(e: Arc<Engine>, mut out: mpsc::Receiver<Frame>) {
    let mut backoff = Duration::from_millis(20);
    loop {
        let doc = e.document();
        let addr = e
            .cfg
            .provider_address_override
            .clone()
            .or_else(|| doc.node(&e.address.provider).map(|n| n.address.clone()));
        let key = doc.node(&e.address.provider).map(|n| n.link_key);
        let link = match (addr, key) {
            (Some(a), Some(k)) => match TcpStream::connect(&a).await {
                Ok(s) => {
                    let mut cfg = e.cfg.link.clone();
                    cfg.pq = doc.params.pq_links;
                    connect(s, &e.link, &k, &cfg).await.ok()
                }
                Err(_) => None,
            },
            _ => None,
        };
        let Some((mut tx, rx)) = link else {
            while out.try_recv().is_ok() {}
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(1));
            continue;
        };
        backoff = Duration::from_millis(20);
        let rd = AbortOnDrop(tokio::spawn(reader(e.clone(), rx)));
        while let Some(f) = out.recv().await {
            if rd.0.is_finished() || tx.send(&f).await.is_err() {
                break;
            }
        }
        drop(rd);
        ClientStats::inc(&e.stats.reconnects);
    }
}

/// Aborts the task when dropped (so stopping the client stops its reader too).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
