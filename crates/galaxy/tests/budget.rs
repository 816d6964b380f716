//! A byte budget is a bound: maincache and hotcache together never exceed it.

mod common;

use std::time::Duration;

use galaxycache_galaxy::{Error, Value};
use galaxycache_promoter::AlwaysPromote;
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn main_and_hot_never_exceed_the_budget(
        budget in 4_096u64..400_000,
        hot_ratio in 0.0f64..=1.0,
        gets in proptest::collection::vec((0u16..400, 0usize..3, 0usize..30_000), 1..300),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
        rt.block_on(async {
            let backend = |key: String| async move {
                let (_, len) = key.rsplit_once('/').unwrap();
                Ok::<_, Error>(Some(Value::new(vec![b'x'; len.parse::<usize>().unwrap()])))
            };
            let c = common::Cluster::with_budget(3, budget, backend, |b| {
                b.hot_ratio(hot_ratio).promoter(AlwaysPromote).peer_timeout(Duration::from_secs(1))
            }, common::Loads::default());
            for (key, node, len) in gets {
                let galaxy = &c.nodes[node].galaxy;
                // The size is part of the key, so every node agrees on a key's value.
                let key = format!("{key}/{len}");
                let _ = galaxy.get(&key).await;
                for n in &c.nodes {
                    let s = n.galaxy.stats();
                    prop_assert_eq!(n.galaxy.budget_bytes(), budget);
                    prop_assert!(s.main_bytes + s.hot_bytes <= budget,
                        "{} + {} > {}", s.main_bytes, s.hot_bytes, budget);
                }
            }
            Ok(())
        })?;
    }
}

/// The hotcache takes the room the maincache leaves unused, and gives it back as the
/// maincache fills: a node that has loaded none of its own keys keeps far more than the
/// hotcache's share of hot copies, and once its maincache is full, the two together
/// still hold no more than the budget.
#[tokio::test(start_paused = true)]
async fn the_hotcache_takes_the_room_the_maincache_leaves_and_gives_it_back() {
    const BUDGET: u64 = 1 << 20;
    const VALUE: usize = 1000;
    let backend = |_key: String| async move { Ok::<_, Error>(Some(Value::new(vec![b'x'; VALUE]))) };
    let c = common::Cluster::with_budget(
        2,
        BUDGET,
        backend,
        |b| b.promoter(AlwaysPromote),
        common::Loads::default(),
    );
    let asker = &c.nodes[0].galaxy;
    // The hotcache's own share is 1/8 of the budget: some 128 copies of 1 KB.
    for i in 0..700 {
        let key = c.key_owned_by(1, &format!("theirs-{i}-"));
        asker.get(&key).await.unwrap();
    }
    let s = asker.stats();
    assert_eq!(s.main_bytes, 0);
    assert!(s.hot_entries >= 600, "{} hot copies", s.hot_entries);
    assert!(
        s.hot_bytes > BUDGET / 2,
        "{} bytes of hot copies",
        s.hot_bytes
    );
    // Now this node's own keys: the maincache fills to its 7/8, the hotcache gives way.
    for i in 0..1_500 {
        let key = c.key_owned_by(0, &format!("mine-{i}-"));
        asker.get(&key).await.unwrap();
        let s = asker.stats();
        assert!(
            s.main_bytes + s.hot_bytes <= BUDGET,
            "{} + {} > {BUDGET}",
            s.main_bytes,
            s.hot_bytes
        );
    }
    let s = asker.stats();
    assert!(
        s.main_bytes > BUDGET * 3 / 4,
        "{} bytes in the maincache",
        s.main_bytes
    );
    assert!(s.hot_evictions > 0, "the hotcache gave its room back");
}
