//! The gateway's services: business logic over typed stores, shared by the API handlers.
//!
//! [`Gateway`] owns one instance of each service; handlers get it as axum state. Nothing here
//! is global: tests run several gateways in one process.

pub mod account_data;
pub mod admin;
pub mod appservice;
pub mod backup;
pub mod caller;
pub mod clock;
pub mod derived;
pub mod edus;
pub mod ephemeral;
pub mod feed;
pub mod filter;
pub mod history;
pub mod keys;
pub mod limits;
pub mod media;
pub mod presence;
pub mod push_eval;
pub mod push_target;
pub mod pusher;
pub mod ratelimit;
pub mod relations;
pub mod remote_media;
pub mod rooms;
pub mod search;
pub mod sliding_sync;
pub mod stream;
pub mod sync;
pub mod thumbnail;
pub mod to_device;
pub mod uiaa;
pub mod users;

use std::sync::Arc;

use storage::Db;

use crate::{config::GatewayConfig, identity::Identity};

/// Everything a running gateway holds.
pub struct Gateway {
    /// The configuration it was started with.
    pub config: GatewayConfig,
    /// Its signing key and server name.
    pub identity: Arc<Identity>,
    /// The database.
    pub db: Db,
    /// The global stream of syncable changes.
    pub stream: Arc<Stream>,
    /// Accounts and devices.
    pub users: users::Users,
    /// Rooms and events.
    pub rooms: rooms::Rooms,
    /// Typing notifications and receipts.
    pub ephemeral: Arc<ephemeral::Ephemeral>,
    /// Unread counts already evaluated by `/sync`.
    pub unread: sync::UnreadCache,
    /// Sliding sync connections (memory only).
    pub sliding: sliding_sync::Connections,
    /// Limits login, registration and password attempts per address.
    pub auth_limiter: ratelimit::RateLimiter,
    /// Limits password attempts per account (login and user-interactive auth).
    pub password_limiter: ratelimit::RateLimiter<ruma::OwnedUserId>,
    /// End-to-end encryption keys and device-list changes.
    pub keys: keys::Keys,
    /// To-device message inboxes.
    pub to_device: to_device::ToDevice,
    /// Server-side key backups.
    pub backup: backup::Backup,
    /// Account data, tags, push rules, filters and pushers.
    pub account_data: account_data::AccountData,
    /// Uploaded media.
    pub media: media::Media,
    /// Presence statuses (memory only).
    pub presence: presence::Presence,
    /// EDUs waiting for peering to send them.
    pub edus: edus::EduQueue,
    /// The relation index (edits, threads, references, reactions).
    pub relations: relations::Relations,
    /// Registered application services.
    pub appservices: appservice::AppServices,
    /// Room deletions running in this process (their statuses are stored).
    pub deletions: admin::deletions::Running,
    /// Other gateways, reached through peering (or [`rooms::remote::NoRemote`] alone).
    pub remote: Arc<dyn rooms::remote::Remote>,
}

pub use stream::Stream;

/// Failures while opening a gateway.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The identity key could not be loaded.
    #[error(transparent)]
    Identity(#[from] crate::identity::IdentityError),
    /// The database could not be opened.
    #[error("database in {dir}: {source}")]
    Storage {
        /// The data folder.
        dir: String,
        /// Why.
        source: storage::Error,
    },
    /// An application-service registration is not usable.
    #[error(transparent)]
    AppService(#[from] crate::config::ConfigError),
    /// A derived index (relations, search) could not be built from the stored rooms.
    #[error("database in {dir}: building an index failed: {message}")]
    Index {
        /// The data folder.
        dir: String,
        /// Why.
        message: String,
    },
}

impl Gateway {
    /// Opens the gateway's storage and identity as configured, on its own (no other gateways).
    pub fn open(config: GatewayConfig) -> Result<Arc<Self>, OpenError> {
        Self::open_with(config, Arc::new(rooms::remote::NoRemote))
    }

    /// Opens the gateway with `remote` as its way to other gateways.
    pub fn open_with(
        config: GatewayConfig,
        remote: Arc<dyn rooms::remote::Remote>,
    ) -> Result<Arc<Self>, OpenError> {
        let dir = config.data_dir.display().to_string();
        let storage_err = |source| OpenError::Storage {
            dir: dir.clone(),
            source,
        };
        let (db, identity) = if config.memory_only {
            (
                Db::memory().map_err(storage_err)?,
                Identity::generate(config.server_name.as_deref())?,
            )
        } else {
            let identity =
                Identity::load_or_create(&config.data_dir, config.server_name.as_deref())?;
            (
                Db::open(&config.data_dir.join("db")).map_err(storage_err)?,
                identity,
            )
        };
        let identity = Arc::new(identity);
        let appservices =
            appservice::AppServices::load(&config.appservices, identity.server_name())?;
        let stream = Arc::new(Stream::open(db.clone()).map_err(storage_err)?);
        let rooms = rooms::Rooms::new(db.clone(), identity.clone(), stream.clone());
        derived::rebuild_if_needed(&db, &rooms).map_err(|e| OpenError::Index {
            dir: dir.clone(),
            message: e.to_string(),
        })?;
        let relations = relations::Relations::new(db.clone());
        Ok(Arc::new(Self {
            users: users::Users::new(db.clone()),
            rooms,
            relations,
            appservices,
            ephemeral: Arc::new(ephemeral::Ephemeral::new(db.clone(), stream.clone())),
            keys: keys::Keys::new(db.clone(), stream.clone()),
            to_device: to_device::ToDevice::new(db.clone(), stream.clone()),
            backup: backup::Backup::new(db.clone()),
            account_data: account_data::AccountData::new(db.clone(), stream.clone()),
            media: media::Media::new(db.clone()),
            presence: presence::Presence::new(),
            unread: sync::UnreadCache::default(),
            sliding: sliding_sync::Connections::default(),
            auth_limiter: ratelimit::RateLimiter::new(
                config.auth_attempts_per_minute,
                std::time::Duration::from_secs(60),
            ),
            password_limiter: ratelimit::RateLimiter::new(
                config.auth_attempts_per_minute,
                std::time::Duration::from_secs(60),
            ),
            edus: edus::EduQueue::new(db.clone(), stream.clone()),
            deletions: admin::deletions::Running::default(),
            remote,
            config,
            identity,
            db,
            stream,
        }))
    }

    /// The server name.
    pub fn server_name(&self) -> &ruma::ServerName {
        self.identity.server_name()
    }
}
