//! The services' way to other gateways: [`RemoteHandle`] implements the `Remote` port by
//! sending commands to a worker that peering runs ([`serve`]).
//!
//! Construction order breaks the cycle between the gateway and peering: [`channel`] makes the
//! handle and the command receiver, the gateway is opened with the handle, and peering is
//! started with the gateway and the receiver. Without peering, commands fail with a clear
//! error.

use std::sync::Arc;

use std::collections::BTreeMap;

use ruma::{OwnedRoomId, OwnedServerName, OwnedUserId, RoomAliasId, RoomId, ServerName, UserId};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use super::{
    handshake::{self, profile_json},
    wire::Body,
    Peer,
};
use crate::{
    error::{ApiError, ApiResult},
    service::rooms::remote::{BoxFuture, Remote, RemoteFile},
};

/// What the services ask of other gateways.
enum Command {
    Membership {
        room: OwnedRoomId,
        via: Vec<OwnedServerName>,
        user: OwnedUserId,
        membership: &'static str,
        done: oneshot::Sender<ApiResult<()>>,
    },
    Alias {
        alias: ruma::OwnedRoomAliasId,
        done: oneshot::Sender<ApiResult<(OwnedRoomId, Vec<OwnedServerName>)>>,
    },
    Profile {
        user: OwnedUserId,
        done: oneshot::Sender<ApiResult<Value>>,
    },
    Backfill {
        room: OwnedRoomId,
        done: oneshot::Sender<ApiResult<usize>>,
    },
    Media {
        server: OwnedServerName,
        media_id: String,
        done: oneshot::Sender<ApiResult<RemoteFile>>,
    },
    /// Whether the outbound sender passed a stream position.
    SentPast {
        pos: u64,
        done: oneshot::Sender<ApiResult<bool>>,
    },
    /// A request whose answer is returned as JSON (key queries and claims).
    Ask {
        server: OwnedServerName,
        body: Body,
        done: oneshot::Sender<ApiResult<Value>>,
    },
}

/// The receiving end of the services' commands (given to [`super::spawn`]).
pub struct Commands(mpsc::Receiver<Command>);

/// The services' handle on peering (implements `service::rooms::remote::Remote`).
#[derive(Clone)]
pub struct RemoteHandle(mpsc::Sender<Command>);

/// A handle for the gateway and the receiver for peering.
pub fn channel() -> (RemoteHandle, Commands) {
    let (tx, rx) = mpsc::channel(64);
    (RemoteHandle(tx), Commands(rx))
}

fn unreachable_peering() -> ApiError {
    ApiError::not_found("Peering is not running: other gateways cannot be reached")
}

impl RemoteHandle {
    async fn call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<ApiResult<T>>) -> Command,
    ) -> ApiResult<T> {
        let (done, answer) = oneshot::channel();
        self.0
            .send(make(done))
            .await
            .map_err(|_| unreachable_peering())?;
        answer.await.map_err(|_| unreachable_peering())?
    }
}

