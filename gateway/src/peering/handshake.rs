//! Joining and leaving rooms that live on other gateways, as request/response over reply
//! blocks (the responder never learns the asker's address), and the small queries peers answer.
//!
//! Join, as the joining gateway B through a resident gateway A:
//! 1. B asks A `MakeMembership { join }`; A answers a template built on its view of the room
//!    (`prev_events`, `auth_events`, `depth`).
//! 2. B fills in the user's profile, signs the event and asks A `SendMembership`. A ingests it
//!    through its ordinary door (signature, auth rules) and answers the state before the join
//!    and the auth chain.
//! 3. B verifies every event, stores the state and auth chain as outliers and the join with
//!    that state ([`crate::service::rooms::RoomTxn::ingest_with_state`]). B's outbound sender
//!    then sends the join, like any event B signed, to every gateway of the room.
//!
//! Leaving a room this gateway is not in (rejecting an invite) is the same with `leave`.

use ruma::{
    events::TimelineEventType,
    signatures::{hash_and_sign_event, sign_event},
    CanonicalJsonObject, OwnedEventId, OwnedServerName, RoomAliasId, RoomId, ServerName, UserId,
};
use serde_json::{json, value::to_raw_value, Value};

use super::{
    inbound::ingest_from,
    wire::{Body, RawPdu},
    AskError, Peer,
};
use crate::{
    error::{ApiError, ApiResult},
    service::rooms::{
        ingest::{verify_pdu, IncomingPdu, Ingested},
        membership::{authorise_restricted_join, local_joined, AUTHORISED_VIA},
        rules_for,
        state::StateMap,
        StoredPdu,
    },
};

/// Most events in one missing-events answer.
const MAX_MISSING: usize = 100;

fn refused(e: AskError) -> ApiError {
    match e {
        AskError::Refused { errcode, error } if errcode == "M_FORBIDDEN" => {
            ApiError::forbidden(error)
        }
        AskError::Refused { error, .. } => ApiError::not_found(error),
        other => ApiError::not_found(format!("Could not reach the room's gateways: {other}")),
    }
}

/// Joins (`membership = "join"`) or leaves a room this gateway does not hold, through the
/// first of `via` that answers.
pub async fn remote_membership(
    peer: &Peer,
    room: &RoomId,
    via: &[OwnedServerName],
    user: &UserId,
    membership: &str,
) -> ApiResult<()> {
    let mut last = ApiError::not_found("No gateway to join through");
    for server in via.iter().filter(|s| *s != peer.gw.server_name()) {
        match through(peer, server, room, user, membership).await {
            Ok(()) => return Ok(()),
            Err(e) => {
                tracing::info!(via = %server, room = %room, "peering: {membership} failed: {}", e.message);
                last = e;
            }
        }
    }
    Err(last)
}

