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
