//! Accounts, devices, access tokens, profiles and registration tokens.

use argon2::{
    password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString},
    Argon2,
};
use rand::{distributions::Alphanumeric, rngs::OsRng, Rng};
use ruma::{OwnedDeviceId, OwnedUserId, ServerName, UserId};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use storage::{key, Batch, Db, Table};

use crate::error::{ApiError, ApiResult};

/// A stored account.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserRecord {
    /// Argon2 PHC string; `None` for accounts that cannot log in with a password.
    pub password_hash: Option<String>,
    /// Display name.
    pub displayname: Option<String>,
    /// Avatar `mxc://` URI.
    pub avatar_url: Option<String>,
    /// Milliseconds since the epoch at creation.
    pub created_ts: u64,
    /// Whether the account is deactivated.
    #[serde(default)]
    pub deactivated: bool,
    /// Whether the account is a server admin (may use the `/_synapse/admin` API). Records
    /// written before the flag existed read as `false`: no migration is needed.
    #[serde(default)]
    pub admin: bool,
}

/// A device of a user: one login session.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeviceRecord {
    /// Human-readable name.
    pub display_name: Option<String>,
    /// Hash of the device's current access token.
    pub token_hash: String,
    /// Last time the device was seen (ms since epoch).
    pub last_seen_ts: u64,
    /// Last address the device was seen from.
    pub last_seen_ip: Option<String>,
}

/// What an access token stands for.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TokenRecord {
    /// The user.
    pub user_id: OwnedUserId,
    /// The device.
    pub device_id: OwnedDeviceId,
}

/// A registration token made by an operator.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RegistrationToken {
    /// How many registrations it allows (`None`: unlimited).
    pub uses_allowed: Option<u32>,
    /// How many it was used for.
    pub completed: u32,
    /// Expiry (ms since epoch).
    pub expiry_ts: Option<u64>,
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A random string of `len` alphanumerics from the OS RNG.
pub fn random_string(len: usize) -> String {
    OsRng
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

fn token_hash(token: &str) -> String {
    data_encoding::HEXLOWER.encode(&Sha256::digest(token.as_bytes()))
}

/// Hashes a password with Argon2id (CPU-heavy: call from a blocking task).
pub fn hash_password(password: &str) -> ApiResult<String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| ApiError::internal(format!("password hashing failed: {e}")))
}

