//! Push delivery: events that a user's push rules say notify are sent to their HTTP pushers'
//! push gateways (`POST /_matrix/push/v1/notify`).
//!
//! One background task per gateway ([`spawn`]):
//! 1. **Fan-out.** It reads the event feed ([`crate::service::feed`]: every event accepted
//!    into a timeline, local or from another gateway) after its durable cursor. For each
//!    event and each local joined member other than the sender who has an `http` pusher, it
//!    evaluates the member's push rules; a notifying event becomes one job per pusher
//!    ([`queue`]), written in the same batch as the new cursor, so a restart neither loses
//!    nor repeats a fan-out.
//! 2. **Delivery.** Due jobs are sent concurrently, each on its own task with a timeout
//!    ([`deliver`]), so a push gateway that is down, slow or answers garbage delays nothing
//!    else: not sending, not syncing, not other pushers. A 2xx answer deletes the job and
//!    removes the pushers it lists in `rejected`; a network error, timeout, 5xx or 429 is
//!    retried with exponential backoff (`base_backoff` doubling up to `max_backoff`, by the
//!    injected [`Clock`]); another 4xx drops that notification. A notification still
//!    undelivered after `give_up_after` (a day by default) is dropped with a warning: it
//!    would only wake a phone for an old message.
//!
//! Bodies are `event_id_only` ([`notify`]): no content or sender leaves the gateway.

pub mod deliver;
pub mod notify;
pub mod queue;
#[cfg(test)]
mod tests;

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::Duration,
};

use serde_json::Value;
use storage::Batch;
use tokio::sync::Notify;

use self::{
    deliver::{Deliverer, Outcome},
    queue::Job,
};
use super::{clock::Clock, feed, push_eval::PushEvaluator, Gateway};
use crate::error::ApiResult;

/// Timing of push delivery.
#[derive(Clone)]
pub struct PushOptions {
    /// Longest wait for one push gateway answer.
    pub timeout: Duration,
    /// Wait before the first retry; doubles with each failure.
    pub base_backoff: Duration,
    /// Longest wait between retries.
    pub max_backoff: Duration,
    /// Age after which an undelivered notification is dropped.
    pub give_up_after: Duration,
    /// The clock retries are scheduled by.
    pub clock: Arc<dyn Clock>,
}

impl Default for PushOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            base_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(600),
            give_up_after: Duration::from_secs(24 * 3600),
            clock: Arc::new(super::clock::SystemClock),
        }
    }
}

/// This consumer's name in the event feed.
const FEED_CONSUMER: &str = "push";
/// Feed entries handled per batch.
const FANOUT_BATCH: usize = 200;

struct Worker {
    gw: Arc<Gateway>,
    options: PushOptions,
    deliverer: Deliverer,
    in_flight: Mutex<HashSet<Vec<u8>>>,
    wake: Notify,
}

/// Starts push delivery for `gw` in the background.
///
/// The fan-out cursor is fixed before this returns: a gateway that never pushed starts at the
/// present (and stores that), so every event committed after `spawn` is considered.
pub fn spawn(gw: Arc<Gateway>, options: PushOptions) -> tokio::task::JoinHandle<()> {
    let cursor = load_cursor(&gw);
    tokio::spawn(async move {
        let cursor = match cursor {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "push: cannot read the fan-out cursor; push is off");
                return;
            }
        };
        let deliverer = match Deliverer::new(
            options.timeout,
            gw.config.push_allowed_private_hosts.clone(),
        ) {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(error = %e, "cannot build the push HTTP client: push is off");
                return;
            }
        };
        let worker = Arc::new(Worker {
            gw,
            options,
            deliverer,
            in_flight: Mutex::new(HashSet::new()),
            wake: Notify::new(),
        });
        worker.run(cursor).await;
    })
}

/// The stored fan-out cursor, or the present (stored now) for a gateway that never pushed.
fn load_cursor(gw: &Gateway) -> ApiResult<u64> {
    if let Some(c) = feed::cursor(&gw.db, FEED_CONSUMER)? {
        return Ok(c);
    }
    let now = gw.stream.current();
    let mut batch = Batch::new();
    feed::set_cursor(&mut batch, FEED_CONSUMER, now)?;
    gw.db.apply(batch)?;
    Ok(now)
}

