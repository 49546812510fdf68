//! Requests and responses over reply blocks, durable like messages.
//!
//! A request is written to the outbox (with its `max_response` and the time its caller stops
//! waiting) before it is sent, and leaves it when the response arrives or the wait ends.
//! After a restart an unexpired request is re-issued under a new id with fresh reply blocks:
//! the old blocks' keys were only in memory (on purpose), and the responder drops a known
//! request id as a duplicate.

use super::*;
use crate::client::outbox::RequestEntry;
use crate::client::RequestHandle;

impl Engine {
    /// Persists a request (durably) and sends it.
    pub(crate) async fn send_request(
        self: &Arc<Self>,
        to: &Address,
        bytes: Vec<u8>,
        max_response: usize,
        wait: Duration,
    ) -> Result<RequestHandle, ClientError> {
        let max_response = u32::try_from(max_response)
            .ok()
            .filter(|m| *m as usize <= super::super::MAX_MESSAGE)
            .ok_or(ClientError::Message(super::super::FragError::TooLarge))?;
        let mut id = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut id);
        let wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
        let entry = OutboxEntry {
            to: to.clone(),
            bytes,
            request: Some(RequestEntry {
                max_response,
                expires_ms: now_ms().saturating_add(wait_ms),
            }),
        };
        let entry = self.persist(id, entry).await?;
        self.issue(id, &entry, max_response, Instant::now() + wait)
            .inspect_err(|_| {
                if let Err(err) = self.cfg.outbox.remove(&id) {
                    warn!("outbox: {err}");
                }
            })
    }

    /// Re-issues a request found in the outbox at start under a new id, or drops it if its
    /// caller's wait is over.
    pub(super) fn reissue(
        self: &Arc<Self>,
        old: MsgId,
        entry: OutboxEntry,
        r: RequestEntry,
    ) -> Result<Option<RequestHandle>, ClientError> {
        let now = now_ms();
        if r.expires_ms <= now {
            self.cfg.outbox.remove(&old)?;
            return Ok(None);
        }
        let mut id = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut id);
        self.cfg.outbox.put(&id, &entry)?;
        self.cfg.outbox.remove(&old)?;
        let deadline = Instant::now() + Duration::from_millis(r.expires_ms - now);
        self.issue(id, &entry, r.max_response, deadline).map(Some)
    }

    /// Builds the reply blocks and queues request `id`.
    fn issue(
        self: &Arc<Self>,
        id: MsgId,
        entry: &OutboxEntry,
        max_response: u32,
        deadline: Instant,
    ) -> Result<RequestHandle, ClientError> {
        let k = (max_response as usize).div_ceil(super::super::CHUNK).max(1);
        let n = k + k.div_ceil(GROUP);
        let doc = self.document();
        let mut content = Vec::with_capacity(2 + n * SURB_SIZE + entry.bytes.len());
        content.extend_from_slice(&(n as u16).to_be_bytes());
        let (tx, rx) = oneshot::channel();
        let mut st = self.state();
        let mut ids = Vec::with_capacity(n);
        let built = (|| {
            for _ in 0..n {
                let route = self
                    .route(&mut st, &doc, self.address.provider)
                    .ok_or(ClientError::Topology("no route"))?;
                let State { rng, .. } = &mut *st;
                let (surb, secret) = self
                    .packets
                    .surb(rng, &route, &self.mailbox)
                    .map_err(|_| ClientError::Topology("bad route"))?;
                content.extend_from_slice(&surb.to_bytes());
                ids.push(secret.id);
                st.replies.insert(secret.id, secret);
            }
            content.extend_from_slice(&entry.bytes);
            self.enqueue(&mut st, id, None, &entry.to, &content, Kind::Request)
        })();
        if let Err(e) = built {
            for s in ids {
                st.replies.remove(&s);
            }
            return Err(e);
        }
        st.waiting.insert(response_id(&id), (tx, ids));
        Ok(RequestHandle::new(id, rx, deadline, self.clone()))
    }

    /// The caller is done with request `id` (answered or timed out): forget its reply blocks
    /// and its outbox entry.
    pub(crate) fn forget_request(&self, id: &MsgId) {
        let mut st = self.state();
        if let Some((_, surbs)) = st.waiting.remove(&response_id(id)) {
            for s in surbs {
                st.replies.remove(&s);
                st.retired.add(s);
            }
        }
        drop(st);
        if let Err(err) = self.cfg.outbox.remove(id) {
            warn!("outbox: {err}");
        }
    }

    pub(crate) fn respond(&self, token: ReplyToken, bytes: Vec<u8>) -> Result<(), ClientError> {
        let frags = fragment(&response_id(&token.id), Kind::Response, &bytes)?;
        if frags.len() > token.surbs.len() {
            return Err(ClientError::NoReplyBlocks);
        }
        let mut st = self.state();
        for (body, surb) in frags.into_iter().zip(token.surbs) {
            st.queue.push_back(Job::Reply {
                surb: Box::new(surb),
                body,
            });
        }
        Ok(())
    }
}