async fn through(
    peer: &Peer,
    server: &ServerName,
    room: &RoomId,
    user: &UserId,
    membership: &str,
) -> ApiResult<()> {
    let template = peer
        .ask(
            server,
            Body::MakeMembership {
                room_id: room.to_owned(),
                user_id: user.to_owned(),
                membership: membership.to_owned(),
            },
        )
        .await
        .map_err(refused)?;
    let Body::MembershipTemplate {
        room_version,
        mut event,
    } = template
    else {
        return Err(ApiError::not_found("The gateway answered something else"));
    };
    let rules = rules_for(&room_version)?;
    // Only what the template may decide is taken from it.
    if event["room_id"] != json!(room)
        || event["sender"] != json!(user)
        || event["state_key"] != json!(user)
        || event["type"] != "m.room.member"
    {
        return Err(ApiError::not_found("The gateway sent a bad template"));
    }
    let mut content = json!({ "membership": membership });
    // A restricted room: the resident names who vouches, and co-signs the join.
    let vouched = event["content"][AUTHORISED_VIA].as_str().map(str::to_owned);
    if let Some(via) = &vouched {
        content[AUTHORISED_VIA] = json!(via);
    }
    if membership == "join" {
        if let Some(profile) = peer.gw.users.get(user)? {
            if let Some(name) = profile.displayname {
                content["displayname"] = json!(name);
            }
            if let Some(avatar) = profile.avatar_url {
                content["avatar_url"] = json!(avatar);
            }
        }
    }
    event["content"] = content;
    event["origin_server_ts"] = json!(ruma::MilliSecondsSinceUnixEpoch::now());
    let mut object: CanonicalJsonObject = serde_json::from_value(event)
        .map_err(|e| ApiError::not_found(format!("bad template: {e}")))?;
    hash_and_sign_event(
        peer.gw.server_name().as_str(),
        peer.gw.identity.keypair(),
        &mut object,
        &rules.redaction,
    )
    .map_err(|e| ApiError::internal(format!("cannot sign: {e}")))?;
    let signed = to_raw_value(&object)?;
    let own_id = ruma::signatures::reference_hash(&object, &rules)
        .map_err(|e| ApiError::internal(format!("own event: {e}")))?;
    // Without the resident's signature a vouched join does not verify yet.
    let own = match &vouched {
        None => Some(
            verify_pdu(&rules, room, &signed)
                .map_err(|e| ApiError::internal(format!("own event: {e}")))?,
        ),
        Some(_) => None,
    };
    let answer = peer
        .ask(
            server,
            Body::SendMembership {
                room_id: room.to_owned(),
                event: signed,
            },
        )
        .await
        .map_err(refused)?;
    let Body::JoinedState {
        state,
        auth_chain,
        event: cosigned,
    } = answer
    else {
        return Err(ApiError::not_found("The gateway answered something else"));
    };
    if membership != "join" {
        return Ok(());
    }
    let join = match (own, cosigned) {
        (Some(own), _) => own,
        (None, Some(cosigned)) => {
            let join = verify_pdu(&rules, room, &cosigned)
                .map_err(|e| ApiError::not_found(format!("The co-signed join: {e}")))?;
            if join.event_id.as_str() != format!("${own_id}") {
                return Err(ApiError::not_found("The gateway co-signed another event"));
            }
            join
        }
        (None, None) => {
            return Err(ApiError::not_found(
                "The gateway did not co-sign the join it vouched for",
            ))
        }
    };
    store_join(peer, server, room, room_version, join, state, auth_chain).await
}

/// Stores a join made through `server`: state and auth chain as outliers, then the join.
async fn store_join(
    peer: &Peer,
    server: &ServerName,
    room: &RoomId,
    version: ruma::RoomVersionId,
    join: IncomingPdu,
    state: Vec<RawPdu>,
    auth_chain: Vec<RawPdu>,
) -> ApiResult<()> {
    let rules = rules_for(&version)?;
    let mut verified: Vec<IncomingPdu> = Vec::new();
    let mut state_ids: Vec<OwnedEventId> = Vec::new();
    for (raw, is_state) in auth_chain
        .iter()
        .map(|r| (r, false))
        .chain(state.iter().map(|r| (r, true)))
    {
        match verify_pdu(&rules, room, raw) {
            Ok(p) => {
                if is_state {
                    state_ids.push(p.event_id.clone());
                }
                verified.push(p);
            }
            Err(e) => {
                peer.stats.dropped(e.label());
                tracing::info!(via = %server, "peering: state event refused: {e}");
            }
        }
    }
    verified.sort_by_key(|p| u64::from(p.pdu.depth));
    verified.dedup_by(|a, b| a.event_id == b.event_id);
    let mut state_map = StateMap::new();
    for p in &verified {
        if let (true, Some(sk)) = (state_ids.contains(&p.event_id), &p.pdu.state_key) {
            state_map.insert((p.pdu.kind.to_string(), sk.clone()), p.event_id.clone());
        }
    }
    let known = peer.gw.rooms.meta(room)?.is_some();
    let ((), _) = peer
        .gw
        .rooms
        .write(room, (!known).then_some(version), |txn| {
            // Parents first; an event whose auth events are refused stays out.
            let mut pending = verified.clone();
            for _ in 0..4 {
                let mut later = Vec::new();
                for p in pending {
                    if let Ingested::Missing(_) = txn.ingest_outlier(&p)? {
                        later.push(p);
                    }
                }
                if later.is_empty() {
                    break;
                }
                pending = later;
            }
            match txn.ingest_with_state(&join, state_map.clone())? {
                Ingested::Accepted | Ingested::Duplicate => Ok(()),
                other => Err(ApiError::forbidden(format!(
                    "The join does not fit the room's state: {other:?}"
                ))),
            }
        })
        .await?;
    peer.stats.accepted();
    Ok(())
}

