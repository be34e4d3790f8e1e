//! A loopback HTTP/1.1 server that holds every response for a fixed time:
//! the target for the many-connections benchmark (`bench/connections.sh`).
//!
//! `cargo run --release -p chokepoint-engine --example hold_server -- 1000`
//! prints `listening on http://127.0.0.1:PORT` and serves until killed.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

fn main() {
    let hold_ms: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1000);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        println!(
            "listening on http://{}",
            listener.local_addr().expect("address")
        );
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let mut buf = [0u8; 2048];
                let mut have = 0;
                loop {
                    match stream.read(&mut buf[have..]).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => have += n,
                    }
                    if buf[..have].windows(4).any(|w| w == b"\r\n\r\n") {
                        have = 0;
                        tokio::time::sleep(Duration::from_millis(hold_ms)).await;
                        let reply = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
                        if stream.write_all(reply).await.is_err() {
                            return;
                        }
                    } else if have == buf.len() {
                        return;
                    }
                }
            });
        }
    });
}
