//! The floor of `benches/cluster/run.sh`: a client API that answers every GET with the same
//! 1 KiB body and does nothing else. It runs on the stack galaxyd's client API runs on
//! (axum on hyper on tokio's multi-thread runtime), so `galaxyd / floor` is the share of the
//! bare HTTP server's rate that galaxyd keeps while it also looks up keys.
//!
//! Usage: `cluster_floor [ADDR] [SIZE]` (default `127.0.0.1:8099`, 1024 bytes).

use bytes::Bytes;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:8099".to_owned());
    let size = match args.next() {
        Some(text) => text
            .parse()
            .map_err(|e| std::io::Error::other(format!("size {text:?}: {e}")))?,
        None => 1024,
    };
    let body = Bytes::from(vec![b'x'; size]);
    let app = axum::Router::new().fallback(move || {
        let body = body.clone();
        async move {
            (
                [(http::header::CONTENT_TYPE, "application/octet-stream")],
                body,
            )
        }
    });
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    axum::serve(listener, app).await
}
