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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn trigger_wakes_every_clone_and_children() {
        let s = Shutdown::new();
        let clone = s.clone();
        let child = s.child();
        assert!(!s.is_triggered() && !child.is_triggered());
        let waiter = tokio::spawn(async move { clone.wait().await });
        // A child firing on its own does not fire the parent.
        let other_child = s.child();
        other_child.trigger();
        assert!(other_child.is_triggered() && !s.is_triggered());
        s.trigger();
        tokio::time::timeout(std::time::Duration::from_secs(10), waiter)
            .await
            .expect("waiter woke")
            .expect("task ok");
        assert!(child.is_triggered());
        // Waiting after the fact completes immediately; triggering twice is harmless.
        s.trigger();
        s.wait().await;
    }
}
