//! Listeners on loopback for the nodes of a test cluster.
#![allow(dead_code, unreachable_pub)]

use tokio::net::TcpListener;

/// `n` listeners on 127.0.0.1 (ports chosen by the system) and their `http://` URLs.
pub async fn listeners(n: usize) -> (Vec<TcpListener>, Vec<String>) {
    let mut urls = Vec::new();
    let mut listeners = Vec::new();
    for _ in 0..n {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        urls.push(format!("http://{}", listener.local_addr().unwrap()));
        listeners.push(listener);
    }
    (listeners, urls)
}
