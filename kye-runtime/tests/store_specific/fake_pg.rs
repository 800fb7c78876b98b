//! A loopback server speaking just enough of PostgreSQL's protocol to see what a client sends
//! before it is logged in: it declines or accepts TLS (with a certificate of the test CA in
//! `tests/fixtures/tls`), asks for the password in clear text, keeps it, and refuses the login
//! with a message naming what it saw. No real server can show which password a client sent
//! (the test server trusts loopback) or present a certificate of a test CA.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// What the server answers to the client's TLS request.
#[derive(Clone, Copy)]
pub enum Tls {
    /// `N`: no TLS here.
    Decline,
    /// `S`, then a handshake with the test CA's `localhost` certificate.
    TestCa,
}

/// A running fake server.
pub struct FakePg {
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// The passwords clients sent, in order.
    pub passwords: Arc<Mutex<Vec<String>>>,
    /// Handshakes that completed (TLS connections that reached the login).
    pub logins: Arc<Mutex<u32>>,
}

/// The test CA's files: `ca.pem`, `other-ca.pem`, `localhost.pem`, `localhost.key`.
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tls")
        .join(name)
}

impl FakePg {
    /// Starts the server on a thread of its own (it lives as long as the test process).
    pub fn start(tls: Tls) -> FakePg {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        let port = listener.local_addr().expect("its address").port();
        let passwords = Arc::new(Mutex::new(Vec::new()));
        let logins = Arc::new(Mutex::new(0));
        let config = match tls {
            Tls::Decline => None,
            Tls::TestCa => Some(server_config()),
        };
        let (p, l) = (passwords.clone(), logins.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (p, l, config) = (p.clone(), l.clone(), config.clone());
                std::thread::spawn(move || {
                    let _ = serve(stream, config, &p, &l);
                });
            }
        });
        FakePg {
            port,
            passwords,
            logins,
        }
    }
}

fn server_config() -> Arc<rustls::ServerConfig> {
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(fixture("localhost.pem"))
            .expect("the leaf certificate")
            .collect::<Result<_, _>>()
            .expect("PEM");
    let key = PrivateKeyDer::from_pem_file(fixture("localhost.key")).expect("its key");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("the server's certificate");
    Arc::new(config)
}

fn read_message(s: &mut impl Read) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len)?;
    let len = u32::from_be_bytes(len) as usize;
    let mut body = vec![0u8; len.saturating_sub(4)];
    s.read_exact(&mut body)?;
    Ok(body)
}

fn serve(
    mut tcp: TcpStream,
    config: Option<Arc<rustls::ServerConfig>>,
    passwords: &Mutex<Vec<String>>,
    logins: &Mutex<u32>,
) -> std::io::Result<()> {
    // SSLRequest (80877103) or GSSENCRequest (80877104) before the startup message.
    let body = read_message(&mut tcp)?;
    let code = u32::from_be_bytes([body[0], body[1], body[2], body[3]]);
    let is_request = code == 80877103 || code == 80877104;
    match (&config, is_request && code == 80877103) {
        (Some(config), true) => {
            tcp.write_all(b"S")?;
            let conn = rustls::ServerConnection::new(config.clone())
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            let mut tls = rustls::StreamOwned::new(conn, tcp);
            let _startup = read_message(&mut tls)?;
            *logins.lock().unwrap() += 1;
            login(&mut tls, passwords)
        }
        _ => {
            if is_request {
                tcp.write_all(b"N")?;
                let _startup = read_message(&mut tcp)?;
            }
            login(&mut tcp, passwords)
        }
    }
}

/// Asks for the password in clear text, keeps it, and refuses the login.
fn login(s: &mut (impl Read + Write), passwords: &Mutex<Vec<String>>) -> std::io::Result<()> {
    s.write_all(&[b'R', 0, 0, 0, 8, 0, 0, 0, 3])?;
    s.flush()?;
    let mut tag = [0u8; 1];
    s.read_exact(&mut tag)?;
    let body = read_message(s)?;
    let password = String::from_utf8_lossy(body.strip_suffix(&[0]).unwrap_or(&body)).to_string();
    passwords.lock().unwrap().push(password);
    let mut fields = Vec::new();
    for (code, text) in [
        (b'S', "FATAL"),
        (b'V', "FATAL"),
        (b'C', "28P01"),
        (b'M', "kye test server: login refused after the password"),
    ] {
        fields.push(code);
        fields.extend_from_slice(text.as_bytes());
        fields.push(0);
    }
    fields.push(0);
    let mut message = vec![b'E'];
    message.extend_from_slice(&((fields.len() + 4) as u32).to_be_bytes());
    message.extend_from_slice(&fields);
    s.write_all(&message)?;
    s.flush()
}
