//! `POST /v1/galaxies/{galaxy}/batch`: many keys in one request, each answered as a get of
//! its own would be; the SQLite galaxy loads them in batch queries.

mod common;

use std::time::{Duration, SystemTime};

use axum::body::Body;
use base64::Engine as _;
use base64::prelude::BASE64_STANDARD;
use galaxycache_galaxy::{Error, Value};
use galaxyd::{
    BackendSpec, GalaxyConfig, HttpClient, NodeConfig, Response, create_database, synthetic_value,
};
use http::{HeaderMap, Method};
use http_body_util::BodyExt;
use serde_json::{Value as Json, json};
use tower::ServiceExt;

async fn post(client: &HttpClient, url: &str, body: &str) -> Response {
    let body = bytes::Bytes::copy_from_slice(body.as_bytes());
    client
        .send(Method::POST, url.parse().unwrap(), HeaderMap::new(), body)
        .await
        .unwrap()
}

fn json_of(r: &Response) -> Json {
    serde_json::from_slice(&r.body).unwrap()
}

#[tokio::test]
async fn a_batch_answers_every_key_and_the_database_sees_batch_queries() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("kv.db");
    create_database(&db, 5, 16).unwrap();
    let sql = GalaxyConfig::new("sql", BackendSpec::Sqlite(db));
    let node = common::node(|local| NodeConfig {
        max_key_len: 1024,
        galaxies: vec![sql],
        ..local
    })
    .await;
    let url = format!("http://{}/v1/galaxies/sql/batch", node.api_addr());
    let client = HttpClient::new(2, Duration::from_secs(10));

    let keys = json!(["key-0", "key-3", "key-99", "", "key-3", "key-4", "nope"]);
    let r = post(&client, &url, &keys.to_string()).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.headers["content-type"], "application/json");
    let answers = json_of(&r);
    assert_eq!(
        answers.as_object().unwrap().len(),
        6,
        "key-3 is answered once"
    );
    for key in ["key-0", "key-3", "key-4"] {
        let value = BASE64_STANDARD.encode(synthetic_value(key, 16));
        assert_eq!(
            answers[key],
            json!({"status": 200, "value": value}),
            "{key}"
        );
    }
    for key in ["key-99", "nope"] {
        assert_eq!(answers[key]["status"], 404);
        let error = answers[key]["error"].as_str().unwrap();
        assert!(error.contains("no value for key"), "{error}");
    }
    assert_eq!(answers[""]["status"], 400, "{answers}");

    // Five keys loaded, in batch queries: the first goes alone, the rest together.
    let stats = node.galaxies()[0].stats();
    assert_eq!(stats.backend_loads, 5);
    assert!((1..=2).contains(&stats.backend_batches), "{stats:?}");
    // Asked again: the same answers, the values from the cache (the missing keys are
    // asked again: no not_found_ttl).
    let again = json_of(&post(&client, &url, &keys.to_string()).await);
    assert_eq!(again, answers);
    assert_eq!(node.galaxies()[0].stats().backend_loads, 7);

    // Bad requests say what is wrong.
    for (body, expected) in [
        ("{\"keys\": []}", "JSON array of keys"),
        ("[1, 2]", "JSON array of keys"),
        ("not json", "JSON array of keys"),
    ] {
        let r = post(&client, &url, body).await;
        assert_eq!(r.status, 400, "{body}");
        let text = String::from_utf8_lossy(&r.body);
        assert!(text.contains(expected), "{body}: {text}");
    }
    let many: Vec<String> = (0..1001).map(|i| format!("k{i}")).collect();
    let r = post(&client, &url, &json!(many).to_string()).await;
    assert_eq!(r.status, 400);
    assert!(String::from_utf8_lossy(&r.body).contains("at most 1000 keys"));
    let r = post(&client, &url, "[]").await;
    assert_eq!((r.status.as_u16(), json_of(&r)), (200, json!({})));
    let other = format!("http://{}/v1/galaxies/nope/batch", node.api_addr());
    assert_eq!(post(&client, &other, "[\"a\"]").await.status, 404);
    node.shutdown().await.unwrap();
}

/// A key whose load fails is a 503 of its own, the others are answered; an expiring value
/// carries its HTTP date, as a single get's `Expires` does.
#[tokio::test]
async fn failures_are_per_key_and_expiry_is_an_http_date() {
    let expires = SystemTime::UNIX_EPOCH + Duration::from_secs(4_000_000_000);
    let backend = move |key: String| async move {
        match key.as_str() {
            "fail" => Err(Error::backend("database on fire")),
            _ => Ok(Some(Value::new(key).with_expiry(Some(expires)))),
        }
    };
    let router = common::api_over(backend, Duration::from_secs(10));
    let request = http::Request::post("/v1/galaxies/g/batch")
        .body(Body::from("[\"fail\", \"ok\"]"))
        .unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let answers: Json = serde_json::from_slice(&body).unwrap();
    assert_eq!(answers["fail"]["status"], 503);
    assert!(
        answers["fail"]["error"]
            .as_str()
            .unwrap()
            .contains("database on fire")
    );
    assert_eq!(
        answers["ok"],
        json!({
            "status": 200,
            "value": BASE64_STANDARD.encode("ok"),
            "expires": httpdate::fmt_http_date(expires),
        })
    );
}
