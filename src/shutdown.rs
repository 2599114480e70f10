//! The stop signal shared by the accept loop, the connections and the supervisor.
//!
//! A [`Shutdown`] is a cheap handle; `trigger` flips it once and every clone's `wait`
//! returns. It deliberately carries no reason: who stops and why is logged by the caller.

use tokio::sync::watch;

/// A one-way "stop now" flag that async tasks can wait on.
#[derive(Clone, Debug)]
pub struct Shutdown {
    stop_tx: std::sync::Arc<watch::Sender<bool>>,
    stop_rx: watch::Receiver<bool>,
}

impl Shutdown {
    pub fn new() -> Self {
        let (stop_tx, stop_rx) = watch::channel(false);
        Self {
            stop_tx: std::sync::Arc::new(stop_tx),
            stop_rx,
        }
    }

    /// Asks every holder of a clone to stop. Idempotent.
    pub fn trigger(&self) {
        self.stop_tx.send_replace(true);
    }

    pub fn is_triggered(&self) -> bool {
        *self.stop_rx.borrow()
    }

    /// Returns once `trigger` has been called on any clone.
    pub async fn wait(&self) {
        let mut stop_rx = self.stop_rx.clone();
        // An error means every sender is gone, which can only happen after a trigger.
        let _ = stop_rx.wait_for(|stopped| *stopped).await;
    }
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn wait_returns_after_trigger_on_a_clone() {
        let shutdown = Shutdown::new();
        let clone = shutdown.clone();
        let waiter = tokio::spawn(async move { clone.wait().await });
        assert!(!shutdown.is_triggered());
        shutdown.trigger();
        waiter.await.unwrap();
        assert!(shutdown.is_triggered());
    }
}
