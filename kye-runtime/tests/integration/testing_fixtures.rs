//! `Fixtures::from_dir`: file-to-route mapping, aliases by id and name, generated resource
//! lists, and clear errors naming the file for broken fixture directories.

use std::path::Path;

use kye_runtime::testing::{FixtureError, Fixtures};

fn write(dir: &Path, relative: &str, text: &str) {
    let path = dir.join(relative);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

#[test]
fn files_become_routes_with_aliases_and_lists() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "pokemon/25.json",
        r#"{"id": 25, "name": "pikachu", "url": "{base}/pokemon/25/"}"#,
    );
    write(
        dir.path(),
        "pokemon/122.json",
        r#"{"id": 122, "name": "mr-mime"}"#,
    );
    // Named by name: aliased by id.
    write(
        dir.path(),
        "type/electric.json",
        r#"{"id": 13, "name": "electric"}"#,
    );
    // No id/name: only its own route, not listed.
    write(dir.path(), "misc/config.json", r#"[1, 2, 3]"#);
    // A name that cannot be a path segment gets no alias.
    write(
        dir.path(),
        "ability/1.json",
        r#"{"id": 1, "name": "has space"}"#,
    );
    write(dir.path(), "README.md", "not json");
    write(dir.path(), "root.json", "{}");

    let f = Fixtures::from_dir(dir.path()).unwrap();
    let paths: Vec<&str> = f.paths().collect();
    assert_eq!(
        paths,
        [
            "/ability/",
            "/ability/1/",
            "/misc/config/",
            "/pokemon/",
            "/pokemon/122/",
            "/pokemon/25/",
            "/pokemon/mr-mime/",
            "/pokemon/pikachu/",
            "/root/",
            "/type/",
            "/type/13/",
            "/type/electric/",
        ]
    );
    assert_eq!(f.get("/pokemon/pikachu/"), f.get("/pokemon/25/"));
    assert!(f.get("/pokemon/25/").unwrap().contains("{base}"));
    assert_eq!(
        f.file("/type/13/"),
        Some(dir.path().join("type/electric.json").as_path())
    );

    let list: serde_json::Value = serde_json::from_str(f.get("/pokemon/").unwrap()).unwrap();
    assert_eq!(
        list,
        serde_json::json!({
            "count": 2, "next": null, "previous": null,
            "results": [
                {"name": "pikachu", "url": "{base}/pokemon/25/"},
                {"name": "mr-mime", "url": "{base}/pokemon/122/"},
            ]
        })
    );
    // `root.json` has no id and name, so the top folder gets no list at `/`.
    assert!(f.get("/").is_none());
    // The three lists (`/ability/`, `/pokemon/`, `/type/`) are served by generators that page
    // (below), the rest as fixed routes.
    assert_eq!(f.routes().len(), f.len() - 3);
}

#[tokio::test]
async fn generated_lists_page_as_pokeapi_does() {
    let dir = tempfile::tempdir().unwrap();
    for (id, name) in [(1, "bulbasaur"), (4, "charmander"), (7, "squirtle")] {
        write(
            dir.path(),
            &format!("pokemon/{name}.json"),
            &format!(r#"{{"id": {id}, "name": "{name}"}}"#),
        );
    }
    let server = Fixtures::from_dir(dir.path())
        .unwrap()
        .serve()
        .await
        .unwrap();
    let ctx = kye_runtime::Context::new();
    let get = |path: String| {
        let ctx = ctx.clone();
        async move {
            ctx.get_json_value(&path)
                .await
                .unwrap_or_else(|e| panic!("{path}: {e}"))
        }
    };
    let base = server.base_url();
    let first = get(format!("{base}/pokemon/?limit=2")).await;
    assert_eq!(first["count"], 3);
    assert_eq!(first["previous"], serde_json::Value::Null);
    assert_eq!(first["results"][1]["url"], format!("{base}/pokemon/4/"));
    let next = first["next"].as_str().unwrap().to_string();
    assert_eq!(next, format!("{base}/pokemon/?offset=2&limit=2"));
    let second = get(next).await;
    assert_eq!(second["results"].as_array().unwrap().len(), 1);
    assert_eq!(second["results"][0]["name"], "squirtle");
    assert_eq!(second["next"], serde_json::Value::Null);
    assert_eq!(
        second["previous"],
        format!("{base}/pokemon/?offset=0&limit=2")
    );
    // Without `limit`: everything on one page, as before.
    let all = get(format!("{base}/pokemon/")).await;
    assert_eq!(all["results"].as_array().unwrap().len(), 3);
    assert_eq!(all["next"], serde_json::Value::Null);
    // A document under the folder is still its own route; an unknown one is 404.
    assert_eq!(get(format!("{base}/pokemon/7/")).await["name"], "squirtle");
    let missing = ctx.get_json_value(&format!("{base}/pokemon/999/")).await;
    assert_eq!(
        missing.unwrap_err().class(),
        kye_runtime::ErrorClass::Missing
    );
}

#[test]
fn two_files_claiming_one_route_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "pokemon/25.json",
        r#"{"id": 25, "name": "pikachu"}"#,
    );
    write(
        dir.path(),
        "pokemon/pikachu.json",
        r#"{"id": 25, "name": "pikachu"}"#,
    );
    let err = Fixtures::from_dir(dir.path()).unwrap_err();
    let FixtureError::Conflict {
        route,
        first,
        second,
    } = &err
    else {
        panic!("{err:?}");
    };
    assert!(
        route == "/pokemon/25/" || route == "/pokemon/pikachu/",
        "{route}"
    );
    assert_ne!(first, second);
    assert!(err.to_string().contains("both want route"));
}

#[test]
fn broken_fixtures_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "pokemon/1.json",
        r#"{"id": 1, "name": "bulbasaur",}"#,
    );
    let err = Fixtures::from_dir(dir.path()).unwrap_err();
    assert!(matches!(err, FixtureError::InvalidJson { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("pokemon/1.json") && text.contains("line 1"),
        "{text}"
    );

    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "bad name/1.json", "{}");
    let err = Fixtures::from_dir(dir.path()).unwrap_err();
    assert!(matches!(err, FixtureError::BadName { .. }), "{err:?}");

    let err = Fixtures::from_dir(dir.path().join("missing")).unwrap_err();
    assert!(matches!(err, FixtureError::Io { .. }), "{err:?}");
    assert!(err.to_string().contains("missing"));
}
