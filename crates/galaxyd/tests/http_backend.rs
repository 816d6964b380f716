//! The HTTP backend against an origin on loopback.

use std::time::{Duration, SystemTime};

use axum::Router;
use axum::extract::Path;
use axum::response::IntoResponse;
use axum::routing::get;
use galaxyd::{Backend, BackendOptions, BackendSpec};
use http::{StatusCode, header};
use tokio::net::TcpListener;

async fn item(Path(key): Path<String>) -> axum::response::Response {
    match key.as_str() {
        "missing" => StatusCode::NOT_FOUND.into_response(),
        "broken" => (StatusCode::INTERNAL_SERVER_ERROR, "disk full").into_response(),
        "fresh" => ([(header::CACHE_CONTROL, "max-age=60")], "short-lived").into_response(),
        _ => format!("value of {key}").into_response(),
    }
}

#[tokio::test]
async fn origin_answers_become_values_not_found_and_errors() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let app = Router::new().route("/items/{key}", get(item));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                stopped.await.ok();
            })
            .into_future(),
    );

    let spec: BackendSpec = format!("http:{origin}/items/{{key}}").parse().unwrap();
    let backend = Backend::open(&spec, &BackendOptions::default()).unwrap();
    let v = backend.load("a/b c").await.unwrap().unwrap();
    assert_eq!(
        v.bytes().as_ref(),
        b"value of a/b c",
        "the key travels percent-encoded"
    );
    assert_eq!(v.expires_at(), None);
    assert_eq!(backend.load("missing").await.unwrap(), None);
    let e = backend.load("broken").await.unwrap_err();
    assert!(e.contains("500") && e.contains("disk full"), "{e}");
    let before = SystemTime::now();
    let v = backend.load("fresh").await.unwrap().unwrap();
    let expiry = v.expires_at().expect("max-age gives an expiry");
    assert!(expiry >= before + Duration::from_secs(60));
    assert!(expiry <= SystemTime::now() + Duration::from_secs(60));

    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
    let e = backend.load("a").await.unwrap_err();
    assert!(e.contains("GET"), "an origin that is gone is an error: {e}");
}
