//! Registration, login, logout, whoami, password changes and deactivation.

use std::sync::Arc;

use axum::{extract::State, Router};
use ruma::{
    api::client::{
        account::{
            change_password::v3 as change_password,
            check_registration_token_validity::v1 as token_validity, deactivate::v3 as deactivate,
            get_username_availability::v3 as availability, register::v3 as register,
            whoami::v3 as whoami, ThirdPartyIdRemovalStatus,
        },
        session::{
            get_login_types::v3 as login_types, login::v3 as login, logout::v3 as logout,
            logout_all::v3 as logout_all,
        },
        uiaa::UserIdentifier,
    },
    OwnedUserId, UserId,
};
use serde_json::Value;

use super::{add, Ruma, RumaResponse, RumaResult};
use crate::{
    config::RegistrationMode,
    error::{ApiError, ApiResult},
    service::{uiaa, users::Users, Gateway},
};

/// Checks the registration policy and the UIA stage of a `/register` body.
async fn registration_allowed(gw: &Gateway, json: Option<&Value>) -> ApiResult<Option<String>> {
    let auth = uiaa::auth_of(json);
    let session = auth.and_then(|a| a.get("session")).and_then(Value::as_str);
    let kind = auth.and_then(|a| a.get("type")).and_then(Value::as_str);
    match gw.config.registration {
        RegistrationMode::Closed => Err(ApiError::forbidden("Registration is disabled")),
        RegistrationMode::Open => match kind {
            Some("m.login.dummy") => Ok(None),
            _ => Err(uiaa::challenge(&["m.login.dummy"], session, None)),
        },
        RegistrationMode::Token => match kind {
            Some("m.login.registration_token") => {
                let token = auth
                    .and_then(|a| a.get("token"))
                    .and_then(Value::as_str)
                    .unwrap_or("");
                if gw.users.registration_token_valid(token)? {
                    Ok(Some(token.to_owned()))
                } else {
                    Err(uiaa::challenge(
                        &["m.login.registration_token"],
                        session,
                        Some("Invalid registration token"),
                    ))
                }
            }
            _ => Err(uiaa::challenge(
                &["m.login.registration_token"],
                session,
                None,
            )),
        },
    }
}

async fn register(
    State(gw): State<Arc<Gateway>>,
    req: Ruma<register::Request>,
) -> RumaResult<register::Response> {
    gw.auth_limiter.check(req.ip)?;
    let body = &req.body;
    if body.kind == ruma::api::client::account::register::RegistrationKind::Guest {
        return Err(ApiError::forbidden("Guest access is disabled"));
    }
    let localpart = match &body.username {
        Some(name) => name.to_lowercase(),
        None => format!(
            "u{}",
            crate::service::users::random_string(10).to_lowercase()
        ),
    };
    let user_id = Users::validate_localpart(&localpart, gw.server_name())?;
    if body.login_type == Some(ruma::api::client::account::register::LoginType::ApplicationService)
    {
        return register_for_appservice(&gw, &req, user_id).await;
    }
    if gw.appservices.exclusive_owner(&user_id, None).is_some() {
        return Err(ApiError::exclusive(
            "This user id is reserved by an application service",
        ));
    }
    if gw.users.exists(&user_id)? {
        return Err(ApiError::user_in_use("User ID already taken"));
    }
    let password = body.password.as_deref().unwrap_or_default();
    uiaa::check_new_password(&gw, password)?;
    let token = registration_allowed(&gw, req.json.as_ref()).await?;
    gw.users.create(&user_id, Some(password)).await?;
    if let Some(token) = token {
        gw.users.use_registration_token(&token).await?;
    }
    let mut res = register::Response::new(user_id.clone());
    if !body.inhibit_login {
        let (device_id, access_token) = gw
            .users
            .create_device(
                &user_id,
                body.device_id.clone(),
                body.initial_device_display_name.clone(),
                req.ip.map(|i| i.to_string()),
            )
            .await?;
        res.device_id = Some(device_id);
        res.access_token = Some(access_token);
    }
    tracing::info!(user = %user_id, "registered");
    Ok(RumaResponse(res))
}

