//! Transactions to application services: `PUT {url}/_matrix/app/v1/transactions/{txnId}`.
//!
//! One task per service with a `url` ([`spawn_all`]). It reads the event feed (every event
//! accepted into a timeline, local or from another gateway) after its durable cursor, keeps
//! the events the service is interested in ([`super::AppService::interested`]) and stores them
//! as the next numbered transaction in the same batch as the new cursor. Transactions are
//! sent one at a time, oldest first, with the `hs_token`, so the service sees events in
//! order; a transaction is deleted only when the service answers 2xx. Anything else (down,
//! slow past the timeout, 5xx, garbage) is retried with exponential backoff on the injected
//! clock, with the same transaction id (services deduplicate by it), for as long as it takes:
//! nothing is dropped, and a restart resends what was not acknowledged. Each service has its
//! own task, so one failing service holds up no other, nor sending or syncing.

use std::{sync::Arc, time::Duration};

use ruma::EventId;
use serde_json::{json, Value};
use storage::{key, u64_be, u64_from_be, Batch, Table};

use super::AppService;
use crate::{
    error::ApiResult,
    service::{feed, pusher::PushOptions, Gateway},
};

/// Most events in one transaction.
pub const MAX_EVENTS: usize = 100;

fn txns() -> Table<Value> {
    Table::new("as_txns")
}

fn seqs() -> Table<u64> {
    Table::new("as_txn_seq")
}

fn consumer(service: &AppService) -> String {
    format!("as:{}", service.id())
}

/// Queued transactions of `service`: `(txn id, body)`, oldest first.
pub fn queued(gw: &Gateway, service: &AppService) -> ApiResult<Vec<(u64, Value)>> {
    let mut prefix = service.id().as_bytes().to_vec();
    prefix.push(0xff);
    Ok(txns()
        .scan_prefix(&gw.db, &prefix)?
        .into_iter()
        .filter_map(|(k, v)| Some((u64_from_be(&k)?, v)))
        .collect())
}

/// Starts the transaction task of every service that has a `url`.
pub fn spawn_all(gw: &Arc<Gateway>, options: PushOptions) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    for service in gw.appservices.all() {
        let Some(url) = service.reg.raw.url.clone() else {
            continue;
        };
        let name = consumer(service);
        // Fixed before returning: events committed after this call are all considered.
        let cursor = match feed::cursor(&gw.db, &name) {
            Ok(Some(c)) => c,
            Ok(None) => {
                let now = gw.stream.current();
                let mut batch = Batch::new();
                if feed::set_cursor(&mut batch, &name, now).is_err() || gw.db.apply(batch).is_err()
                {
                    tracing::error!(
                        appservice = service.id(),
                        "cannot store the transaction cursor"
                    );
                    continue;
                }
                now
            }
            Err(e) => {
                tracing::error!(appservice = service.id(), error = %e, "cannot read the transaction cursor");
                continue;
            }
        };
        let (gw, service, options) = (gw.clone(), service.clone(), options.clone());
        tasks.push(tokio::spawn(async move {
            run(gw, service, url, cursor, options).await;
        }));
    }
    tasks
}

