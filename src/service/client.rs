//! Whether the client that asked for a piece of work still waits for its
//! answer. Transports run writes to their end even when the client goes
//! (`http::run_to_completion`), so that no transaction is dropped half-way;
//! work that has written nothing yet can ask this and give up instead,
//! freeing what it holds for clients that still wait.
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::{error::CoreError, metrics::AbandonedOperation, state::Core};

#[derive(Clone, Debug)]
pub struct ClientPresence {
    gone: CancellationToken,
}

impl ClientPresence {
    /// A client watched by its transport: it counts as gone once the
    /// returned guard is dropped, which the transport ties to the request
    /// the client sent (dropped when the connection closes).
    pub fn watched() -> (Self, DropGuard) {
        let gone = CancellationToken::new();
        let guard = gone.clone().drop_guard();
        (Self { gone }, guard)
    }

    /// A caller that always waits for its answer: the CLI, tests.
    pub fn always_waiting() -> Self {
        Self {
            gone: CancellationToken::new(),
        }
    }

    /// Completes once the client has gone; never, while it waits.
    pub async fn gone(&self) {
        self.gone.cancelled().await;
    }
}

/// The answer of work that stopped unwritten because its client had gone:
/// counted, and (to nobody) a retry, which lets an `Idempotency-Key` go.
pub(crate) fn stopped_unwritten(core: &Core, operation: AbandonedOperation) -> CoreError {
    core.metrics.request_abandoned(operation);
    CoreError::ServerBusy {
        retry_after_seconds: 1,
    }
}
