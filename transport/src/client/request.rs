//! The caller's handle on a request.

use std::sync::Arc;

use tokio::sync::oneshot;
use tokio::time::Instant;

use super::engine::Engine;
use super::{ClientError, MsgId};

/// A sent request, durable in the outbox until [`RequestHandle::response`] returns. Dropping
/// the handle does not cancel the request: it stays in the outbox until its wait is over and
/// is re-issued if the client restarts before that.
pub struct RequestHandle {
    /// The request id (a re-issued request has a new one).
    pub id: MsgId,
    rx: oneshot::Receiver<Vec<u8>>,
    deadline: Instant,
    engine: Arc<Engine>,
}

impl std::fmt::Debug for RequestHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestHandle")
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

impl RequestHandle {
    pub(crate) fn new(
        id: MsgId,
        rx: oneshot::Receiver<Vec<u8>>,
        deadline: Instant,
        engine: Arc<Engine>,
    ) -> Self {
        RequestHandle {
            id,
            rx,
            deadline,
            engine,
        }
    }

    /// Waits for the response until the request's wait is over, then forgets the request
    /// (`Timeout` if none came).
    pub async fn response(self) -> Result<Vec<u8>, ClientError> {
        let RequestHandle {
            id,
            rx,
            deadline,
            engine,
        } = self;
        let r = match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(_)) => return Err(ClientError::Stopped),
            Err(_) => Err(ClientError::Timeout),
        };
        engine.forget_request(&id);
        r
    }
}
