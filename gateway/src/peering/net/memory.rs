//! An in-process network of gateways: a hub of mailboxes, no sockets, no timing.
//!
//! Behaves like the mixnet where peering can tell: `send` is durable once it returns (the hub
//! keeps the message while the recipient is offline), a message is delivered again until the
//! recipient confirms it (a gateway "restarted" with [`MemoryHub::attach`] gets its unconfirmed
//! messages again), requests need the responder online, and nothing says who sent a message.
//! Tests cut a gateway off with [`MemoryHub::set_online`] and count traffic with
//! [`MemoryHub::delivered`].

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use ruma::{OwnedServerName, ServerName};
use tokio::sync::{oneshot, Notify};

use super::{BoxFuture, Inbound, InboundId, NetError, PeerInbox, PeerNet, Reply, MAX_MESSAGE};

enum Item {
    Message(InboundId, Vec<u8>),
    Request(Vec<u8>, oneshot::Sender<Vec<u8>>),
}

#[derive(Default)]
struct Mailbox {
    queue: VecDeque<Item>,
    unconfirmed: Vec<(InboundId, Vec<u8>)>,
    online: bool,
    generation: u64,
    notify: Arc<Notify>,
}

#[derive(Default)]
struct HubState {
    boxes: HashMap<OwnedServerName, Mailbox>,
    next_id: u64,
    delivered: u64,
    /// Every message, request and answer, when recording (see [`MemoryHub::record`]).
    recorded: Option<Vec<Vec<u8>>>,
}

/// The hub all in-memory gateways of one test share.
#[derive(Clone, Default)]
pub struct MemoryHub {
    state: Arc<Mutex<HubState>>,
}

impl MemoryHub {
    /// A hub with no gateways.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, HubState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Connects gateway `name` (again): messages it has not confirmed are delivered anew, as
    /// after a crash; an inbox from an earlier attach stops receiving.
    pub fn attach(&self, name: &ServerName) -> (Arc<MemoryNet>, MemoryInbox) {
        let mut state = self.lock();
        let mailbox = state.boxes.entry(name.to_owned()).or_default();
        mailbox.generation += 1;
        mailbox.online = true;
        let redeliver: Vec<_> = mailbox.unconfirmed.drain(..).collect();
        for (id, bytes) in redeliver.into_iter().rev() {
            mailbox.queue.push_front(Item::Message(id, bytes));
        }
        mailbox.notify.notify_waiters();
        let inbox = MemoryInbox {
            hub: self.clone(),
            name: name.to_owned(),
            generation: mailbox.generation,
            notify: mailbox.notify.clone(),
        };
        let net = Arc::new(MemoryNet {
            hub: self.clone(),
            name: name.to_owned(),
        });
        (net, inbox)
    }

    /// Takes a gateway off the network (its messages wait at the hub) or brings it back.
    pub fn set_online(&self, name: &ServerName, online: bool) {
        let mut state = self.lock();
        if let Some(mailbox) = state.boxes.get_mut(name) {
            mailbox.online = online;
            mailbox.notify.notify_waiters();
        }
    }

    /// Drops every message still waiting for `name` (not yet handed to it), as providers do
    /// when their mailbox's time to live ends while a gateway is down and its senders have
    /// given up. Returns how many were dropped.
    pub fn expire_mail(&self, name: &ServerName) -> usize {
        let mut state = self.lock();
        let Some(mailbox) = state.boxes.get_mut(name) else {
            return 0;
        };
        let before = mailbox.queue.len();
        mailbox
            .queue
            .retain(|item| matches!(item, Item::Request(..)));
        before - mailbox.queue.len()
    }

    /// Starts keeping a copy of every message, request and answer that crosses the hub
    /// (what a wire-format study or a dictionary trainer needs).
    pub fn record(&self) {
        self.lock().recorded.get_or_insert_with(Vec::new);
    }

    /// What was recorded so far (see [`MemoryHub::record`]).
    pub fn recorded(&self) -> Vec<Vec<u8>> {
        self.lock().recorded.clone().unwrap_or_default()
    }

    /// Messages and requests delivered so far (all gateways).
    pub fn delivered(&self) -> u64 {
        self.lock().delivered
    }

    /// Messages waiting for `name` (queued or unconfirmed).
    pub fn pending(&self, name: &ServerName) -> usize {
        self.lock()
            .boxes
            .get(name)
            .map_or(0, |m| m.queue.len() + m.unconfirmed.len())
    }
}

/// One gateway's sending half on a [`MemoryHub`].
pub struct MemoryNet {
    hub: MemoryHub,
    name: OwnedServerName,
}

impl MemoryNet {
    /// The gateway this handle sends for.
    pub fn name(&self) -> &ServerName {
        &self.name
    }
}

