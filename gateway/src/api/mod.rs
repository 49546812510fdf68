//! The client-server API: routes, extractors and handlers.

mod account;
mod account_data;
mod admin;
mod appservice;
mod backup;
mod devices;
#[cfg(test)]
pub(crate) mod e2ee_testing;
mod extract;
mod filter;
#[cfg(test)]
mod fuzz_tests;
#[cfg(test)]
mod hardening_tests;
mod keys;
mod media;
mod message;
mod misc;
mod presence;
mod profile;
mod push;
mod relations;
mod rooms;
mod search;
mod sliding_sync;
mod sync;
mod to_device;
mod user_directory;
mod versions;

use std::sync::Arc;

use axum::{
    extract::DefaultBodyLimit,
    handler::Handler,
    routing::{on, MethodFilter},
    Router,
};
use ruma::api::{path_builder::PathBuilder, IncomingRequest};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{Any, CorsLayer};

pub use extract::{access_token, authenticate, Caller, Ruma, RumaResponse, RumaResult};

use crate::{error::ApiError, service::Gateway};

/// Registers `handler` on every path (r0, v3, unstable, ...) of the ruma endpoint `Req`.
pub(crate) fn add<Req, H, T>(router: Router<Arc<Gateway>>, handler: H) -> Router<Arc<Gateway>>
where
    Req: IncomingRequest,
    H: Handler<T, Arc<Gateway>>,
    T: 'static,
{
    let filter = MethodFilter::try_from(Req::METHOD).expect("ruma endpoints use standard methods");
    let mut router = router;
    for path in Req::PATH_BUILDER.all_paths() {
        #[cfg(test)]
        fuzz_tests::record_route(Req::METHOD, path);
        router = router.route(path, on(filter, handler.clone()));
    }
    router
}

async fn unrecognized() -> ApiError {
    ApiError::unrecognized("Unrecognized request")
}

/// A handler that panicked (a bug, never input's fault by design) still gets a Matrix error
/// body instead of a dropped connection; the panic itself is logged by the panic hook.
fn panicked(_: Box<dyn std::any::Any + Send + 'static>) -> axum::response::Response {
    use axum::response::IntoResponse;
    crate::error::ApiError::new(
        http::StatusCode::INTERNAL_SERVER_ERROR,
        "M_UNKNOWN",
        "Internal error",
    )
    .into_response()
}

async fn method_not_allowed() -> ApiError {
    ApiError::method_not_allowed("Method not allowed on this endpoint")
}

/// The whole client-server API of `gw`.
pub fn router(gw: Arc<Gateway>) -> Router {
    let max_body = gw.config.max_request_bytes;
    let mut r = Router::new();
    r = versions::routes(r);
    r = account::routes(r);
    r = rooms::routes(r);
    r = message::routes(r);
    r = sync::routes(r);
    r = sliding_sync::routes(r);
    r = keys::routes(r);
    r = to_device::routes(r);
    r = backup::routes(r);
    r = devices::routes(r);
    r = media::routes(r);
    r = profile::routes(r);
    r = user_directory::routes(r);
    r = account_data::routes(r);
    r = filter::routes(r);
    r = push::routes(r);
    r = relations::routes(r);
    r = search::routes(r);
    r = appservice::routes(r);
    r = presence::routes(r);
    r = misc::routes(r);
    r = admin::routes(r);
    r.fallback(unrecognized)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(CatchPanicLayer::custom(panicked))
        .layer(
            CorsLayer::new()
                .allow_origin(Any)
                .allow_methods(Any)
                .allow_headers(Any)
                .max_age(std::time::Duration::from_secs(86400)),
        )
        .with_state(gw)
}
