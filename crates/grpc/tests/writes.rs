//! Remove, set and flush over real loopback sockets, against the fake galaxy: what the
//! client sends is exactly what the galaxy receives.

mod common;

use std::time::{Duration, SystemTime};

use common::{Node, Written, fetcher, later};
use galaxycache_universe::{Error, ErrorKind, Value, WriteOp};
use tokio::time::Instant;

/// An expiry with milliseconds and nanoseconds, so a unit lost on the way shows.
fn expiry() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::new(1_900_000_000, 123_456_789)
}

#[tokio::test]
async fn remove_set_and_flush_arrive_as_sent() {
    let node = Node::start().await;
    let peer = fetcher(&node);
    let unicode = "ünïcødé ☃ 日本/a b+%";
    let binary = Value::new(vec![0u8, 0xff, b'\n', 0x80, 7]);
    let expiring = Value::expiring("soon gone", expiry());
    let empty = Value::new("");

    let ops = [
        WriteOp::Remove("k"),
        WriteOp::Set(unicode, &binary),
        WriteOp::Set("expiring", &expiring),
        WriteOp::Set("empty", &empty),
        WriteOp::Remove(unicode),
        WriteOp::Flush,
    ];
    for op in ops {
        let applied = peer.write("g".into(), op, later()).await;
        assert_eq!(applied, Ok(()), "{op:?}");
    }

    assert_eq!(
        node.fake.writes(),
        [
            Written::Remove("k".into()),
            Written::Set(unicode.into(), binary),
            Written::Set("expiring".into(), expiring),
            Written::Set("empty".into(), empty),
            Written::Remove(unicode.into()),
            Written::Flush,
        ]
    );
    node.stop().await.unwrap();
}

#[tokio::test]
async fn a_set_value_keeps_its_expiry_to_the_nanosecond() {
    let node = Node::start().await;
    let sent = Value::expiring(vec![b'x'; 3000], expiry());
    fetcher(&node)
        .write("g".into(), WriteOp::Set("k", &sent), later())
        .await
        .unwrap();
    let [Written::Set(key, got)] = &node.fake.writes()[..] else {
        panic!("one set: {:?}", node.fake.writes());
    };
    assert_eq!(key, "k");
    assert_eq!(got.bytes(), sent.bytes());
    let at = got.expires_at().expect("the expiry travelled");
    let millis = |t: SystemTime| {
        t.duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_millis()
    };
    assert_eq!(millis(at), 1_900_000_000_123, "to the millisecond");
    assert_eq!(at, expiry(), "and to the nanosecond");
    node.stop().await.unwrap();
}

#[tokio::test]
async fn writes_of_unknown_galaxies_and_failed_writes_are_told_apart() {
    let node = Node::start().await;
    let peer = fetcher(&node);

    let e = peer
        .write("nope".into(), WriteOp::Flush, later())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::UnknownGalaxy, "{e}");
    let e = peer
        .write("g".into(), WriteOp::Remove(""), later())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidRequest, "{e}");

    // The galaxy's own error, as its local callers get it.
    let e = peer
        .write("g".into(), WriteOp::Remove("fail"), later())
        .await
        .unwrap_err();
    assert_eq!(e, Error::new(ErrorKind::Remote, "the write failed here"));

    assert_eq!(node.fake.writes(), []);
    node.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_spent_deadline_sends_no_write() {
    let node = Node::start().await;
    let e = fetcher(&node)
        .write("g".into(), WriteOp::Flush, Instant::now())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    assert_eq!(node.fake.writes(), []);
}