/// `m.login.application_service` registration: a service creates a user of its namespace
/// (no password, no user-interactive auth) with its `as_token`.
async fn register_for_appservice(
    gw: &Gateway,
    req: &Ruma<register::Request>,
    user_id: ruma::OwnedUserId,
) -> RumaResult<register::Response> {
    let caller = req
        .caller
        .as_ref()
        .ok_or_else(|| ApiError::missing_token("m.login.application_service needs the as_token"))?;
    let service = caller
        .appservice
        .as_deref()
        .and_then(|id| gw.appservices.by_id(id))
        .ok_or_else(|| {
            ApiError::forbidden("Only an application service may use this login type")
        })?;
    if !service.owns_user(&user_id)
        || gw
            .appservices
            .exclusive_owner(&user_id, Some(service.id()))
            .is_some()
    {
        return Err(ApiError::exclusive(
            "This user id is not in the application service's namespace",
        ));
    }
    if gw.users.exists(&user_id)? {
        return Err(ApiError::user_in_use("User ID already taken"));
    }
    gw.users.create(&user_id, None).await?;
    let mut res = register::Response::new(user_id.clone());
    if !req.body.inhibit_login {
        let (device_id, access_token) = gw
            .users
            .create_device(
                &user_id,
                req.body.device_id.clone(),
                req.body.initial_device_display_name.clone(),
                None,
            )
            .await?;
        res.device_id = Some(device_id);
        res.access_token = Some(access_token);
    }
    tracing::info!(user = %user_id, appservice = service.id(), "registered by an application service");
    Ok(RumaResponse(res))
}

async fn username_available(
    State(gw): State<Arc<Gateway>>,
    req: Ruma<availability::Request>,
) -> RumaResult<availability::Response> {
    gw.auth_limiter.check(req.ip)?;
    let user_id = Users::validate_localpart(&req.body.username.to_lowercase(), gw.server_name())?;
    if gw.appservices.exclusive_owner(&user_id, None).is_some() {
        return Err(ApiError::exclusive(
            "This user id is reserved by an application service",
        ));
    }
    if gw.users.exists(&user_id)? {
        return Err(ApiError::user_in_use("User ID already taken"));
    }
    Ok(RumaResponse(availability::Response::new(true)))
}

async fn registration_token_validity(
    State(gw): State<Arc<Gateway>>,
    req: Ruma<token_validity::Request>,
) -> RumaResult<token_validity::Response> {
    gw.auth_limiter.check(req.ip)?;
    if gw.config.registration != RegistrationMode::Token {
        return Err(ApiError::forbidden(
            "Registration tokens are not used on this server",
        ));
    }
    let valid = gw.users.registration_token_valid(&req.body.token)?;
    Ok(RumaResponse(token_validity::Response::new(valid)))
}

async fn get_login_types(_req: Ruma<login_types::Request>) -> RumaResult<login_types::Response> {
    Ok(RumaResponse(login_types::Response::new(vec![
        login_types::LoginType::Password(Default::default()),
    ])))
}

/// Resolves the user named in a login identifier.
fn login_user(gw: &Gateway, name: &str) -> ApiResult<OwnedUserId> {
    if name.starts_with('@') {
        let id = UserId::parse(name).map_err(|_| ApiError::invalid_username("Invalid user ID"))?;
        if id.server_name() != gw.server_name() {
            return Err(ApiError::forbidden("Invalid username or password"));
        }
        Ok(id)
    } else {
        UserId::parse(format!("@{}:{}", name.to_lowercase(), gw.server_name()))
            .map_err(|_| ApiError::forbidden("Invalid username or password"))
    }
}

async fn login(
    State(gw): State<Arc<Gateway>>,
    req: Ruma<login::Request>,
) -> RumaResult<login::Response> {
    gw.auth_limiter.check(req.ip)?;
    if let login::LoginInfo::ApplicationService(info) = &req.body.login_info {
        return login_for_appservice(&gw, &req, info).await;
    }
    let login::LoginInfo::Password(info) = &req.body.login_info else {
        return Err(ApiError::new(
            http::StatusCode::BAD_REQUEST,
            "M_UNKNOWN",
            "Only m.login.password is supported",
        ));
    };
    #[allow(deprecated)] // the legacy `user` field is still sent by old clients
    let name = match (&info.identifier, &info.user) {
        (Some(UserIdentifier::Matrix(m)), _) => m.user.clone(),
        (None, Some(user)) => user.clone(),
        _ => return Err(ApiError::forbidden("Unsupported identifier type")),
    };
    let user_id = login_user(&gw, &name)?;
    // The address was counted above; the account is counted here.
    if !uiaa::verify_password(&gw, &user_id, &info.password, None).await? {
        return Err(ApiError::forbidden("Invalid username or password"));
    }
    let (device_id, access_token) = gw
        .users
        .create_device(
            &user_id,
            req.body.device_id.clone(),
            req.body.initial_device_display_name.clone(),
            req.ip.map(|i| i.to_string()),
        )
        .await?;
    Ok(RumaResponse(login::Response::new(
        user_id,
        access_token,
        device_id,
    )))
}

