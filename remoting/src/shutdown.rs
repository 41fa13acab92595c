//! Cooperative shutdown signal shared by the server, its connections and other tasks.

use tokio_util::sync::CancellationToken;

/// A cloneable one-shot signal: `trigger()` once, every `wait()` completes.
#[derive(Clone, Debug, Default)]
pub struct Shutdown {
    token: CancellationToken,
}

impl Shutdown {
    pub fn new() -> Shutdown {
        Shutdown::default()
    }

    /// Fire the signal (idempotent).
    pub fn trigger(&self) {
        self.token.cancel();
    }

    pub fn is_triggered(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Completes once `trigger()` has been called (immediately if it already was).
    pub async fn wait(&self) {
        self.token.cancelled().await
    }

    /// A child signal: fires when this one fires, and can also be fired on its own.
    pub fn child(&self) -> Shutdown {
        Shutdown {
            token: self.token.child_token(),
        }
    }

    pub(crate) fn token(&self) -> &CancellationToken {
        &self.token
    }
}