/// Answers `MakeMembership`: a template for a user of `origin`.
pub async fn make_membership(
    peer: &Peer,
    origin: &ServerName,
    room: &RoomId,
    user: &UserId,
    membership: &str,
) -> ApiResult<Body> {
    if user.server_name() != origin {
        return Err(ApiError::forbidden(
            "A gateway speaks for its own users only",
        ));
    }
    if membership != "join" && membership != "leave" {
        return Err(ApiError::bad_request("Only join and leave"));
    }
    if peer.gw.rooms.meta(room)?.is_none() {
        return Err(ApiError::not_found("Unknown room"));
    }
    // A join into a restricted room needs a local member to vouch for it, if the user
    // qualifies (joined to an allowed room, as this gateway knows).
    let candidates = local_joined(&peer.gw, room)?;
    let gw = &peer.gw;
    let (room_version, event) = gw
        .rooms
        .membership_template(room, user, membership, |txn| {
            if membership != "join"
                || matches!(txn.membership(user)?.as_deref(), Some("join" | "invite"))
            {
                return Ok(None);
            }
            authorise_restricted_join(gw, txn, user, &candidates)
        })
        .await?;
    Ok(Body::MembershipTemplate {
        room_version,
        event,
    })
}

/// Answers `SendMembership`: ingests the signed event; for a join, answers the state before
/// it and the auth chain.
pub async fn send_membership(
    peer: &Peer,
    origin: &ServerName,
    room: &RoomId,
    event: RawPdu,
) -> ApiResult<Body> {
    let rules = peer.gw.rooms.rules_of(room)?;
    let cosigned = cosign_restricted_join(peer, &rules, &event)?;
    let event = cosigned.clone().unwrap_or(event);
    let incoming =
        verify_pdu(&rules, room, &event).map_err(|e| ApiError::forbidden(e.to_string()))?;
    let pdu = &incoming.pdu;
    let membership = pdu.content_value()["membership"].clone();
    if pdu.kind != TimelineEventType::RoomMember
        || pdu.sender.server_name() != origin
        || pdu.state_key.as_deref() != Some(pdu.sender.as_str())
        || !(membership == "join" || membership == "leave")
    {
        return Err(ApiError::forbidden(
            "Not a membership event of the asker's user",
        ));
    }
    let id = incoming.event_id.clone();
    ingest_from(peer, origin, room, vec![event]).await?;
    let Some((_, stored)) = peer.gw.rooms.get_pdu(&id)? else {
        return Err(ApiError::forbidden("The event was refused"));
    };
    if !stored.status.is_accepted() {
        return Err(ApiError::forbidden("The event is not allowed in this room"));
    }
    if membership != "join" {
        return Ok(Body::JoinedState {
            state: Vec::new(),
            auth_chain: Vec::new(),
            event: None,
        });
    }
    let (state, chain) = peer.gw.rooms.state_and_auth_chain(&id)?;
    Ok(Body::JoinedState {
        state: raw(state),
        auth_chain: raw(chain),
        event: cosigned,
    })
}

/// A join naming one of this gateway's users in `join_authorised_via_users_server` gets this
/// gateway's signature too (the auth rules then check that user's membership and power, and
/// every gateway checks the signature). `None` for any other event.
fn cosign_restricted_join(
    peer: &Peer,
    rules: &ruma::room_version_rules::RoomVersionRules,
    event: &RawPdu,
) -> ApiResult<Option<RawPdu>> {
    let mut object: CanonicalJsonObject = serde_json::from_str(event.get())
        .map_err(|e| ApiError::forbidden(format!("malformed event: {e}")))?;
    let via = match object.get("content") {
        Some(ruma::CanonicalJsonValue::Object(c)) => match c.get(AUTHORISED_VIA) {
            Some(ruma::CanonicalJsonValue::String(v)) => v.clone(),
            _ => return Ok(None),
        },
        _ => return Ok(None),
    };
    let via = UserId::parse(via).map_err(|_| ApiError::forbidden("Bad authorising user"))?;
    if via.server_name() != peer.gw.server_name() {
        return Ok(None);
    }
    sign_event(
        peer.gw.server_name().as_str(),
        peer.gw.identity.keypair(),
        &mut object,
        &rules.redaction,
    )
    .map_err(|e| ApiError::internal(format!("cannot sign: {e}")))?;
    Ok(Some(to_raw_value(&object)?))
}

fn raw(pdus: Vec<StoredPdu>) -> Vec<RawPdu> {
    pdus.into_iter().map(|s| s.json).collect()
}

/// Refuses a gateway with no member in the room.
pub(super) fn require_member(peer: &Peer, origin: &ServerName, room: &RoomId) -> ApiResult<()> {
    if !peer.gw.rooms.server_in_room(room, origin)? {
        return Err(ApiError::forbidden(
            "No member of your gateway is in this room",
        ));
    }
    Ok(())
}

