//! The stop signal the background tasks wait on (a leaf: the composition root sends it, the
//! engine and the executor wait on it).

use tokio::sync::watch;

/// A stop signal the background tasks wait on.
#[derive(Debug, Clone)]
pub(crate) struct Stop(pub(crate) watch::Receiver<bool>);

impl Stop {
    /// Whether the stop was asked for.
    pub(crate) fn requested(&self) -> bool {
        *self.0.borrow()
    }

    /// Waits until the stop is asked for (at once if it already was).
    pub(crate) async fn wait(&mut self) {
        let _ = self.0.wait_for(|stop| *stop).await;
    }
}