/// `m.login.application_service`: a service logs one of its users in (a new device) with its
/// `as_token`.
async fn login_for_appservice(
    gw: &Gateway,
    req: &Ruma<login::Request>,
    info: &login::ApplicationService,
) -> RumaResult<login::Response> {
    let caller = req
        .caller
        .as_ref()
        .ok_or_else(|| ApiError::missing_token("m.login.application_service needs the as_token"))?;
    let service = caller
        .appservice
        .as_deref()
        .and_then(|id| gw.appservices.by_id(id))
        .ok_or_else(|| {
            ApiError::forbidden("Only an application service may use this login type")
        })?;
    #[allow(deprecated)] // the legacy `user` field is still sent by old clients
    let name = match (&info.identifier, &info.user) {
        (Some(UserIdentifier::Matrix(m)), _) => m.user.clone(),
        (None, Some(user)) => user.clone(),
        _ => return Err(ApiError::forbidden("Unsupported identifier type")),
    };
    let user_id = login_user(gw, &name)?;
    if !service.owns_user(&user_id) {
        return Err(ApiError::forbidden(
            "This user is not in the application service's namespace",
        ));
    }
    let (device_id, access_token) = gw
        .users
        .create_device(
            &user_id,
            req.body.device_id.clone(),
            req.body.initial_device_display_name.clone(),
            None,
        )
        .await?;
    Ok(RumaResponse(login::Response::new(
        user_id,
        access_token,
        device_id,
    )))
}

async fn logout(
    State(gw): State<Arc<Gateway>>,
    req: Ruma<logout::Request>,
) -> RumaResult<logout::Response> {
    let caller = req.caller()?;
    crate::service::keys::remove_device(&gw, &caller.user_id, caller.device_id.as_str()).await?;
    Ok(RumaResponse(logout::Response::new()))
}

async fn logout_all(
    State(gw): State<Arc<Gateway>>,
    req: Ruma<logout_all::Request>,
) -> RumaResult<logout_all::Response> {
    let caller = req.caller()?;
    for (device_id, _) in gw.users.devices(&caller.user_id)? {
        crate::service::keys::remove_device(&gw, &caller.user_id, device_id.as_str()).await?;
    }
    Ok(RumaResponse(logout_all::Response::new()))
}

async fn whoami(
    State(_gw): State<Arc<Gateway>>,
    req: Ruma<whoami::Request>,
) -> RumaResult<whoami::Response> {
    let caller = req.caller()?;
    let mut res = whoami::Response::new(caller.user_id.clone(), false);
    res.device_id = Some(caller.device_id.clone());
    Ok(RumaResponse(res))
}

async fn change_password(
    State(gw): State<Arc<Gateway>>,
    req: Ruma<change_password::Request>,
) -> RumaResult<change_password::Response> {
    let caller = req.caller()?;
    uiaa::check_new_password(&gw, &req.body.new_password)?;
    uiaa::require_password(&gw, &caller.user_id, req.ip, req.json.as_ref()).await?;
    gw.users
        .set_password(&caller.user_id, &req.body.new_password)
        .await?;
    if req.body.logout_devices {
        for (device_id, _) in gw.users.devices(&caller.user_id)? {
            if device_id != caller.device_id {
                crate::service::keys::remove_device(&gw, &caller.user_id, device_id.as_str())
                    .await?;
            }
        }
    }
    Ok(RumaResponse(change_password::Response::new()))
}

async fn deactivate(
    State(gw): State<Arc<Gateway>>,
    req: Ruma<deactivate::Request>,
) -> RumaResult<deactivate::Response> {
    let caller = req.caller()?.clone();
    uiaa::require_password(&gw, &caller.user_id, req.ip, req.json.as_ref()).await?;
    crate::service::admin::deactivate::deactivate(&gw, &caller.user_id).await?;
    Ok(RumaResponse(deactivate::Response::new(
        ThirdPartyIdRemovalStatus::NoSupport,
    )))
}

pub(super) fn routes(r: Router<Arc<Gateway>>) -> Router<Arc<Gateway>> {
    let r = add::<register::Request, _, _>(r, register);
    let r = add::<availability::Request, _, _>(r, username_available);
    let r = add::<token_validity::Request, _, _>(r, registration_token_validity);
    let r = add::<login_types::Request, _, _>(r, get_login_types);
    let r = add::<login::Request, _, _>(r, login);
    let r = add::<logout::Request, _, _>(r, logout);
    let r = add::<logout_all::Request, _, _>(r, logout_all);
    let r = add::<whoami::Request, _, _>(r, whoami);
    let r = add::<change_password::Request, _, _>(r, change_password);
    add::<deactivate::Request, _, _>(r, deactivate)
}
