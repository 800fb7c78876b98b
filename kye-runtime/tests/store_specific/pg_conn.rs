//! PostgreSQL connections before the login, against a loopback fake server (`fake_pg`): which
//! password a client sends when the URL names a kye secret (`password_secret=`), and which
//! certificates `sslrootcert=` makes it trust. No PostgreSQL server is needed.

use kye_runtime::cli::{open_reader, Format, Global};
use kye_runtime::store::*;
use kye_runtime::Secrets;

use crate::fake_pg::{fixture, FakePg, Tls};

fn global(config: &std::path::Path, db: Option<&str>) -> Global {
    Global {
        format: Format::Text,
        verbose: 0,
        quiet: false,
        color_out: false,
        color_err: false,
        db: db.map(Into::into),
        config: Some(config.to_path_buf()),
        config_overrides: Vec::new(),
    }
}

fn passwords(fake: &FakePg) -> Vec<String> {
    fake.passwords.lock().unwrap().clone()
}

/// Every command, readers included (`show`, `runs`, `rejects`, `drift`, and also `serve`,
/// `worker`, `token`...: they all open the store of `--db` or kye.toml), takes the password
/// of `password_secret=` from the secrets file kye.toml names, and sends it to the server.
/// Before, only runs built by `RuntimeBuilder` did; the readers looked at the environment and
/// `KYE_SECRETS_FILE` alone and failed with "no secret".
#[test]
fn every_command_takes_a_password_secret_from_the_secrets_file_kye_toml_names() {
    let fake = FakePg::start(Tls::Decline);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("secrets.env"),
        "KYE_PGFIX_CLI_PW=pw-only-in-the-file\n",
    )
    .unwrap();
    let url = format!(
        "postgres://kye@127.0.0.1:{}/wh?sslmode=disable&password_secret=KYE_PGFIX_CLI_PW",
        fake.port
    );
    let config = dir.path().join("kye.toml");
    std::fs::write(
        &config,
        format!("store = \"{url}\"\n[secrets]\nfile = \"secrets.env\"\n"),
    )
    .unwrap();
    for db in [None, Some(url.as_str())] {
        let err = open_reader(&global(&config, db))
            .err()
            .expect("the fake server refuses every login")
            .to_string();
        assert!(err.contains("login refused after the password"), "{err}");
        assert!(!err.contains("pw-only-in-the-file"), "{err}");
    }
    assert_eq!(
        passwords(&fake),
        ["pw-only-in-the-file", "pw-only-in-the-file"]
    );
    // Found nowhere: an error naming the secret and where it was looked for, nothing sent.
    std::fs::write(dir.path().join("secrets.env"), "OTHER=x\n").unwrap();
    let err = open_reader(&global(&config, None))
        .err()
        .expect("no secret")
        .to_string();
    assert!(
        err.contains("password_secret=KYE_PGFIX_CLI_PW") && err.contains("secrets file"),
        "{err}"
    );
    assert_eq!(passwords(&fake).len(), 2);
}

/// A runtime given its secrets (`RuntimeBuilder::secrets`) takes the password from them and
/// from nothing else, as every other secret of that runtime. Before, a secret missing there
/// was looked up in the process's environment: `password_secret=HOME` sent the home
/// directory as the password.
#[test]
fn a_runtime_takes_a_password_secret_from_the_secrets_it_was_given_alone() {
    let fake = FakePg::start(Tls::Decline);
    let url = |name: &str| {
        format!(
            "postgres://kye@127.0.0.1:{}/wh?sslmode=disable&password_secret={name}",
            fake.port
        )
    };
    let build = |secrets: Secrets, url: String| {
        kye_runtime::Runtime::builder()
            .secrets(secrets)
            .store(url)
            .env(Vec::new())
            .handle_ctrl_c(false)
            .build()
            .map(|_| ())
            .expect_err("the fake server refuses every login")
            .to_string()
    };
    let mut given = Secrets::empty();
    given.insert("KYE_PGFIX_GIVEN", "pw-given-to-the-builder");
    let err = build(given.clone(), url("KYE_PGFIX_GIVEN"));
    assert!(err.contains("login refused after the password"), "{err}");
    assert!(!err.contains("pw-given-to-the-builder"), "{err}");
    assert_eq!(passwords(&fake), ["pw-given-to-the-builder"]);
    assert!(
        std::env::var_os("HOME").is_some(),
        "the test needs HOME set"
    );
    let err = build(Secrets::empty(), url("HOME"));
    assert!(
        err.contains("password_secret=HOME") && err.contains("not set"),
        "{err}"
    );
    assert_eq!(passwords(&fake).len(), 1, "nothing more was sent");
    // The spec that holds the resolved password never shows it.
    let mut spec: StoreSpec = url("KYE_PGFIX_GIVEN").parse().unwrap();
    let _ = spec.resolve_secrets(&given);
    let shown = format!("{spec} {spec:?}");
    assert!(!shown.contains("pw-given-to-the-builder"), "{shown}");
    assert!(shown.contains("password_secret=KYE_PGFIX_GIVEN"), "{shown}");
}

