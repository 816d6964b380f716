//! Whether a node is ready for clients (`/readyz`): every start-up preload has ended.
//! Liveness (`/healthz`) is another matter: a node is alive while it preloads.

use tokio::sync::watch;

/// A node's readiness, as the client API reads it. Cloning is cheap.
#[derive(Clone, Debug)]
pub struct Readiness(watch::Receiver<bool>);

impl Readiness {
    /// Ready from the start: a node with nothing to preload.
    pub fn ready() -> Self {
        Readiness(watch::channel(true).1)
    }

    /// Not ready until the returned sender sends `true`.
    pub(crate) fn pending() -> (watch::Sender<bool>, Self) {
        let (tx, rx) = watch::channel(false);
        (tx, Readiness(rx))
    }

    /// Whether the node is ready now.
    pub fn is_ready(&self) -> bool {
        *self.0.borrow()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_until_told() {
        assert!(Readiness::ready().is_ready());
        let (tx, readiness) = Readiness::pending();
        let copy = readiness.clone();
        assert!(!readiness.is_ready());
        tx.send_replace(true);
        assert!(readiness.is_ready() && copy.is_ready());
        drop(tx);
        assert!(
            readiness.is_ready(),
            "a dropped sender leaves the last word"
        );
    }
}
