//! What the room store offers the exchange with other gateways: the events to send, who they
//! go to, invites into rooms this gateway is not in, and the answers peers may ask for
//! (membership templates, the state at a join, missing events).

use std::collections::{BTreeSet, HashSet};

use ruma::{
    events::TimelineEventType, state_res, EventId, MilliSecondsSinceUnixEpoch, OwnedEventId,
    OwnedServerName, RoomId, ServerName, UserId,
};
use serde_json::{json, value::to_raw_value, Value};
use storage::{key, u64_be, u64_from_be};

use super::{state::auth_chain, tables::RemoteInvite, EventStatus, Rooms, StoredPdu, UserRoom};
use crate::error::{ApiError, ApiResult};

impl Rooms {
    /// Up to `limit` events this gateway signed, after stream position `after`, oldest first.
    pub fn outgoing_after(&self, after: u64, limit: usize) -> ApiResult<Vec<(u64, OwnedEventId)>> {
        let start = match after.checked_add(1) {
            Some(s) => u64_be(s),
            None => return Ok(Vec::new()),
        };
        Ok(self
            .t
            .outgoing
            .range(&self.db, b"", &start, false, limit)?
            .into_iter()
            .filter_map(|(k, v)| {
                let pos = u64_from_be(&k)?;
                let id = EventId::parse(String::from_utf8(v).ok()?).ok()?;
                Some((pos, id))
            })
            .collect())
    }

    /// The room's forward extremities.
    pub fn heads(&self, room_id: &RoomId) -> ApiResult<Vec<OwnedEventId>> {
        Ok(self
            .t
            .heads
            .get(&self.db, room_id.as_bytes())?
            .map(|h| h.events)
            .unwrap_or_default())
    }

    /// Gateways with a joined or invited member in the room now (this one excluded).
    pub fn member_servers(&self, room_id: &RoomId) -> ApiResult<BTreeSet<OwnedServerName>> {
        let me = self.identity.server_name();
        Ok(self
            .members(room_id)?
            .into_iter()
            .filter(|(_, m)| m.membership == "join" || m.membership == "invite")
            .map(|(u, _)| u.server_name().to_owned())
            .filter(|s| s != me)
            .collect())
    }

    /// Whether `server` has a member entitled to the room's events now (joined or invited).
    pub fn server_in_room(&self, room_id: &RoomId, server: &ServerName) -> ApiResult<bool> {
        Ok(self.members(room_id)?.into_iter().any(|(u, m)| {
            u.server_name() == server && (m.membership == "join" || m.membership == "invite")
        }))
    }

    /// Where an event goes: every gateway with a joined or invited member, and the gateway of
    /// the user a membership event is about (an invitee, or someone kicked or banned).
    pub fn destinations(
        &self,
        room_id: &RoomId,
        kind: &TimelineEventType,
        state_key: Option<&str>,
    ) -> ApiResult<BTreeSet<OwnedServerName>> {
        let mut servers = self.member_servers(room_id)?;
        if *kind == TimelineEventType::RoomMember {
            if let Some(user) = state_key.and_then(|k| UserId::parse(k).ok()) {
                if user.server_name() != self.identity.server_name() {
                    servers.insert(user.server_name().to_owned());
                }
            }
        }
        Ok(servers)
    }

    /// Records an invite of local `user` into a room this gateway is not in, so the user's
    /// clients see it (with its stripped state) and can accept or reject it.
    pub async fn store_remote_invite(
        &self,
        user: &UserId,
        room_id: &RoomId,
        invite: RemoteInvite,
    ) -> ApiResult<()> {
        self.refuse_blocked(room_id)?;
        self.stream
            .commit(|positions, batch| {
                let pos = positions.next();
                let k = key(&[user.as_bytes(), room_id.as_bytes()]);
                self.t.user_rooms.put(
                    batch,
                    &k,
                    &UserRoom {
                        membership: "invite".into(),
                        pos,
                        event_id: invite.event_id.clone(),
                    },
                )?;
                self.t.remote_invites.put(batch, &k, &invite)?;
                // The invite event itself, for whoever reads it by id (not part of any DAG here).
                if self
                    .t
                    .pdus
                    .get(&self.db, invite.event_id.as_bytes())?
                    .is_none()
                {
                    self.t.pdus.put(
                        batch,
                        invite.event_id.as_bytes(),
                        &StoredPdu {
                            json: invite.event.clone(),
                            pos,
                            txn: None,
                            redacted_because: None,
                            state_before: None,
                            state_after: None,
                            status: EventStatus::Outlier,
                        },
                    )?;
                }
                Ok(())
            })
            .await?;
        Ok(())
    }

    /// Marks an invite into a room this gateway is not in as left (rejected).
    pub async fn drop_remote_invite(&self, user: &UserId, room_id: &RoomId) -> ApiResult<()> {
        let Some(invite) = self.remote_invite(user, room_id)? else {
            return Ok(());
        };
        self.stream
            .commit(|positions, batch| {
                let pos = positions.next();
                let k = key(&[user.as_bytes(), room_id.as_bytes()]);
                self.t.user_rooms.put(
                    batch,
                    &k,
                    &UserRoom {
                        membership: "leave".into(),
                        pos,
                        event_id: invite.event_id.clone(),
                    },
                )?;
                self.t.remote_invites.delete(batch, &k);
                Ok(())
            })
            .await?;
        Ok(())
    }

