//! The recipient's side of end-to-end confirmation.
//!
//! A completed message is handed to the application once; its provider acknowledgements are
//! held until it is confirmed (at once with `auto_confirm`, else by `Client::confirm` after
//! the application stored it). Confirming first records the id durably, then releases the
//! provider acknowledgements and queues the confirmation on the newest reply block the
//! message carried. A later transmission of a confirmed message is dropped as a duplicate
//! and confirmed again, since the sender evidently missed the first confirmation.

use super::*;

impl Engine {
    /// A transmission completed. Returns what to do with its provider acknowledgement and the
    /// message for the application, if it is new.
    pub(super) fn on_complete(
        &self,
        key: (MsgId, Kind),
        r: Received,
        surb: Option<Box<Surb>>,
    ) -> (receive::Disposition, Option<Received>) {
        use receive::Disposition::{Hold, Release};
        let id = r.id;
        let mut awaiting = self.awaiting.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(a) = awaiting.get_mut(&id) {
            // Another transmission of a message the application holds but has not confirmed.
            a.keys.push(key);
            if surb.is_some() {
                a.surb = surb;
            }
            ClientStats::inc(&self.stats.duplicates);
            return (Hold(key), None);
        }
        let seen = self.cfg.outbox.was_received(&id).unwrap_or_else(|err| {
            warn!("received ids unreadable, delivering (at least once): {err}");
            false
        });
        if seen {
            drop(awaiting);
            ClientStats::inc(&self.stats.duplicates);
            if let Some(s) = surb {
                self.queue_confirmation(&mut self.state(), s, id);
            }
            return (Release(key), None);
        }
        awaiting.insert(
            id,
            Awaiting {
                keys: vec![key],
                surb,
                since: Instant::now(),
            },
        );
        ClientStats::inc(&self.stats.received);
        (Hold(key), Some(r))
    }

    /// The application stored message `id` (or `auto_confirm` is on): record it durably, then
    /// release its provider acknowledgements and confirm it to the sender.
    pub(crate) fn confirm(self: &Arc<Self>, id: MsgId) {
        let known = self
            .awaiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(&id);
        if !known {
            return;
        }
        let e = self.clone();
        self.rt.spawn(async move {
            let recorded = match e.cfg.outbox.mark_received(&id) {
                Ok(()) => e.cfg.outbox.sync().await,
                Err(err) => Err(err),
            };
            if let Err(err) = recorded {
                // Confirming anyway risks a duplicate later, never a loss.
                warn!("received id not recorded: {err}");
            }
            e.finish_confirm(id);
        });
    }

    fn finish_confirm(&self, id: MsgId) {
        let a = self
            .awaiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
        let Some(a) = a else { return };
        {
            let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
            let mut acks = self.to_ack.lock().unwrap_or_else(|p| p.into_inner());
            for k in &a.keys {
                acks.extend(held.remove(k).map(|h| h.1).unwrap_or_default());
            }
        }
        if let Some(surb) = a.surb {
            self.queue_confirmation(&mut self.state(), surb, id);
        }
    }

    /// Forgets messages the application was given more than `age` ago and never confirmed
    /// (their sender has given up by then). Not confirmed, they may be delivered again.
    pub(super) fn forget_unconfirmed(&self, age: Duration) {
        let mut awaiting = self.awaiting.lock().unwrap_or_else(|p| p.into_inner());
        let before = awaiting.len();
        awaiting.retain(|_, a| a.since.elapsed() < age);
        if awaiting.len() < before {
            warn!(
                count = before - awaiting.len(),
                "received messages never confirmed by the application were forgotten"
            );
        }
    }

    /// Queues a confirmation of `id` on `surb`; it leaves in a send slot like any packet.
    fn queue_confirmation(&self, st: &mut State, surb: Box<Surb>, id: MsgId) {
        let Some(body) = fragment(&id, Kind::Confirm, &[])
            .ok()
            .and_then(|mut f| (!f.is_empty()).then(|| f.swap_remove(0)))
        else {
            return;
        };
        ClientStats::inc(&self.stats.confirms_sent);
        st.queue.push_back(Job::Reply { surb, body });
    }
}