async fn run(
    gw: Arc<Gateway>,
    service: Arc<AppService>,
    url: String,
    mut cursor: u64,
    options: PushOptions,
) {
    let client = match reqwest::Client::builder()
        .timeout(options.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(appservice = service.id(), error = %e, "cannot build an HTTP client");
            return;
        }
    };
    let base = url.trim_end_matches('/').to_owned();
    let mut changes = gw.stream.subscribe();
    let mut attempts = 0u32;
    let mut next_try = 0u64;
    loop {
        changes.borrow_and_update();
        match fan_out(&gw, &service, cursor).await {
            Ok(c) => cursor = c,
            Err(e) => {
                tracing::warn!(appservice = service.id(), error = %e, "transaction fan-out failed")
            }
        }
        if let Err(e) = super::ephemeral::fan_out(&gw, &service).await {
            tracing::warn!(appservice = service.id(), error = %e, "ephemeral fan-out failed")
        }
        let now = options.clock.now_ms();
        let mut wait = Duration::from_secs(5);
        if now >= next_try {
            match queued(&gw, &service).map(|q| q.into_iter().next()) {
                Ok(Some((id, body))) => {
                    let target = format!("{base}/_matrix/app/v1/transactions/{id}");
                    let sent = client
                        .put(&target)
                        .bearer_auth(&service.reg.raw.hs_token)
                        .json(&body)
                        .send()
                        .await;
                    let why = match sent {
                        Ok(r) if r.status().is_success() => None,
                        Ok(r) => Some(format!("answered {}", r.status())),
                        Err(e) => Some(format!("request failed: {e}")),
                    };
                    match why {
                        None => {
                            attempts = 0;
                            next_try = 0;
                            if let Err(e) = acknowledge(&gw, &service, id).await {
                                tracing::warn!(appservice = service.id(), error = %e, "cannot delete an acknowledged transaction");
                            }
                            continue;
                        }
                        Some(why) => {
                            attempts += 1;
                            let delay = crate::service::pusher::backoff(&options, attempts);
                            next_try = options.clock.now_ms() + delay.as_millis() as u64;
                            wait = delay;
                            tracing::warn!(appservice = service.id(), txn = id, attempts, %why, "transaction will be retried");
                        }
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(appservice = service.id(), error = %e, "reading transactions failed")
                }
            }
        } else {
            wait = Duration::from_millis(next_try - now);
        }
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { return },
            _ = tokio::time::sleep(wait.max(Duration::from_millis(5))) => {}
        }
    }
}

async fn acknowledge(gw: &Gateway, service: &AppService, id: u64) -> ApiResult<()> {
    let mut batch = Batch::new();
    txns().delete(&mut batch, &key(&[service.id().as_bytes(), &u64_be(id)]));
    gw.db.apply(batch)?;
    gw.db.flush().await?;
    Ok(())
}

/// Turns feed entries after `cursor` into transactions; returns the new cursor.
async fn fan_out(gw: &Gateway, service: &AppService, mut cursor: u64) -> ApiResult<u64> {
    let name = consumer(service);
    loop {
        let entries = feed::after(&gw.db, cursor, MAX_EVENTS)?;
        let Some(&(last, _)) = entries.last() else {
            return Ok(cursor);
        };
        let mut events = Vec::new();
        for (_, id) in &entries {
            if let Some(ev) = event_for(gw, service, id)? {
                events.push(ev);
            }
        }
        let mut batch = Batch::new();
        if !events.is_empty() {
            queue(gw, &mut batch, service, json!({ "events": events }))?;
        }
        feed::set_cursor(&mut batch, &name, last)?;
        feed::prune(&gw.db, &mut batch, &name, last)?;
        gw.db.apply(batch)?;
        gw.db.flush().await?;
        cursor = last;
    }
}

/// Queues `body` into `batch` as the service's next transaction (one batch per call: the
/// next number is read from the database).
pub fn queue(gw: &Gateway, batch: &mut Batch, service: &AppService, body: Value) -> ApiResult<()> {
    let seq = seqs().get(&gw.db, service.id().as_bytes())?.unwrap_or(0) + 1;
    seqs().put(batch, service.id().as_bytes(), &seq)?;
    txns().put(batch, &key(&[service.id().as_bytes(), &u64_be(seq)]), &body)?;
    Ok(())
}

fn event_for(gw: &Gateway, service: &AppService, id: &EventId) -> ApiResult<Option<Value>> {
    let Some((pdu, stored)) = gw.rooms.get_visible_pdu(id)? else {
        return Ok(None);
    };
    if !service.interested(gw, &pdu)? {
        return Ok(None);
    }
    Ok(Some(pdu.to_client_event(&stored, None)))
}
