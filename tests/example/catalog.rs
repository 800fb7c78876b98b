//! The catalog (issue 16) in a real browser: the example's `serve` on 127.0.0.1 in front of
//! its fixtures, a few records read through, haunter's reject and pikachu's drift, then
//! `node tests/browser/catalog.mjs URL TOKEN OUTDIR` drives Debian's chromium headless
//! (playwright-core) through every page. Screenshots go to
//! `target/tmp/catalog-screenshots/` and are checked non-blank.
//!
//! Needs `/usr/bin/chromium` (or `KYE_CHROMIUM`), `node`, and `npm ci` in `tests/browser`:
//! without them the test prints why and passes, except under `CI=true`, where it fails
//! (`.ci/run` installs them first).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::serve::{http, run, serve, text};

/// Why the browser test cannot run here, if it cannot.
fn missing(browser_dir: &Path, chromium: &Path) -> Option<String> {
    if !chromium.exists() {
        return Some(format!(
            "{} is absent (apt-get install -y chromium)",
            chromium.display()
        ));
    }
    let node = Command::new("node").arg("--version").output();
    if !node.is_ok_and(|o| o.status.success()) {
        return Some("node is not on PATH".into());
    }
    if !browser_dir.join("node_modules/playwright-core").is_dir() {
        return Some(format!(
            "{}/node_modules is absent (npm ci in tests/browser)",
            browser_dir.display()
        ));
    }
    None
}

/// The fixtures plus Pokémon 9000..=9039, each answered 404 after 300 ms: a backfill of them
/// runs long enough for its progress to be watched.
fn slow_source() -> kye::testing::TestServer {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/pokemon/fixtures");
    let fixtures = kye::testing::Fixtures::from_dir(dir).unwrap();
    let routes = fixtures.routes().generate("/pokemon/", |rest| {
        let id: u32 = rest.trim_end_matches('/').parse().ok()?;
        (9000..=9039).contains(&id).then(|| {
            std::thread::sleep(Duration::from_millis(300));
            kye::testing::Route::text(404, "no such Pokémon")
        })
    });
    kye::testing::TestServer::start_on_thread(routes).unwrap()
}

#[test]
fn the_catalog_works_in_chromium_for_a_full_and_a_limited_role() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let browser_dir = root.join("tests/browser");
    let chromium = std::env::var_os("KYE_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    if let Some(why) = missing(&browser_dir, &chromium) {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "the catalog's browser test cannot run under CI=true: {why}"
        );
        println!("catalog browser test skipped: {why}");
        return;
    }

    let sandbox = tempfile::tempdir().unwrap();
    let dir = sandbox.path();
    std::fs::write(
        dir.join("kye.toml"),
        "[roles.ops]\nread = [\"*\"]\nfetch = [\"*\"]\nbackfill = [\"*\"]\nadmin = true\n\
         [roles.no_types]\nread = [\"Pokemon\", \"PokemonAbility\"]\n",
    )
    .unwrap();
    let token = |name: &str, role: &str| {
        let out = run(dir, &["token", "create", name, "--role", role], &[], "");
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout).trim().to_string()
    };
    let ops = token("ops", "ops");
    let limited = token("limited", "no_types");

    let source = slow_source();
    let serving = serve(dir, source.base_url(), &[]);
    let addr = serving.addr.clone();
    // Records read through (pikachu brings drift: `cries`), haunter's reject.
    for path in [
        "/v1/models/Pokemon/records?id=1",
        "/v1/models/Pokemon/records?id=4",
        "/v1/models/Pokemon/records?id=25",
        "/v1/models/PokemonType/records?name=grass",
        "/v1/models/PokemonType/records?name=poison",
        "/v1/models/PokemonAbility/records?name=overgrow",
    ] {
        let (status, body) = http(&addr, path, Some(&ops));
        assert_eq!(status, 200, "{path}: {body}");
    }
    let (status, body) = http(&addr, "/v1/models/Pokemon/records?id=93", Some(&ops));
    assert_eq!(status, 422, "haunter is quarantined: {body}");

    let out_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("catalog-screenshots");
    let _ = std::fs::remove_dir_all(&out_dir);
    let out = Command::new("node")
        .arg(browser_dir.join("catalog.mjs"))
        .arg(format!("http://{addr}"))
        .arg(&ops)
        .arg(&out_dir)
        .env("KYE_LIMITED_TOKEN", &limited)
        .env("KYE_CHROMIUM", &chromium)
        .output()
        .unwrap();
    let (status, stderr) = serving.stop();
    println!("{}", text(&out.stdout));
    assert!(
        out.status.success(),
        "the browser checks failed:\n{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(status.success(), "serve stopped badly: {stderr}");
    for name in [
        "models", "lineage", "record", "records", "rejects", "drift", "runs",
    ] {
        let png = out_dir.join(format!("{name}.png"));
        let bytes = std::fs::read(&png).unwrap_or_else(|e| panic!("{}: {e}", png.display()));
        assert!(
            bytes.starts_with(b"\x89PNG") && bytes.len() > 10_000,
            "{} is {} bytes",
            png.display(),
            bytes.len()
        );
    }
    for secret in [&ops, &limited] {
        assert!(!stderr.contains(secret.as_str()), "a token in serve's log");
    }
}
