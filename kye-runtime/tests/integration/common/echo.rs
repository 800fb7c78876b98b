//! A loopback server that answers every request with its own request head, so a test can see
//! exactly what the client sent (headers, query, auth).

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Starts the server on 127.0.0.1 and returns its base URL (`http://127.0.0.1:PORT`).
///
/// Every request is answered with `{"head": "<request line and headers>"}` as JSON; the status
/// is taken from the path (`/status/401`, `/status/500/items/1?lang=en`), 200 otherwise. Each
/// connection is closed after one answer.
pub async fn echo_server() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&buf).to_string();
                let target = head.split(' ').nth(1).unwrap_or("/").to_string();
                let status = target
                    .strip_prefix("/status/")
                    .and_then(|s| s.split(['?', '/']).next())
                    .and_then(|s| s.parse::<u16>().ok())
                    .unwrap_or(200);
                let body = serde_json::json!({ "head": head }).to_string();
                let resp = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(resp.as_bytes()).await;
            });
        }
    });
    format!("http://{addr}")
}
