//! A fixed peer list.

use crate::{BoxFuture, Discovery, Error};

/// A fixed peer list, yielded once: what a cluster whose members never change needs.
#[derive(Clone, Debug)]
pub struct StaticPeers {
    peers: Option<Vec<String>>,
}

impl StaticPeers {
    /// The source that yields `peers` once, then ends.
    pub fn new<I, S>(peers: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        StaticPeers {
            peers: Some(peers.into_iter().map(Into::into).collect()),
        }
    }
}

impl Discovery for StaticPeers {
    fn next(&mut self) -> BoxFuture<'_, Option<Result<Vec<String>, Error>>> {
        let peers = self.peers.take();
        Box::pin(async move { peers.map(Ok) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::test_log;
    use crate::{ErrorKind, InProcessNetwork, Universe};

    #[tokio::test]
    async fn yields_its_list_once() {
        let mut source = StaticPeers::new(["http://a", "http://b"]);
        assert_eq!(
            source.next().await,
            Some(Ok(vec!["http://a".to_owned(), "http://b".to_owned()]))
        );
        assert_eq!(source.next().await, None);
    }

    #[tokio::test]
    async fn follow_applies_good_lists_and_keeps_the_ring_on_a_bad_one() {
        let (logs, _guard) = test_log::capture();
        let net = InProcessNetwork::new();
        let u = Universe::builder("http://a")
            .protocol(net.protocol())
            .build();
        u.follow(StaticPeers::new(["http://b/"])).await;
        assert_eq!(u.peers(), ["http://a", "http://b"]);
        assert!(logs.text().contains("peer list changed"), "{}", logs.text());
        u.follow(StaticPeers::new(["http://c", "http://a", "http://A/"]))
            .await;
        assert_eq!(u.peers(), ["http://a", "http://b"], "this node twice");
        let failed = Box::new(FailsOnce(Some(Error::new(ErrorKind::Unavailable, "down"))));
        u.follow(failed as Box<dyn Discovery>).await;
        assert_eq!(u.peers(), ["http://a", "http://b"]);
        let text = logs.text();
        assert_eq!(text.matches("WARN").count(), 2, "{text}");
        assert!(
            text.contains("names this node") && text.contains("down"),
            "{text}"
        );
    }

    struct FailsOnce(Option<Error>);
    impl Discovery for FailsOnce {
        fn next(&mut self) -> BoxFuture<'_, Option<Result<Vec<String>, Error>>> {
            let e = self.0.take();
            Box::pin(async move { e.map(Err) })
        }
    }
}