impl Worker {
    async fn run(self: Arc<Self>, mut cursor: u64) {
        let mut changes = self.gw.stream.subscribe();
        loop {
            changes.borrow_and_update();
            match self.fan_out(cursor).await {
                Ok(c) => cursor = c,
                Err(e) => tracing::warn!(error = %e, "push fan-out failed; retrying"),
            }
            let next = match self.deliver_due() {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(error = %e, "push: reading the queue failed");
                    None
                }
            };
            let now = self.options.clock.now_ms();
            let wait = next
                .map(|t| Duration::from_millis(t.saturating_sub(now)))
                .unwrap_or(Duration::from_secs(5))
                .clamp(Duration::from_millis(5), Duration::from_secs(5));
            tokio::select! {
                changed = changes.changed() => if changed.is_err() { return },
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Turns feed entries after `cursor` into jobs; returns the new cursor.
    async fn fan_out(&self, mut cursor: u64) -> ApiResult<u64> {
        loop {
            let entries = feed::after(&self.gw.db, cursor, FANOUT_BATCH)?;
            let Some(&(last, _)) = entries.last() else {
                return Ok(cursor);
            };
            let mut batch = Batch::new();
            for (pos, event_id) in entries {
                self.jobs_for(&mut batch, pos, &event_id)?;
            }
            feed::set_cursor(&mut batch, FEED_CONSUMER, last)?;
            feed::prune(&self.gw.db, &mut batch, FEED_CONSUMER, last)?;
            self.gw.db.apply(batch)?;
            self.gw.db.flush().await?;
            cursor = last;
        }
    }

    fn jobs_for(&self, batch: &mut Batch, pos: u64, event_id: &ruma::EventId) -> ApiResult<()> {
        let gw = &self.gw;
        let Some((pdu, stored)) = gw.rooms.get_visible_pdu(event_id)? else {
            return Ok(());
        };
        let room = &pdu.room_id;
        let now = self.options.clock.now_ms();
        for (user, member) in gw.rooms.members(room)? {
            if member.membership != "join"
                || user == pdu.sender
                || user.server_name() != gw.server_name()
            {
                continue;
            }
            let pushers: Vec<Value> = gw
                .account_data
                .pushers(&user)?
                .into_iter()
                .filter(|p| p.get("kind").and_then(Value::as_str) == Some("http"))
                .collect();
            if pushers.is_empty() {
                continue;
            }
            let verdict = PushEvaluator::for_room(gw, &user, room)?.evaluate(&stored.json);
            if !verdict.notify {
                continue;
            }
            let unread = crate::service::sync::unread_counts(gw, room, &user, pos)?
                ["notification_count"]
                .as_u64()
                .unwrap_or(0);
            for p in pushers {
                let field = |k: &str| p.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
                let job = Job {
                    user: user.clone(),
                    app_id: field("app_id"),
                    pushkey: field("pushkey"),
                    room_id: room.clone(),
                    event_id: pdu.event_id.clone(),
                    unread,
                    highlight: verdict.highlight,
                    attempts: 0,
                    next_ms: now,
                    created_ms: now,
                };
                queue::put(batch, pos, &job)?;
            }
        }
        Ok(())
    }

    /// Starts a delivery task for every due job not already in flight; returns when the next
    /// job not yet due is due.
    fn deliver_due(self: &Arc<Self>) -> ApiResult<Option<u64>> {
        let now = self.options.clock.now_ms();
        let mut next: Option<u64> = None;
        for (key, job) in queue::all(&self.gw.db)? {
            if job.next_ms > now {
                next = Some(next.map_or(job.next_ms, |n| n.min(job.next_ms)));
                continue;
            }
            {
                let mut in_flight = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
                if !in_flight.insert(key.clone()) {
                    continue;
                }
            }
            let worker = self.clone();
            tokio::spawn(async move {
                if let Err(e) = worker.deliver(&key, job).await {
                    tracing::warn!(error = %e, "push: recording a delivery failed");
                }
                worker
                    .in_flight
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&key);
                worker.wake.notify_one();
            });
        }
        Ok(next)
    }

    async fn deliver(&self, key: &[u8], mut job: Job) -> ApiResult<()> {
        let gw = &self.gw;
        let pusher = gw.account_data.pushers(&job.user)?.into_iter().find(|p| {
            p.get("app_id").and_then(Value::as_str) == Some(job.app_id.as_str())
                && p.get("pushkey").and_then(Value::as_str) == Some(job.pushkey.as_str())
        });
        let mut batch = Batch::new();
        let Some(pusher) = pusher else {
            // The pusher is gone: so is the reason to deliver.
            queue::remove(&mut batch, key);
            gw.db.apply(batch)?;
            return Ok(());
        };
        let url = pusher
            .get("data")
            .and_then(|d| d.get("url"))
            .and_then(Value::as_str)
            .unwrap_or("");
        let outcome = match crate::service::push_target::check_url(&gw.config, url) {
            Ok(_) => self.deliverer.send(url, &notify::body(&job, &pusher)).await,
            Err(e) => Outcome::Refused(format!("pusher url no longer allowed: {}", e.message)),
        };
        let now = self.options.clock.now_ms();
        match outcome {
            Outcome::Delivered { rejected } => {
                queue::remove(&mut batch, key);
                gw.db.apply(batch)?;
                for pushkey in rejected {
                    tracing::info!(user = %job.user, app_id = %job.app_id, "push gateway rejected a pushkey: pusher removed");
                    gw.account_data
                        .delete_pusher(&job.user, &job.app_id, &pushkey)
                        .await?;
                }
            }
            Outcome::Refused(why) => {
                tracing::warn!(user = %job.user, event = %job.event_id, %why, "push notification dropped");
                queue::remove(&mut batch, key);
                gw.db.apply(batch)?;
            }
            Outcome::Retry(why) => {
                let age = now.saturating_sub(job.created_ms);
                if age >= self.options.give_up_after.as_millis() as u64 {
                    tracing::warn!(user = %job.user, event = %job.event_id, %why, attempts = job.attempts, "push notification given up");
                    queue::remove(&mut batch, key);
                } else {
                    job.attempts += 1;
                    job.next_ms = now + backoff(&self.options, job.attempts).as_millis() as u64;
                    tracing::debug!(user = %job.user, %why, attempts = job.attempts, "push delivery will be retried");
                    queue::update(&mut batch, key, &job)?;
                }
                gw.db.apply(batch)?;
            }
        }
        gw.db.flush().await?;
        Ok(())
    }
}

/// The wait after the `attempts`-th failure: `base · 2^(attempts-1)`, at most `max`.
pub fn backoff(options: &PushOptions, attempts: u32) -> Duration {
    let factor = 1u32 << attempts.saturating_sub(1).min(20);
    options
        .base_backoff
        .saturating_mul(factor)
        .min(options.max_backoff)
}
