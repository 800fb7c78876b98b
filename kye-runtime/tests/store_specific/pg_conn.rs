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
            .err()
            .expect("the fake server refuses every login")
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