impl PeerNet for MemoryNet {
    fn send<'a>(
        &'a self,
        to: &'a ServerName,
        bytes: Vec<u8>,
    ) -> BoxFuture<'a, Result<(), NetError>> {
        Box::pin(async move {
            if bytes.len() > MAX_MESSAGE {
                return Err(NetError::TooLarge(bytes.len()));
            }
            let mut state = self.hub.lock();
            state.next_id += 1;
            let mut id = [0u8; 16];
            id[..8].copy_from_slice(&state.next_id.to_be_bytes());
            let mailbox = state
                .boxes
                .get_mut(to)
                .ok_or_else(|| NetError::UnknownPeer(to.to_owned()))?;
            mailbox
                .queue
                .push_back(Item::Message(InboundId(id), bytes.clone()));
            mailbox.notify.notify_waiters();
            if let Some(log) = state.recorded.as_mut() {
                log.push(bytes);
            }
            Ok(())
        })
    }

    fn request<'a>(
        &'a self,
        to: &'a ServerName,
        bytes: Vec<u8>,
        max_response: usize,
        wait: Duration,
    ) -> BoxFuture<'a, Result<Vec<u8>, NetError>> {
        Box::pin(async move {
            if bytes.len() > MAX_MESSAGE {
                return Err(NetError::TooLarge(bytes.len()));
            }
            let rx = {
                let mut state = self.hub.lock();
                // A gateway taken off the network cannot ask anyone either.
                if state.boxes.get(&self.name).is_some_and(|m| !m.online) {
                    return Err(NetError::Timeout);
                }
                let mailbox = state
                    .boxes
                    .get_mut(to)
                    .ok_or_else(|| NetError::UnknownPeer(to.to_owned()))?;
                if !mailbox.online {
                    return Err(NetError::Timeout);
                }
                let (tx, rx) = oneshot::channel();
                mailbox.queue.push_back(Item::Request(bytes.clone(), tx));
                mailbox.notify.notify_waiters();
                if let Some(log) = state.recorded.as_mut() {
                    log.push(bytes);
                }
                rx
            };
            match tokio::time::timeout(wait, rx).await {
                Ok(Ok(answer)) if answer.len() <= max_response => {
                    if let Some(log) = self.hub.lock().recorded.as_mut() {
                        log.push(answer.clone());
                    }
                    Ok(answer)
                }
                Ok(Ok(answer)) => Err(NetError::TooLarge(answer.len())),
                Ok(Err(_)) => Err(NetError::Timeout),
                Err(_) => Err(NetError::Timeout),
            }
        })
    }

    fn confirm(&self, id: InboundId) {
        let mut state = self.hub.lock();
        if let Some(mailbox) = state.boxes.get_mut(&self.name) {
            mailbox.unconfirmed.retain(|(i, _)| *i != id);
        }
    }
}

/// One gateway's receiving half on a [`MemoryHub`].
pub struct MemoryInbox {
    hub: MemoryHub,
    name: OwnedServerName,
    generation: u64,
    notify: Arc<Notify>,
}

impl PeerInbox for MemoryInbox {
    fn next(&mut self) -> BoxFuture<'_, Option<Inbound>> {
        Box::pin(async move {
            loop {
                let notified = self.notify.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                {
                    let mut state = self.hub.lock();
                    let mailbox = state.boxes.get_mut(&self.name)?;
                    if mailbox.generation != self.generation {
                        return None;
                    }
                    if mailbox.online {
                        if let Some(item) = mailbox.queue.pop_front() {
                            let inbound = match item {
                                Item::Message(id, bytes) => {
                                    mailbox.unconfirmed.push((id, bytes.clone()));
                                    Inbound {
                                        id,
                                        bytes,
                                        reply: None,
                                    }
                                }
                                Item::Request(bytes, tx) => Inbound {
                                    id: InboundId([0; 16]),
                                    bytes,
                                    reply: Some(Reply::new(move |answer| {
                                        tx.send(answer).map_err(|_| NetError::Timeout)
                                    })),
                                },
                            };
                            state.delivered += 1;
                            return Some(inbound);
                        }
                    }
                }
                notified.await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> OwnedServerName {
        ServerName::parse(s).expect("server name")
    }

    #[tokio::test]
    async fn unconfirmed_messages_come_back_after_a_restart() {
        let hub = MemoryHub::new();
        let (a, _a_in) = hub.attach(&name("a"));
        let (_b, mut b_in) = hub.attach(&name("b"));
        a.send(&name("b"), b"one".to_vec()).await.expect("send");
        a.send(&name("b"), b"two".to_vec()).await.expect("send");
        let first = b_in.next().await.expect("first");
        assert_eq!(first.bytes, b"one");
        // b "crashes" before confirming: both come again, in order.
        let (b2, mut b_in2) = hub.attach(&name("b"));
        assert!(b_in.next().await.is_none(), "the old inbox is closed");
        let again = b_in2.next().await.expect("again");
        assert_eq!(again.bytes, b"one");
        b2.confirm(again.id);
        let second = b_in2.next().await.expect("second");
        assert_eq!(second.bytes, b"two");
        b2.confirm(second.id);
        assert_eq!(hub.pending(&name("b")), 0);
    }

    #[tokio::test]
    async fn requests_are_answered_and_offline_peers_time_out() {
        let hub = MemoryHub::new();
        let (a, _a_in) = hub.attach(&name("a"));
        let (_b, mut b_in) = hub.attach(&name("b"));
        let responder = tokio::spawn(async move {
            let req = b_in.next().await.expect("request");
            req.reply
                .expect("reply")
                .send(b"pong".to_vec())
                .expect("answer");
        });
        let answer = a
            .request(&name("b"), b"ping".to_vec(), 100, Duration::from_secs(5))
            .await
            .expect("answer");
        assert_eq!(answer, b"pong");
        responder.await.expect("responder");
        hub.set_online(&name("b"), false);
        let err = a
            .request(&name("b"), b"ping".to_vec(), 100, Duration::from_secs(5))
            .await;
        assert!(matches!(err, Err(NetError::Timeout)));
        assert!(matches!(
            a.send(&name("nobody"), vec![]).await,
            Err(NetError::UnknownPeer(_))
        ));
    }
}
