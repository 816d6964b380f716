//! One node, 1 KiB values: hits on one key and over 10k keys, misses with a trivial backend,
//! and ring lookups; single-threaded and on two threads.
//!
//! `cargo bench --bench galaxy --no-default-features`; with `GALAXYCACHE_BENCH_RECORDER=1`
//! a metrics recorder (`metrics-util`'s debugging recorder) is installed first, to measure
//! what recording metrics costs (a hit records none; a miss records its histograms).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use galaxycache::{Error, Galaxy, Ring, Universe, Value};

const VALUE_SIZE: usize = 1024;
const KEYS: usize = 10_000;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn node(budget: u64) -> Galaxy {
    let universe = Universe::builder("http://127.0.0.1:1").build();
    // A value of its own per key, as a real backend gives: entries sharing one allocation
    // would share one reference count, which two cores would fight over.
    let backend =
        |_key: String| async move { Ok::<_, Error>(Some(Value::new(vec![b'v'; VALUE_SIZE]))) };
    Galaxy::builder(&universe, "bench", budget, backend)
        .build()
        .unwrap()
}

fn keys() -> Vec<String> {
    (0..KEYS).map(|i| format!("key-{i}")).collect()
}

/// Runs `iters` gets of `pick(i)` on each of `threads` threads at once; wall time.
fn gets(
    galaxy: &Galaxy,
    threads: usize,
    iters: u64,
    pick: impl Fn(u64) -> usize + Sync,
    keys: &[String],
) -> Duration {
    let barrier = std::sync::Barrier::new(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (galaxy, barrier, pick) = (galaxy.clone(), &barrier, &pick);
                s.spawn(move || {
                    let rt = runtime();
                    rt.block_on(async {
                        barrier.wait();
                        let start = Instant::now();
                        for i in 0..iters {
                            let key = &keys[pick(i.wrapping_mul(t as u64 + 1))];
                            black_box(galaxy.get(key).await.unwrap());
                        }
                        start.elapsed()
                    })
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .max()
            .unwrap()
    })
}

/// Install a recorder when `GALAXYCACHE_BENCH_RECORDER=1`, once.
fn recorder_if_asked() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if std::env::var("GALAXYCACHE_BENCH_RECORDER").is_ok_and(|v| v == "1") {
            let recorder = metrics_util::debugging::DebuggingRecorder::new();
            metrics::set_global_recorder(recorder).unwrap();
            eprintln!("a metrics recorder is installed");
        }
    });
}

fn hits(c: &mut Criterion) {
    recorder_if_asked();
    let galaxy = node(256 << 20);
    let keys = keys();
    runtime().block_on(async {
        for k in &keys {
            galaxy.get(k).await.unwrap();
        }
    });
    for threads in [1, 2] {
        let mut group = c.benchmark_group(format!("hit/{threads}-thread"));
        group.throughput(Throughput::Elements(threads as u64));
        group.bench_function("one key", |b| {
            b.iter_custom(|iters| gets(&galaxy, threads, iters, |_| 0, &keys))
        });
        group.bench_function("10k keys uniform", |b| {
            // A multiplicative hash of the counter: uniform over the keys, no RNG state.
            b.iter_custom(|iters| {
                gets(
                    &galaxy,
                    threads,
                    iters,
                    |i| (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40) as usize % KEYS,
                    &keys,
                )
            })
        });
        group.finish();
    }
}

fn misses(c: &mut Criterion) {
    recorder_if_asked();
    let mut group = c.benchmark_group("miss");
    group.throughput(Throughput::Elements(1));
    group.bench_function("trivial backend, 1-thread", |b| {
        let galaxy = node(64 << 20);
        let rt = runtime();
        let mut n = 0u64;
        let mut key = String::with_capacity(32);
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    n += 1;
                    key.clear();
                    use std::fmt::Write;
                    write!(key, "miss-{n}").unwrap();
                    black_box(galaxy.get(&key).await.unwrap());
                }
                start.elapsed()
            })
        })
    });
    group.finish();
}

fn ring(c: &mut Criterion) {
    let keys = keys();
    let mut group = c.benchmark_group("ring lookup");
    group.throughput(Throughput::Elements(1));
    for peers in [3, 100] {
        let ring = Ring::new(
            50,
            (0..peers).map(|i| format!("http://10.0.{}.{}:8080", i / 256, i % 256)),
        );
        let mut i = 0;
        group.bench_function(format!("{peers} peers"), |b| {
            b.iter(|| {
                i = (i + 1) % KEYS;
                black_box(ring.owner(keys[i].as_bytes()))
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = hits, misses, ring
}
criterion_main!(benches);