/// Answers `MissingEvents` for a gateway with a member in the room: the events it may read
/// whole, the others redacted ([`crate::service::rooms::ServerView`]).
pub fn missing_events(
    peer: &Peer,
    origin: &ServerName,
    room: &RoomId,
    earliest: &[OwnedEventId],
    latest: &[OwnedEventId],
    limit: u32,
) -> ApiResult<Body> {
    require_member(peer, origin, room)?;
    let limit = (limit as usize).min(MAX_MISSING);
    let events = peer
        .gw
        .rooms
        .missing_events(room, earliest, latest, limit)?;
    let view = peer.gw.rooms.server_view(room, origin)?;
    let mut pdus = events
        .iter()
        .map(|e| view.pdu(e))
        .collect::<ApiResult<Vec<_>>>()?;
    // Keep the newest that fit one message (oldest are dropped: they are asked for again).
    let budget = super::net::MAX_MESSAGE - 4096;
    let mut size: usize = pdus.iter().map(|p| p.get().len() + 1).sum();
    let mut drop = 0;
    while size > budget && drop < pdus.len() {
        size -= pdus[drop].get().len() + 1;
        drop += 1;
    }
    pdus.drain(..drop);
    Ok(Body::Events { pdus })
}

/// Bytes of head events in a `Heads` answer (asked for with a small reply capacity).
const HEADS_BUDGET: usize = 6 * 1024;

/// Answers `RoomHeads` for a gateway with a member in the room: this gateway's forward
/// extremities, redacted where the asker may not read them.
pub fn room_heads(peer: &Peer, origin: &ServerName, room: &RoomId) -> ApiResult<Body> {
    require_member(peer, origin, room)?;
    let view = peer.gw.rooms.server_view(room, origin)?;
    let mut pdus = Vec::new();
    let mut size = 0;
    for id in peer.gw.rooms.heads(room)? {
        if let Some((_, stored)) = peer.gw.rooms.get_pdu(&id)? {
            let pdu = view.pdu(&stored)?;
            // The asker leaves room for a small answer; one head is enough to catch up from.
            size += pdu.get().len() + 1;
            if size > HEADS_BUDGET && !pdus.is_empty() {
                break;
            }
            pdus.push(pdu);
        }
    }
    Ok(Body::Heads { pdus })
}

/// Answers `QueryAlias` for an alias of this gateway.
pub fn query_alias(peer: &Peer, alias: &RoomAliasId) -> ApiResult<Body> {
    if alias.server_name() != peer.gw.server_name() {
        return Err(ApiError::not_found("Not an alias of this gateway"));
    }
    let room = peer
        .gw
        .rooms
        .resolve_alias(alias)?
        .ok_or_else(|| ApiError::not_found("Unknown room alias"))?;
    let mut servers = vec![peer.gw.server_name().to_owned()];
    servers.extend(peer.gw.rooms.member_servers(&room)?);
    Ok(Body::Alias {
        room_id: room,
        servers,
    })
}

/// Answers `QueryProfile` when a user of `origin` shares a room with the user.
pub fn query_profile(peer: &Peer, origin: &ServerName, user: &UserId) -> ApiResult<Body> {
    if user.server_name() != peer.gw.server_name() {
        return Err(ApiError::not_found("Not a user of this gateway"));
    }
    let shared = peer
        .gw
        .rooms
        .joined_rooms(user)?
        .iter()
        .any(|room| peer.gw.rooms.server_in_room(room, origin).unwrap_or(false));
    if !shared {
        return Err(ApiError::not_found("Profile not found"));
    }
    let profile = peer
        .gw
        .users
        .get(user)?
        .ok_or_else(|| ApiError::not_found("Profile not found"))?;
    Ok(Body::Profile {
        displayname: profile.displayname,
        avatar_url: profile.avatar_url,
    })
}

/// A profile from an answer, as the CS API shows it.
pub fn profile_json(body: Body) -> ApiResult<Value> {
    match body {
        Body::Profile {
            displayname,
            avatar_url,
        } => {
            let mut v = json!({});
            if let Some(n) = displayname {
                v["displayname"] = json!(n);
            }
            if let Some(a) = avatar_url {
                v["avatar_url"] = json!(a);
            }
            Ok(v)
        }
        _ => Err(ApiError::not_found("Profile not found")),
    }
}
