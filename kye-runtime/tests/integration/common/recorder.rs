//! A loopback server that records every request head it receives and answers `/hop` with a
//! `302` to a configured location (`{self}` is its own base URL), anything else with
//! `{"head": "<request head>"}`. For redirect tests: what reached which server.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A running recorder.
pub struct Recorder {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    heads: Arc<Mutex<Vec<String>>>,
}

impl Recorder {
    /// The request heads received so far.
    pub fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }
}

/// Starts a recorder whose `/hop` redirects to `location`.
pub async fn recorder(location: &str) -> Recorder {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let location = location.replace("{self}", &base);
    let heads: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = heads.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let seen = seen.clone();
            let location = location.clone();
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
                seen.lock().unwrap().push(head.clone());
                let target = head.split(' ').nth(1).unwrap_or("/").to_string();
                let resp = if target.starts_with("/hop") {
                    format!("HTTP/1.1 302 Found\r\nlocation: {location}\r\nset-cookie: session=cookie-secret-5e7a\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                } else {
                    let body = serde_json::json!({ "head": head }).to_string();
                    format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    )
                };
                let _ = sock.write_all(resp.as_bytes()).await;
            });
        }
    });
    Recorder { base, heads }
}