impl Remote for RemoteHandle {
    fn join<'a>(
        &'a self,
        room: &'a RoomId,
        via: Vec<OwnedServerName>,
        user: &'a UserId,
    ) -> BoxFuture<'a, ApiResult<()>> {
        Box::pin(self.call(move |done| Command::Membership {
            room: room.to_owned(),
            via,
            user: user.to_owned(),
            membership: "join",
            done,
        }))
    }

    fn leave<'a>(
        &'a self,
        room: &'a RoomId,
        via: Vec<OwnedServerName>,
        user: &'a UserId,
    ) -> BoxFuture<'a, ApiResult<()>> {
        Box::pin(self.call(move |done| Command::Membership {
            room: room.to_owned(),
            via,
            user: user.to_owned(),
            membership: "leave",
            done,
        }))
    }

    fn sent_past(&self, pos: u64) -> BoxFuture<'_, ApiResult<bool>> {
        Box::pin(self.call(move |done| Command::SentPast { pos, done }))
    }

    fn resolve_alias<'a>(
        &'a self,
        alias: &'a RoomAliasId,
    ) -> BoxFuture<'a, ApiResult<(OwnedRoomId, Vec<OwnedServerName>)>> {
        Box::pin(self.call(move |done| Command::Alias {
            alias: alias.to_owned(),
            done,
        }))
    }

    fn backfill<'a>(&'a self, room: &'a RoomId) -> BoxFuture<'a, ApiResult<usize>> {
        Box::pin(self.call(move |done| Command::Backfill {
            room: room.to_owned(),
            done,
        }))
    }

    fn media<'a>(
        &'a self,
        server: &'a ServerName,
        media_id: &'a str,
    ) -> BoxFuture<'a, ApiResult<RemoteFile>> {
        Box::pin(self.call(move |done| Command::Media {
            server: server.to_owned(),
            media_id: media_id.to_owned(),
            done,
        }))
    }

    fn profile<'a>(&'a self, user: &'a UserId) -> BoxFuture<'a, ApiResult<Value>> {
        Box::pin(self.call(move |done| Command::Profile {
            user: user.to_owned(),
            done,
        }))
    }

    fn query_keys<'a>(
        &'a self,
        server: &'a ServerName,
        wanted: BTreeMap<OwnedUserId, Vec<String>>,
    ) -> BoxFuture<'a, ApiResult<Value>> {
        Box::pin(self.call(move |done| Command::Ask {
            server: server.to_owned(),
            body: Body::QueryKeys {
                device_keys: wanted,
            },
            done,
        }))
    }

    fn claim_keys<'a>(
        &'a self,
        server: &'a ServerName,
        wanted: BTreeMap<OwnedUserId, BTreeMap<String, String>>,
    ) -> BoxFuture<'a, ApiResult<Value>> {
        Box::pin(self.call(move |done| Command::Ask {
            server: server.to_owned(),
            body: Body::ClaimKeys {
                one_time_keys: wanted,
            },
            done,
        }))
    }
}

/// Carries out the services' commands, each on its own task.
pub async fn serve(peer: Arc<Peer>, mut commands: Commands) {
    while let Some(command) = commands.0.recv().await {
        let peer = peer.clone();
        tokio::spawn(async move { execute(&peer, command).await });
    }
}

async fn execute(peer: &Peer, command: Command) {
    match command {
        Command::Membership {
            room,
            via,
            user,
            membership,
            done,
        } => {
            let result = handshake::remote_membership(peer, &room, &via, &user, membership).await;
            let _ = done.send(result);
        }
        Command::Alias { alias, done } => {
            let result = match peer
                .ask(
                    alias.server_name(),
                    Body::QueryAlias {
                        alias: alias.clone(),
                    },
                )
                .await
            {
                Ok(Body::Alias { room_id, servers }) => Ok((room_id, servers)),
                Ok(_) => Err(ApiError::not_found("Unknown room alias")),
                Err(e) => Err(ApiError::not_found(format!("Unknown room alias: {e}"))),
            };
            let _ = done.send(result);
        }
        Command::Ask { server, body, done } => {
            let result = match peer.ask(&server, body).await {
                Ok(Body::Keys { body } | Body::Claimed { body }) => Ok(body),
                Ok(_) => Err(ApiError::not_found("The gateway answered something else")),
                Err(e) => Err(ApiError::not_found(format!("{server}: {e}"))),
            };
            let _ = done.send(result);
        }
        Command::Backfill { room, done } => {
            let _ = done.send(super::backfill::fetch(peer, &room).await);
        }
        Command::SentPast { pos, done } => {
            let _ = done.send(super::outbound::sent_up_to(&peer.gw.db).map(|c| c >= pos));
        }
        Command::Media {
            server,
            media_id,
            done,
        } => {
            let _ = done.send(super::media::fetch(peer, &server, &media_id).await);
        }
        Command::Profile { user, done } => {
            let result = match peer
                .ask(
                    user.server_name(),
                    Body::QueryProfile {
                        user_id: user.clone(),
                    },
                )
                .await
            {
                Ok(body) => profile_json(body),
                Err(e) => Err(ApiError::not_found(format!("Profile not found: {e}"))),
            };
            let _ = done.send(result);
        }
    }
}