/// Checks a password against an Argon2 PHC string (CPU-heavy).
pub fn verify_password(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

/// The account store.
pub struct Users {
    db: Db,
    users: Table<UserRecord>,
    devices: Table<DeviceRecord>,
    tokens: Table<TokenRecord>,
    reg_tokens: Table<RegistrationToken>,
}

impl Users {
    /// Opens the account tables.
    pub fn new(db: Db) -> Self {
        Self {
            db,
            users: Table::new("users"),
            devices: Table::new("devices"),
            tokens: Table::new("tokens"),
            reg_tokens: Table::new("registration_tokens"),
        }
    }

    /// Checks a requested localpart and builds the user ID.
    pub fn validate_localpart(localpart: &str, server: &ServerName) -> ApiResult<OwnedUserId> {
        let ok = !localpart.is_empty()
            && localpart.len() <= 200
            && localpart.bytes().all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'=' | b'-' | b'/' | b'+'));
        if !ok {
            return Err(ApiError::invalid_username(
                "User ID may only contain a-z, 0-9, . _ = - / +",
            ));
        }
        UserId::parse(format!("@{localpart}:{server}"))
            .map_err(|e| ApiError::invalid_username(e.to_string()))
    }

    /// The account, if it exists.
    pub fn get(&self, user_id: &UserId) -> ApiResult<Option<UserRecord>> {
        Ok(self.users.get(&self.db, user_id.as_bytes())?)
    }

    /// Whether the account exists.
    pub fn exists(&self, user_id: &UserId) -> ApiResult<bool> {
        Ok(self.get(user_id)?.is_some())
    }

    /// How many accounts exist, deactivated ones included (walks the table: for metrics).
    pub fn count(&self) -> ApiResult<u64> {
        Ok(self.users.count(&self.db)?)
    }

    /// Every account (for the user directory; gateways are small).
    pub fn all(&self) -> ApiResult<Vec<(OwnedUserId, UserRecord)>> {
        Ok(self
            .users
            .scan_prefix(&self.db, b"")?
            .into_iter()
            .filter_map(|(k, v)| {
                let s = String::from_utf8(k).ok()?;
                Some((UserId::parse(s).ok()?, v))
            })
            .collect())
    }

    /// Creates an account; fails with M_USER_IN_USE if it exists.
    pub async fn create(&self, user_id: &UserId, password: Option<&str>) -> ApiResult<()> {
        if self.exists(user_id)? {
            return Err(ApiError::user_in_use("User ID already taken"));
        }
        let password_hash = match password {
            Some(p) => {
                let p = p.to_owned();
                Some(
                    tokio::task::spawn_blocking(move || hash_password(&p))
                        .await
                        .map_err(|e| ApiError::internal(e.to_string()))??,
                )
            }
            None => None,
        };
        let record = UserRecord {
            password_hash,
            displayname: Some(user_id.localpart().to_owned()),
            avatar_url: None,
            created_ts: now_ms(),
            deactivated: false,
            admin: false,
        };
        let mut b = Batch::new();
        self.users.put(&mut b, user_id.as_bytes(), &record)?;
        self.db.apply(b)?;
        self.db.flush().await?;
        Ok(())
    }

    /// Saves a changed account record.
    pub async fn save(&self, user_id: &UserId, record: &UserRecord) -> ApiResult<()> {
        let mut b = Batch::new();
        self.users.put(&mut b, user_id.as_bytes(), record)?;
        self.db.apply(b)?;
        self.db.flush().await?;
        Ok(())
    }

    /// Sets a new password.
    pub async fn set_password(&self, user_id: &UserId, password: &str) -> ApiResult<()> {
        let mut record = self
            .get(user_id)?
            .ok_or_else(|| ApiError::not_found("Unknown user"))?;
        let p = password.to_owned();
        record.password_hash = Some(
            tokio::task::spawn_blocking(move || hash_password(&p))
                .await
                .map_err(|e| ApiError::internal(e.to_string()))??,
        );
        self.save(user_id, &record).await
    }

    /// Whether `password` is the user's password (false for unknown or deactivated users).
    pub async fn check_password(&self, user_id: &UserId, password: &str) -> ApiResult<bool> {
        let Some(record) = self.get(user_id)? else {
            return Ok(false);
        };
        if record.deactivated {
            return Ok(false);
        }
        let Some(phc) = record.password_hash else {
            return Ok(false);
        };
        let p = password.to_owned();
        tokio::task::spawn_blocking(move || verify_password(&p, &phc))
            .await
            .map_err(|e| ApiError::internal(e.to_string()))
    }

    /// Creates (or replaces the token of) a device and returns its new access token.
    pub async fn create_device(
        &self,
        user_id: &UserId,
        device_id: Option<OwnedDeviceId>,
        display_name: Option<String>,
        ip: Option<String>,
    ) -> ApiResult<(OwnedDeviceId, String)> {
        super::limits::check_device_name(display_name.as_deref())?;
        let device_id = device_id.unwrap_or_else(|| random_string(10).to_uppercase().into());
        let token = format!("mgt_{}", random_string(40));
        let hash = token_hash(&token);
        let dkey = key(&[user_id.as_bytes(), device_id.as_bytes()]);
        let mut b = Batch::new();
        let existing = self.devices.get(&self.db, &dkey)?;
        if let Some(old) = &existing {
            self.tokens.delete(&mut b, old.token_hash.as_bytes());
        }
        let record = DeviceRecord {
            display_name: display_name.or(existing.and_then(|d| d.display_name)),
            token_hash: hash.clone(),
            last_seen_ts: now_ms(),
            last_seen_ip: ip,
        };
        self.devices.put(&mut b, &dkey, &record)?;
        self.tokens.put(
            &mut b,
            hash.as_bytes(),
            &TokenRecord {
                user_id: user_id.to_owned(),
                device_id: device_id.clone(),
            },
        )?;
        self.db.apply(b)?;
        self.db.flush().await?;
        Ok((device_id, token))
    }

    /// Resolves an access token.
    pub fn resolve_token(&self, token: &str) -> ApiResult<Option<TokenRecord>> {
        Ok(self.tokens.get(&self.db, token_hash(token).as_bytes())?)
    }

    /// One device.
    pub fn device(&self, user_id: &UserId, device_id: &str) -> ApiResult<Option<DeviceRecord>> {
        Ok(self
            .devices
            .get(&self.db, &key(&[user_id.as_bytes(), device_id.as_bytes()]))?)
    }

    /// All devices of a user.
    pub fn devices(&self, user_id: &UserId) -> ApiResult<Vec<(OwnedDeviceId, DeviceRecord)>> {
        let mut prefix = user_id.as_bytes().to_vec();
        prefix.push(0xff);
        Ok(self
            .devices
            .scan_prefix(&self.db, &prefix)?
            .into_iter()
            .filter_map(|(k, v)| {
                let id = String::from_utf8(k[prefix.len()..].to_vec()).ok()?;
                Some((OwnedDeviceId::from(id), v))
            })
            .collect())
    }

    /// Renames a device.
    pub async fn rename_device(
        &self,
        user_id: &UserId,
        device_id: &str,
        name: Option<String>,
    ) -> ApiResult<()> {
        super::limits::check_device_name(name.as_deref())?;
        let dkey = key(&[user_id.as_bytes(), device_id.as_bytes()]);
        let mut record = self
            .devices
            .get(&self.db, &dkey)?
            .ok_or_else(|| ApiError::not_found("Unknown device"))?;
        record.display_name = name;
        let mut b = Batch::new();
        self.devices.put(&mut b, &dkey, &record)?;
        self.db.apply(b)?;
        self.db.flush().await?;
        Ok(())
    }

    /// Deletes a device and invalidates its token. Returns whether it existed.
    pub async fn delete_device(&self, user_id: &UserId, device_id: &str) -> ApiResult<bool> {
        let dkey = key(&[user_id.as_bytes(), device_id.as_bytes()]);
        let Some(record) = self.devices.get(&self.db, &dkey)? else {
            return Ok(false);
        };
        let mut b = Batch::new();
        self.tokens.delete(&mut b, record.token_hash.as_bytes());
        self.devices.delete(&mut b, &dkey);
        self.db.apply(b)?;
        self.db.flush().await?;
        Ok(true)
    }

    /// Every registration token, in token order.
    pub fn registration_tokens(&self) -> ApiResult<Vec<(String, RegistrationToken)>> {
        Ok(self
            .reg_tokens
            .scan_prefix(&self.db, b"")?
            .into_iter()
            .filter_map(|(k, v)| Some((String::from_utf8(k).ok()?, v)))
            .collect())
    }

    /// One registration token.
    pub fn registration_token(&self, token: &str) -> ApiResult<Option<RegistrationToken>> {
        Ok(self.reg_tokens.get(&self.db, token.as_bytes())?)
    }

    /// Stores (creates or replaces) a registration token.
    pub async fn put_registration_token(
        &self,
        token: &str,
        record: &RegistrationToken,
    ) -> ApiResult<()> {
        let mut b = Batch::new();
        self.reg_tokens.put(&mut b, token.as_bytes(), record)?;
        self.db.apply(b)?;
        self.db.flush().await?;
        Ok(())
    }

    /// Deletes a registration token; whether it existed.
    pub async fn delete_registration_token(&self, token: &str) -> ApiResult<bool> {
        if self.registration_token(token)?.is_none() {
            return Ok(false);
        }
        let mut b = Batch::new();
        self.reg_tokens.delete(&mut b, token.as_bytes());
        self.db.apply(b)?;
        self.db.flush().await?;
        Ok(true)
    }

    /// Creates a registration token.
    pub async fn create_registration_token(
        &self,
        uses_allowed: Option<u32>,
        expiry_ts: Option<u64>,
    ) -> ApiResult<String> {
        let token = random_string(24);
        let mut b = Batch::new();
        self.reg_tokens.put(
            &mut b,
            token.as_bytes(),
            &RegistrationToken {
                uses_allowed,
                completed: 0,
                expiry_ts,
            },
        )?;
        self.db.apply(b)?;
        self.db.flush().await?;
        Ok(token)
    }

    /// Whether a registration token is currently usable.
    pub fn registration_token_valid(&self, token: &str) -> ApiResult<bool> {
        Ok(match self.reg_tokens.get(&self.db, token.as_bytes())? {
            Some(t) => {
                t.uses_allowed.is_none_or(|n| t.completed < n)
                    && t.expiry_ts.is_none_or(|e| e > now_ms())
            }
            None => false,
        })
    }

    /// Counts one use of a registration token.
    pub async fn use_registration_token(&self, token: &str) -> ApiResult<()> {
        if let Some(mut t) = self.reg_tokens.get(&self.db, token.as_bytes())? {
            t.completed += 1;
            let mut b = Batch::new();
            self.reg_tokens.put(&mut b, token.as_bytes(), &t)?;
            self.db.apply(b)?;
            self.db.flush().await?;
        }
        Ok(())
    }
}
