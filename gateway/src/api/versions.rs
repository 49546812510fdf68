//! Discovery: `/versions`, `.well-known`, capabilities.

use std::{collections::BTreeMap, sync::Arc};

use axum::{extract::State, routing::get, Json, Router};
use ruma::api::client::discovery::{
    get_capabilities::v3 as capabilities, get_supported_versions as versions,
};
use serde_json::{json, Value};

use super::{add, Ruma, RumaResponse, RumaResult};
use crate::service::Gateway;

/// Spec versions advertised. v1.11 implies authenticated media, which the gateway serves.
pub const SPEC_VERSIONS: &[&str] = &[
    "r0.6.1", "v1.1", "v1.2", "v1.3", "v1.4", "v1.5", "v1.6", "v1.7", "v1.8", "v1.9", "v1.10",
    "v1.11", "v1.12",
];

async fn get_versions(_req: Ruma<versions::Request>) -> RumaResult<versions::Response> {
    let mut res = versions::Response::new(SPEC_VERSIONS.iter().map(|v| (*v).to_owned()).collect());
    res.unstable_features = BTreeMap::from([
        ("org.matrix.e2e_cross_signing".to_owned(), true),
        ("org.matrix.msc3916.stable".to_owned(), true),
        ("org.matrix.simplified_msc3575".to_owned(), true),
    ]);
    Ok(RumaResponse(res))
}

async fn well_known_client(State(gw): State<Arc<Gateway>>) -> Json<Value> {
    let base = format!("http://{}", gw.config.listen);
    Json(json!({ "m.homeserver": { "base_url": base } }))
}

async fn get_capabilities(
    State(_gw): State<Arc<Gateway>>,
    _req: Ruma<capabilities::Request>,
) -> RumaResult<capabilities::Response> {
    let caps: capabilities::Capabilities = serde_json::from_value(json!({
        "m.change_password": { "enabled": true },
        "m.room_versions": { "default": "11", "available": { "10": "stable", "11": "stable" } },
        "m.set_displayname": { "enabled": true },
        "m.set_avatar_url": { "enabled": true },
        "m.3pid_changes": { "enabled": false },
    }))
    .map_err(|e| crate::error::ApiError::internal(e.to_string()))?;
    Ok(RumaResponse(capabilities::Response::new(caps)))
}

pub(super) fn routes(r: Router<Arc<Gateway>>) -> Router<Arc<Gateway>> {
    let r = add::<versions::Request, _, _>(r, get_versions);
    let r = add::<capabilities::Request, _, _>(r, get_capabilities);
    r.route("/.well-known/matrix/client", get(well_known_client))
}