/// `sslrootcert=FILE` against a loopback endpoint whose certificate the test CA signed for the
/// name `localhost` only: `verify-full` passes by that name and refuses the address;
/// `verify-ca` checks the chain alone; a file of another CA is refused, and a bundle holding
/// both passes. As in libpq, a root certificate file makes `require` (and `prefer`) verify the
/// chain; without one they encrypt without verifying. `sslrootcert=system` trusts the
/// system's roots, which do not know the test CA. Before, `require` and `prefer` ignored the
/// file and took any certificate.
#[test]
fn sslrootcert_verifies_a_private_ca_as_libpq_does() {
    let fake = FakePg::start(Tls::TestCa);
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("bundle.pem");
    let text = std::fs::read_to_string(fixture("other-ca.pem")).unwrap()
        + &std::fs::read_to_string(fixture("ca.pem")).unwrap();
    std::fs::write(&bundle, text).unwrap();
    let ca = fixture("ca.pem");
    let other = fixture("other-ca.pem");
    let open = |host: &str, mode: &str, root: Option<&std::path::Path>| -> String {
        let root = root
            .map(|r| format!("&sslrootcert={}", r.display()))
            .unwrap_or_default();
        let spec: StoreSpec = format!(
            "postgres://kye:pw-over-tls@{host}:{}/wh?sslmode={mode}{root}",
            fake.port
        )
        .parse()
        .unwrap_or_else(|e| panic!("{e}"));
        let err = open_store(&spec)
            .err()
            .expect("the fake server refuses every login")
            .to_string();
        assert!(!err.contains("pw-over-tls"), "{err}");
        err
    };
    let logins = || *fake.logins.lock().unwrap();
    let reached = |err: &str| err.contains("login refused after the password");
    let mut n = 0;
    for (host, mode, root) in [
        ("localhost", "verify-full", Some(ca.as_path())),
        ("localhost", "verify-full", Some(bundle.as_path())),
        ("127.0.0.1", "verify-ca", Some(ca.as_path())),
        ("127.0.0.1", "require", Some(ca.as_path())),
        ("127.0.0.1", "prefer", Some(ca.as_path())),
        // No file: encrypted, nothing verified.
        ("127.0.0.1", "require", None),
        ("127.0.0.1", "prefer", None),
    ] {
        let err = open(host, mode, root);
        assert!(reached(&err), "{host} {mode} {root:?}: {err}");
        n += 1;
        assert_eq!(logins(), n, "{host} {mode}: over TLS");
    }
    for (host, mode, root, why) in [
        (
            "127.0.0.1",
            "verify-full",
            Some(ca.as_path()),
            "not valid for name",
        ),
        (
            "localhost",
            "verify-full",
            Some(other.as_path()),
            "UnknownIssuer",
        ),
        (
            "localhost",
            "verify-ca",
            Some(other.as_path()),
            "UnknownIssuer",
        ),
        (
            "localhost",
            "require",
            Some(other.as_path()),
            "UnknownIssuer",
        ),
        (
            "localhost",
            "prefer",
            Some(other.as_path()),
            "UnknownIssuer",
        ),
        (
            "localhost",
            "verify-full",
            Some(std::path::Path::new("system")),
            "UnknownIssuer",
        ),
    ] {
        let err = open(host, mode, root);
        assert!(!reached(&err), "{host} {mode} {root:?}: {err}");
        assert!(err.contains("certificate") && err.contains(why), "{err}");
        assert!(err.contains(&format!("{host}:{}", fake.port)), "{err}");
    }
    // Files that cannot be read or hold no certificate: named, nothing connects.
    std::fs::write(dir.path().join("notes.txt"), "not a certificate\n").unwrap();
    for file in [dir.path().join("missing.pem"), dir.path().join("notes.txt")] {
        let err = open("localhost", "verify-full", Some(&file));
        assert!(err.contains(&file.display().to_string()), "{err}");
    }
    assert_eq!(logins(), n, "no refused handshake reached the login");
}
