//! `serve`, `token`, `secret` and `audit` through the Pokémon example binary, as a team runs
//! them: tokens created on the command line, a secret sealed from stdin, the server started
//! against the example's fixtures on loopback, asked over HTTP, and stopped with SIGTERM.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support;

const KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
const OTHER_KEY: &str = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100";
const VALUE: &str = "pokeapi-SEALED-41c7e2";

fn example(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(support::example_binary());
    cmd.args(args)
        .arg("--db")
        .arg(dir.join("pokemon.db"))
        .current_dir(dir)
        .env_remove("POKEAPI_BASE_URL")
        .env_remove("KYE_POKEAPI__BASE_URL")
        .env_remove("KYE_CONFIG")
        .env_remove("KYE_MASTER_KEY")
        .env("NO_COLOR", "1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

pub(crate) fn run(dir: &Path, args: &[&str], env: &[(&str, &str)], stdin: &str) -> Output {
    let mut child = example(dir, args, env)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

pub(crate) fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// One HTTP/1.1 request over a plain socket: (status, body as JSON).
pub(crate) fn http(addr: &str, path: &str, token: Option<&str>) -> (u16, Value) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let status = resp[9..12].parse().unwrap();
    let body = resp.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

pub(crate) struct Serving {
    child: std::process::Child,
    pub(crate) addr: String,
    stderr: std::sync::mpsc::Receiver<String>,
}

pub(crate) fn serve(dir: &Path, base: &str, env: &[(&str, &str)]) -> Serving {
    let mut all_env = vec![("POKEAPI_BASE_URL", base), ("KYE_LOG", "info")];
    all_env.extend_from_slice(env);
    let mut child = example(dir, &["serve", "--listen", "127.0.0.1:0"], &all_env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let err = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let addr = loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("serve says where it listens within 60 s");
        if let Some(rest) = line.split_once("listening on http://") {
            break rest.1.split_whitespace().next().unwrap().to_string();
        }
    };
    Serving {
        child,
        addr,
        stderr: rx,
    }
}

impl Serving {
    /// SIGTERM; the exit status and every stderr line.
    pub(crate) fn stop(mut self) -> (std::process::ExitStatus, String) {
        let killed = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        let deadline = Instant::now() + Duration::from_secs(40);
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < deadline, "serve did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut lines = String::new();
        while let Ok(l) = self.stderr.recv_timeout(Duration::from_secs(2)) {
            lines.push_str(&l);
            lines.push('\n');
        }
        (status, lines)
    }
}

fn fixtures_server() -> kye::testing::TestServer {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/pokemon/fixtures");
    let fixtures = kye::testing::Fixtures::from_dir(dir).unwrap();
    kye::testing::TestServer::start_on_thread(fixtures.routes()).unwrap()
}

#[test]
fn a_team_serves_the_example_with_tokens_sealed_secrets_and_an_audit_log() {
    let sandbox = tempfile::tempdir().unwrap();
    let dir = sandbox.path();
    let source = fixtures_server();
    let port = source.base_url().rsplit(':').next().unwrap().to_string();
    std::fs::write(
        dir.join("kye.toml"),
        format!(
            "[roles.analyst]\nread = [\"Pokemon\"]\nfetch = [\"Pokemon\"]\n\
             [roles.viewer]\nread = [\"PokemonType\"]\n\
             [roles.ops]\nread = [\"*\"]\nadmin = true\n\
             [hosts.\"127.0.0.1:{port}\".auth]\ntype = \"bearer\"\nsecret = \"POKEAPI_TOKEN\"\n"
        ),
    )
    .unwrap();
    let key = [("KYE_MASTER_KEY", KEY)];

    // Tokens: printed once; an unknown role is refused.
    let out = run(
        dir,
        &["token", "create", "alice", "--role", "analyst"],
        &[],
        "",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let alice = text(&out.stdout).trim().to_string();
    assert!(alice.starts_with("kye_") && alice.len() == 68, "{alice}");
    let out = run(
        dir,
        &[
            "token", "create", "vic", "--role", "viewer", "--format", "json",
        ],
        &[],
        "",
    );
    let vic = serde_json::from_slice::<Value>(&out.stdout).unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    let out = run(dir, &["token", "create", "olga", "--role", "ops"], &[], "");
    let olga = text(&out.stdout).trim().to_string();
    let out = run(
        dir,
        &["token", "create", "bob", "--role", "intern"],
        &[],
        "",
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("no role \"intern\""),
        "{}",
        text(&out.stderr)
    );

    // A secret sealed from stdin; listed by name only; another key is refused.
    let out = run(
        dir,
        &["secret", "set", "POKEAPI_TOKEN"],
        &key,
        &format!("{VALUE}\n"),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = run(dir, &["secret", "list", "--format", "json"], &[], "");
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed[0]["name"], "POKEAPI_TOKEN", "{listed}");
    assert!(!text(&out.stdout).contains(VALUE));
    let out = run(dir, &["serve"], &[("KYE_MASTER_KEY", OTHER_KEY)], "");
    assert_eq!(out.status.code(), Some(2));
    let e = text(&out.stderr);
    assert!(e.contains("sealed under master key"), "{e}");
    assert!(!e.contains(VALUE), "{e}");

    // Serving: refusals never reach the source; the first read fetches, the next is stored.
    let server = serve(dir, source.base_url(), &key);
    let before = source.stats().requests();
    let path = "/v1/models/Pokemon/records?name=pikachu";
    assert_eq!(http(&server.addr, path, None).0, 401);
    assert_eq!(http(&server.addr, path, Some(&vic)).0, 403);
    assert_eq!(source.stats().requests(), before);
    let (s, body) = http(&server.addr, path, Some(&alice));
    assert_eq!(
        (s, &body["source"]),
        (200, &Value::from("fetched")),
        "{body}"
    );
    assert_eq!(body["record"]["id"], 25, "{body}");
    let fetched_record = body["record"].clone();
    let fetched = source.stats().requests();
    assert!(fetched > before);
    let (s, body) = http(
        &server.addr,
        "/v1/models/Pokemon/records?id=25&max_age=1h",
        Some(&alice),
    );
    assert_eq!((s, &body["source"]), (200, &Value::from("store")), "{body}");
    assert_eq!(source.stats().requests(), fetched);
    // One record, one shape: references are objects by key, fetched or stored.
    assert_eq!(body["record"], fetched_record, "{body}");
    assert!(body["record"]["abilities"][0]["name"].is_string(), "{body}");
    let (s, body) = http(&server.addr, "/v1/audit", Some(&olga));
    assert_eq!(s, 200, "{body}");
    let (status, logs) = server.stop();
    assert!(status.success(), "{logs}");
    assert!(logs.contains("request") && logs.contains("alice"), "{logs}");
    assert!(!logs.contains(VALUE), "a log line holds the secret");

    // The audit log on the command line; revoking a token.
    let out = run(dir, &["audit", "--format", "json"], &[], "");
    let rows: Value = serde_json::from_slice(&out.stdout).unwrap();
    let reads: Vec<(&str, u64)> = rows
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["action"] == "read")
        .map(|r| {
            (
                r["token"].as_str().unwrap_or("-"),
                r["status"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        reads,
        [("alice", 200), ("alice", 200), ("vic", 403), ("-", 401)],
        "{rows}"
    );
    let out = run(dir, &["token", "revoke", "alice"], &[], "");
    assert!(out.status.success());
    let out = run(dir, &["token", "list", "--format", "json"], &[], "");
    let tokens: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(tokens[0]["state"], "revoked", "{tokens}");
    assert!(!text(&out.stdout).contains(&alice));

    // Rotation: the new key opens the secrets, the old one no longer does.
    let out = run(
        dir,
        &["secret", "rotate"],
        &[("KYE_MASTER_KEY", KEY), ("KYE_NEW_MASTER_KEY", OTHER_KEY)],
        "",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = run(dir, &["serve"], &key, "");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let server = serve(dir, source.base_url(), &[("KYE_MASTER_KEY", OTHER_KEY)]);
    assert_eq!(http(&server.addr, "/health", None).0, 200);
    assert_eq!(http(&server.addr, path, Some(&alice)).0, 401);
    let (status, _) = server.stop();
    assert!(status.success());

    for suffix in ["", "-wal"] {
        let mut p: PathBuf = dir.join("pokemon.db");
        p.set_extension(format!("db{suffix}"));
        let bytes = std::fs::read(&p).unwrap_or_default();
        assert!(
            !bytes.windows(VALUE.len()).any(|w| w == VALUE.as_bytes()),
            "{p:?}"
        );
        assert!(
            !bytes.windows(alice.len()).any(|w| w == alice.as_bytes()),
            "{p:?}"
        );
    }
}
