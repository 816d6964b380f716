//! `galaxyd bench` as a user runs it, against `galaxyd serve` children: it stops at once,
//! non-zero and saying why, on a galaxy the node does not have and on a target nobody
//! listens on; it asks for the keys `--key-format` and `--keys-from` name (the origin
//! behind the node sees them), and reads the node's stats for the loads and hit ratio.

mod common;

use std::collections::BTreeSet;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, State};
use axum::routing::get;
use common::Galaxyd;

/// Run `galaxyd bench` with `args`; its output and how long it took.
async fn bench(args: Vec<String>) -> (Output, Duration) {
    tokio::task::spawn_blocking(move || {
        let start = Instant::now();
        let output = Command::new(env!("CARGO_BIN_EXE_galaxyd"))
            .arg("bench")
            .args(&args)
            .output()
            .unwrap();
        (output, start.elapsed())
    })
    .await
    .unwrap()
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|a| (*a).to_owned()).collect()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_galaxy_stops_the_run_at_once_with_an_error() {
    let (_node, api) = Galaxyd::start(&["--galaxy", "users"]);
    let target = format!("http://{api}");
    let (output, took) = bench(args(&[
        "--targets",
        &target,
        "--galaxy",
        "user",
        "--duration",
        "60s",
        "--json",
    ]))
    .await;
    let text = stderr(&output);
    assert!(!output.status.success(), "{text}");
    assert!(
        text.contains(r#"has no galaxy "user" (its galaxies: users); check --galaxy"#),
        "{text}"
    );
    assert!(took < Duration::from_secs(30), "ran {took:?} of its 60s");
    assert!(
        output.stdout.is_empty(),
        "no report for a run that did not start"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_target_stops_the_run_at_once_with_an_error() {
    // A port that was just free: nothing listens on it.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let target = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    let (output, took) = bench(args(&["--targets", &target, "--duration", "60s"])).await;
    let text = stderr(&output);
    assert!(!output.status.success(), "{text}");
    assert!(
        text.contains(&format!("cannot reach target {target}")),
        "{text}"
    );
    assert!(took < Duration::from_secs(30), "ran {took:?} of its 60s");
}

/// An origin that answers every key and remembers which keys it was asked.
async fn recording_origin() -> (String, Arc<Mutex<BTreeSet<String>>>) {
    let asked = Arc::new(Mutex::new(BTreeSet::new()));
    let app = Router::new()
        .route(
            "/items/{key}",
            get(
                |State(asked): State<Arc<Mutex<BTreeSet<String>>>>, Path(key): Path<String>| async move {
                    asked.lock().unwrap().insert(key.clone());
                    format!("value of {key}")
                },
            ),
        )
        .with_state(Arc::clone(&asked));
    (common::serve(app).await, asked)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_format_and_keys_from_name_the_keys_asked() {
    let (origin, asked) = recording_origin().await;
    let backend = format!("http:{origin}/items/{{key}}");
    let (_node, api) = Galaxyd::start(&["--backend", &backend]);
    let target = format!("http://{api}");
    let run = |extra: &[&str]| {
        let mut list = args(&[
            "--targets",
            &target,
            "--duration",
            "300ms",
            "--dist",
            "uniform",
            "--json",
        ]);
        list.extend(args(extra));
        bench(list)
    };

    let (output, _) = run(&["--key-format", "user:{}:v2", "--keys", "5"]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let want: BTreeSet<String> = (0..5).map(|i| format!("user:{i}:v2")).collect();
    assert_eq!(*asked.lock().unwrap(), want);
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["backend_loads"], 5, "{report}");
    assert_eq!(report["errors"], 0, "{report}");
    let hits = &report["hit_ratio"];
    assert!(hits["main"].as_f64().unwrap() > 0.9, "{report}");
    assert_eq!(report["counted"][0], target.as_str(), "{report}");

    asked.lock().unwrap().clear();
    let file = std::env::temp_dir().join(format!("galaxyd-bench-keys-{}", std::process::id()));
    std::fs::write(&file, "alpha\nbeta/gamma\n\nsp ace\n").unwrap();
    let (output, _) = run(&["--keys-from", file.to_str().unwrap()]).await;
    std::fs::remove_file(&file).unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let want: BTreeSet<String> = ["alpha", "beta/gamma", "sp ace"].map(String::from).into();
    assert_eq!(*asked.lock().unwrap(), want);
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["keys"], 3, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_not_found_answers_fail_the_run() {
    let dir = std::env::temp_dir().join(format!("galaxyd-bench-nf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("kv.db");
    galaxyd::create_database(&db, 3, 16).unwrap();
    let backend = format!("sqlite:{}", db.display());
    let (_node, api) = Galaxyd::start(&["--backend", &backend]);
    let target = format!("http://{api}");
    // key-0 .. key-2 exist; of key-0 .. key-9, most do not.
    let run = |share: &str| {
        bench(args(&[
            "--targets",
            &target,
            "--keys",
            "10",
            "--dist",
            "uniform",
            "--duration",
            "300ms",
            "--max-error-share",
            share,
        ]))
    };
    let (output, _) = run("1%").await;
    let text = stderr(&output);
    assert!(!output.status.success(), "{text}");
    assert!(text.contains("more than --max-error-share 1.00%"), "{text}");
    let (output, _) = run("100%").await;
    assert!(output.status.success(), "{}", stderr(&output));
    std::fs::remove_dir_all(&dir).unwrap();
}