    /// An invite of `user` into a room this gateway is not in.
    pub fn remote_invite(
        &self,
        user: &UserId,
        room_id: &RoomId,
    ) -> ApiResult<Option<RemoteInvite>> {
        Ok(self
            .t
            .remote_invites
            .get(&self.db, &key(&[user.as_bytes(), room_id.as_bytes()]))?)
    }

    /// A membership event for a user of another gateway to sign: `prev_events`, `auth_events`
    /// and `depth` from this gateway's view of the room. `vouch` names the local member who
    /// authorises a join into a restricted room (`join_authorised_via_users_server`), if any.
    pub async fn membership_template(
        &self,
        room_id: &RoomId,
        user: &UserId,
        membership: &str,
        vouch: impl FnOnce(&super::RoomTxn<'_>) -> ApiResult<Option<ruma::OwnedUserId>>,
    ) -> ApiResult<(ruma::RoomVersionId, Value)> {
        let meta = self
            .meta(room_id)?
            .ok_or_else(|| ApiError::not_found("Unknown room"))?;
        let rules = super::rules_for(&meta.version)?;
        let (template, _) = self
            .write(room_id, None, |txn| {
                let mut content = json!({ "membership": membership });
                if let Some(via) = vouch(txn)? {
                    content[super::membership::AUTHORISED_VIA] = json!(via);
                }
                let raw = to_raw_value(&content)?;
                let auth_types = state_res::auth_types_for_event(
                    &TimelineEventType::RoomMember,
                    user,
                    Some(user.as_str()),
                    &raw,
                    &rules.authorization,
                )
                .map_err(ApiError::bad_json)?;
                let mut auth_events = Vec::new();
                for (ty, sk) in auth_types {
                    if let Some(e) = txn.state_entry(&ty.to_string(), &sk)? {
                        if !auth_events.contains(&e.event_id) {
                            auth_events.push(e.event_id);
                        }
                    }
                }
                let prev: Vec<OwnedEventId> = txn.heads().iter().take(20).cloned().collect();
                let mut depth = 0u64;
                for p in &prev {
                    if let Some((pdu, _)) = txn.pdu(p)? {
                        depth = depth.max(u64::from(pdu.depth));
                    }
                }
                Ok(json!({
                    "room_id": room_id,
                    "sender": user,
                    "state_key": user,
                    "type": "m.room.member",
                    "content": content,
                    "origin_server_ts": MilliSecondsSinceUnixEpoch::now(),
                    "prev_events": prev,
                    "auth_events": auth_events,
                    "depth": depth + 1,
                }))
            })
            .await?;
        Ok((meta.version, template))
    }

    /// The state before an accepted event and the auth chain of that state and the event, as
    /// signed PDU JSON (for a gateway that joined with it).
    pub fn state_and_auth_chain(
        &self,
        event_id: &EventId,
    ) -> ApiResult<(Vec<StoredPdu>, Vec<StoredPdu>)> {
        let (pdu, stored) = self
            .get_pdu(event_id)?
            .ok_or_else(|| ApiError::not_found("Unknown event"))?;
        let group = stored
            .state_before
            .ok_or_else(|| ApiError::not_found("No state known at this event"))?;
        let (state, _) = self.groups.load(&self.db, group, &Default::default())?;
        let fetch = |id: &EventId| self.get_pdu(id).ok().flatten().map(|(p, _)| p);
        let mut ids: Vec<OwnedEventId> = state.values().cloned().collect();
        ids.push(pdu.event_id.clone());
        let chain = auth_chain(ids.iter(), &fetch);
        let load = |id: &EventId| -> ApiResult<Option<StoredPdu>> {
            Ok(self.get_pdu(id)?.map(|(_, s)| s))
        };
        let mut state_pdus = Vec::new();
        for id in state.values() {
            if let Some(s) = load(id)? {
                state_pdus.push(s);
            }
        }
        let mut chain_pdus = Vec::new();
        for id in chain.iter() {
            if let Some(s) = load(id)? {
                chain_pdus.push(s);
            }
        }
        Ok((state_pdus, chain_pdus))
    }

    /// Accepted events that lead from `earliest` (exclusive) to `latest` (exclusive), walking
    /// `prev_events` back from `latest`, at most `limit`, oldest first.
    pub fn missing_events(
        &self,
        room_id: &RoomId,
        earliest: &[OwnedEventId],
        latest: &[OwnedEventId],
        limit: usize,
    ) -> ApiResult<Vec<StoredPdu>> {
        let stop: HashSet<&OwnedEventId> = earliest.iter().collect();
        let mut seen: HashSet<OwnedEventId> = latest.iter().cloned().collect();
        let mut queue: std::collections::VecDeque<OwnedEventId> = std::collections::VecDeque::new();
        for id in latest {
            if let Some((pdu, _)) = self.get_pdu(id)? {
                if pdu.room_id == room_id {
                    queue.extend(pdu.prev_events.iter().cloned());
                }
            }
        }
        let mut found = Vec::new();
        while let Some(id) = queue.pop_front() {
            if found.len() >= limit {
                break;
            }
            if stop.contains(&id) || !seen.insert(id.clone()) {
                continue;
            }
            let Some((pdu, stored)) = self.get_pdu(&id)? else {
                continue;
            };
            if pdu.room_id != room_id || stored.status == EventStatus::Rejected {
                continue;
            }
            queue.extend(pdu.prev_events.iter().cloned());
            found.push((u64::from(pdu.depth), stored));
        }
        found.sort_by_key(|(depth, _)| *depth);
        Ok(found.into_iter().map(|(_, s)| s).collect())
    }
}
