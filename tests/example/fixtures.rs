//! The Pokémon example's schema and hand-written PokeAPI fixtures: the schema compiles with the
//! required edges, the fixtures are internally consistent (every link resolves, type charts
//! and membership lists agree both ways), and the documented awkward cases are present; the
//! documents `examples/pokemon/synthetic.rs` makes from them have PokeAPI's shape and size.
//! That the example's own mapping of each document validates against the schema except where
//! it must not is tested with that mapping in `tests/example/mapping_checks.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use kye::lang::{Cardinality, Primitive, Schema, Type};
use kye::testing::{Fixtures, TestServer};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::synthetic::{real_size, Sizes, Synthetic};

fn example_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/pokemon")
}

fn schema() -> Schema {
    let path = example_dir().join("pokemon.kye");
    let text = std::fs::read_to_string(&path).unwrap();
    kye::lang::compile_str("pokemon.kye", &text).unwrap_or_else(|e| panic!("{}", e.render(false)))
}

fn fixtures() -> Fixtures {
    Fixtures::from_dir(example_dir().join("fixtures")).unwrap()
}

/// The document at `path`, with `{base}` left in place.
fn doc(f: &Fixtures, path: &str) -> Value {
    serde_json::from_str(
        f.get(path)
            .unwrap_or_else(|| panic!("no fixture at {path}")),
    )
    .unwrap()
}

/// Documents of one folder (`/pokemon/`), by id.
fn folder(f: &Fixtures, name: &str) -> BTreeMap<i64, Value> {
    let prefix = format!("/{name}/");
    f.paths()
        .filter(|p| p.starts_with(&prefix) && p.len() > prefix.len())
        .filter_map(|p| {
            let segment = &p[prefix.len()..p.len() - 1];
            segment.parse::<i64>().ok().map(|id| (id, doc(f, p)))
        })
        .collect()
}

/// `{base}/type/13/` -> `/type/13/`.
fn route_of(url: &Value) -> String {
    url.as_str()
        .unwrap()
        .strip_prefix("{base}")
        .unwrap_or_else(|| panic!("{url} is not relative to {{base}}"))
        .to_owned()
}

#[test]
fn schema_has_the_six_required_edges() {
    let schema = schema();
    assert!(schema.warnings().is_empty(), "{:?}", schema.warnings());
    let pokemon = schema.model("Pokemon").unwrap();
    assert_eq!(pokemon.indexes[0].edges, ["id"]);
    assert_eq!(pokemon.indexes[1].edges, ["name"]);
    let expect = [
        ("id", Cardinality::One, Type::Primitive(Primitive::Number)),
        ("name", Cardinality::One, Type::Primitive(Primitive::String)),
        (
            "weight",
            Cardinality::One,
            Type::Primitive(Primitive::Number),
        ),
        (
            "height",
            Cardinality::One,
            Type::Primitive(Primitive::Number),
        ),
        (
            "base_experience",
            Cardinality::One,
            Type::Primitive(Primitive::Number),
        ),
        (
            "types",
            Cardinality::AtLeastOne,
            Type::Model("PokemonType".into()),
        ),
        (
            "abilities",
            Cardinality::AtLeastOne,
            Type::Model("PokemonAbility".into()),
        ),
    ];
    for (name, card, ty) in expect {
        let edge = pokemon
            .edge(name)
            .unwrap_or_else(|| panic!("Pokemon.{name} missing"));
        assert_eq!((edge.cardinality, &edge.ty), (card, &ty), "Pokemon.{name}");
    }
    for model in ["PokemonType", "PokemonAbility"] {
        let m = schema.model(model).unwrap();
        assert_eq!(
            m.primary_index().map(|ix| ix.edges.clone()),
            Some(vec!["name".to_string()]),
            "{model}"
        );
        assert!(m.doc.is_some(), "{model} has no doc comment");
    }
    assert!(pokemon.doc.is_some());
    assert!(pokemon.edge("base_experience").unwrap().doc.is_some());
}

#[test]
fn fixtures_cover_the_documented_pokemon_with_all_their_types_and_abilities() {
    let f = fixtures();
    let pokemon = folder(&f, "pokemon");
    let types = folder(&f, "type");
    let abilities = folder(&f, "ability");
    assert!(pokemon.len() >= 12, "{} Pokémon", pokemon.len());
    for id in [1, 4, 7, 25, 39, 52, 92, 122, 132, 133, 143, 150] {
        assert!(pokemon.contains_key(&id), "Pokémon {id} missing");
    }
    assert!(
        f.get("/pokemon/151/").is_none(),
        "151 is documented as absent"
    );

    for (id, p) in &pokemon {
        assert_eq!(p["id"], *id);
        let name = p["name"].as_str().unwrap();
        // Served by id and by name from one file.
        assert_eq!(
            f.file(&format!("/pokemon/{id}/")),
            f.file(&format!("/pokemon/{name}/"))
        );
        for (list, key, folder_docs) in [
            ("types", "type", &types),
            ("abilities", "ability", &abilities),
        ] {
            let entries = p[list].as_array().unwrap();
            assert!(!entries.is_empty(), "{name} has no {list}");
            let slots: Vec<i64> = entries
                .iter()
                .map(|e| e["slot"].as_i64().unwrap())
                .collect();
            assert!(
                slots.windows(2).all(|w| w[0] < w[1]),
                "{name} {list} slots {slots:?}"
            );
            for e in entries {
                let link = &e[key];
                let target = doc(&f, &route_of(&link["url"]));
                assert_eq!(target["name"], link["name"], "{name} links {link}");
                assert!(folder_docs.contains_key(&target["id"].as_i64().unwrap()));
                // The target lists this Pokémon back, with the same slot (and hidden flag).
                let back = target["pokemon"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|m| m["pokemon"]["name"] == name)
                    .unwrap_or_else(|| panic!("{} does not list {name}", target["name"]));
                assert_eq!(back["slot"], e["slot"], "{name} in {}", target["name"]);
                assert_eq!(
                    back["pokemon"]["url"],
                    json!(format!("{{base}}/pokemon/{id}/"))
                );
                if key == "ability" {
                    assert_eq!(
                        back["is_hidden"], e["is_hidden"],
                        "{name} {}",
                        target["name"]
                    );
                }
            }
        }
        // Stats: six, in PokeAPI order, with an effort yield somewhere.
        let stats: Vec<&str> = p["stats"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["stat"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            stats,
            [
                "hp",
                "attack",
                "defense",
                "special-attack",
                "special-defense",
                "speed"
            ]
        );
        assert!(p["stats"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["effort"].as_i64() > Some(0)));
    }
    // Every type and ability document is used by some fixture Pokémon (no orphans), and
    // membership lists only name fixture Pokémon by the right URL when they are fixtures.
    for (kind, docs) in [("type", &types), ("ability", &abilities)] {
        for d in docs.values() {
            let members = d["pokemon"].as_array().unwrap();
            assert!(
                members.iter().any(|m| {
                    let id = route_of(&m["pokemon"]["url"]);
                    f.get(&id).is_some()
                }),
                "{kind} {} is used by no fixture Pokémon",
                d["name"]
            );
        }
    }
}

#[test]
fn type_chart_is_consistent_both_ways() {
    let f = fixtures();
    let types: BTreeMap<String, Value> = folder(&f, "type")
        .into_values()
        .map(|t| (t["name"].as_str().unwrap().to_owned(), t))
        .collect();
    let names = |t: &Value, rel: &str| -> BTreeSet<String> {
        t["damage_relations"][rel]
            .as_array()
            .unwrap_or_else(|| panic!("{} lacks {rel}", t["name"]))
            .iter()
            .map(|r| {
                let n = r["name"].as_str().unwrap().to_owned();
                // Links point at the type's real id even when that type is not a fixture.
                assert!(route_of(&r["url"]).starts_with("/type/"));
                n
            })
            .collect()
    };
    for (a, ta) in &types {
        for (b, tb) in &types {
            for (to, from) in [
                ("double_damage_to", "double_damage_from"),
                ("half_damage_to", "half_damage_from"),
                ("no_damage_to", "no_damage_from"),
            ] {
                assert_eq!(
                    names(ta, to).contains(b),
                    names(tb, from).contains(a),
                    "{a}.{to} vs {b}.{from}"
                );
            }
        }
    }
    // Spot checks of the real chart.
    assert_eq!(
        names(&types["electric"], "no_damage_to"),
        BTreeSet::from(["ground".into()])
    );
    assert_eq!(
        names(&types["normal"], "no_damage_from"),
        BTreeSet::from(["ghost".into()])
    );
    assert!(names(&types["fairy"], "no_damage_from").contains("dragon"));
    assert_eq!(types["fairy"]["generation"]["name"], "generation-vi");
}

#[test]
fn awkward_cases_are_present() {
    let f = fixtures();
    let pokemon = folder(&f, "pokemon");
    let nulls: Vec<&str> = pokemon
        .values()
        .filter(|p| p["base_experience"].is_null())
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(nulls, ["haunter"]);
    assert!(f.get("/pokemon/mr-mime/").is_some());
    assert!(pokemon
        .values()
        .any(|p| p["types"].as_array().unwrap().len() == 2));
    assert!(pokemon.values().any(|p| p["abilities"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["is_hidden"] == true)));
    let stat = doc(&f, "/ability/static/");
    let langs: Vec<&str> = stat["effect_entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["language"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        langs,
        ["de", "en"],
        "English must not be first, so [0] is wrong"
    );
    assert_eq!(
        doc(&f, "/type/fire/")["damage_relations"]["no_damage_to"],
        json!([])
    );
    assert!(doc(&f, "/pokemon/25/").get("cries").is_some());
    assert_eq!(
        pokemon
            .values()
            .filter(|p| p.get("cries").is_some())
            .count(),
        1,
        "drift is one document only"
    );
}

/// One GET over a raw connection; returns status and body.
async fn fetch(server: &TestServer, path: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).await.unwrap();
    let status = raw[9..12].parse().unwrap();
    let body = raw.split_once("\r\n\r\n").unwrap().1.to_owned();
    (status, body)
}

#[tokio::test]
async fn offline_server_serves_the_fixtures_with_absolute_urls() {
    let f = fixtures();
    let server = f.serve().await.unwrap();
    let base = server.base_url().to_owned();

    let (status, body) = fetch(&server, "/pokemon/pikachu/").await;
    assert_eq!(status, 200);
    let p: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(p["id"], 25);
    let type_url = p["types"][0]["type"]["url"].as_str().unwrap();
    assert_eq!(type_url, format!("{base}/type/13/"));
    assert!(!body.contains("{base}"));

    // Following the absolute URL on the same server works.
    let (status, body) = fetch(&server, type_url.strip_prefix(&base).unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["name"],
        "electric"
    );

    assert_eq!(fetch(&server, "/pokemon/151/").await.0, 404);
    assert_eq!(fetch(&server, "/pokemon/25").await.0, 200);

    // The generated resource list names every fixture Pokémon with an absolute URL.
    let (status, body) = fetch(&server, "/pokemon/").await;
    assert_eq!(status, 200);
    let list: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(list["count"], folder(&f, "pokemon").len());
    assert_eq!(
        list["results"][0],
        json!({"name": "bulbasaur", "url": format!("{base}/pokemon/1/")})
    );
    // Aliases are routes of their own, counted separately.
    assert_eq!(server.requests("/pokemon/25/"), 1);
    assert_eq!(server.requests("/pokemon/pikachu/"), 1);
}

#[tokio::test]
async fn synthetic_pokemon_are_large_realistic_and_resolvable() {
    let f = fixtures();
    let synthetic = Synthetic::new(&f, Sizes::About(30_000)).unwrap();
    let server = TestServer::start(synthetic.routes(&f, 5_000))
        .await
        .unwrap();
    let base = server.base_url().to_owned();

    let (status, body) = fetch(&server, "/pokemon/4321/").await;
    assert_eq!(status, 200);
    assert!(
        body.len() >= 30_000 && body.len() < 33_000,
        "{} bytes",
        body.len()
    );
    assert!(!body.contains("{base}"));
    let p: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(p["id"], 4321);
    let name = p["name"].as_str().unwrap().to_owned();
    assert!(name.ends_with("-4321"), "{name}");
    // Deterministic, and served by name too.
    assert_eq!(fetch(&server, &format!("/pokemon/{name}/")).await.1, body);
    assert_eq!(fetch(&server, "/pokemon/4321/").await.1, body);
    // References resolve to fixture documents on the same server.
    for t in p["types"].as_array().unwrap() {
        let url = t["type"]["url"].as_str().unwrap();
        assert_eq!(
            fetch(&server, url.strip_prefix(&base).unwrap()).await.0,
            200
        );
    }
    // A fixture's own id is its fixture, grown to the size: by id and by name, the same.
    let (_, body) = fetch(&server, "/pokemon/25/").await;
    let pikachu: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(pikachu["name"], "pikachu");
    let cries = doc(&f, "/pokemon/25/")["cries"]["latest"]
        .as_str()
        .unwrap()
        .replace("{base}", &base);
    assert_eq!(pikachu["cries"]["latest"], cries.as_str());
    assert!(body.len() >= 30_000, "{} bytes", body.len());
    assert_eq!(fetch(&server, "/pokemon/pikachu/").await.1, body);
    // Out of range, or a name that is not the one generated, is 404.
    assert_eq!(fetch(&server, "/pokemon/5001/").await.0, 404);
    assert_eq!(fetch(&server, "/pokemon/0/").await.0, 404);
    assert_eq!(fetch(&server, "/pokemon/pikachu-25/").await.0, 404);
    assert_eq!(fetch(&server, "/pokemon/nobody-77/").await.0, 404);
    // That every synthetic document maps to a valid record with no drift, through the
    // example's own mapping, is checked in tests/example/mapping_checks.rs.
}

#[test]
fn real_sizes_run_from_20_to_600_kb_with_a_mean_of_250_kb() {
    let sizes: Vec<usize> = (1..=10_000).map(real_size).collect();
    let mean = sizes.iter().sum::<usize>() as f64 / sizes.len() as f64;
    assert!((245_000.0..255_000.0).contains(&mean), "mean {mean}");
    assert!(sizes.iter().all(|s| (20_000..=600_000).contains(s)));
    // Spread over the whole range, not bunched at the mean.
    assert!(sizes.iter().filter(|s| **s < 50_000).count() > 1_000);
    assert!(sizes.iter().filter(|s| **s > 500_000).count() > 500);
    // The same for the first thousand ids, which the benchmarks use.
    let first: f64 = sizes[..1_000].iter().sum::<usize>() as f64 / 1_000.0;
    assert!(
        (235_000.0..265_000.0).contains(&first),
        "mean of 1..=1000: {first}"
    );
}

#[test]
fn real_size_documents_have_pokeapis_shape() {
    let f = fixtures();
    let synthetic = Synthetic::new(&f, Sizes::Real).unwrap();
    // The largest and the smallest target among the first 200 ids, pikachu, and haunter.
    let ids: Vec<u32> = (1..=200).collect();
    let largest = *ids.iter().max_by_key(|id| real_size(**id)).unwrap();
    let smallest = *ids.iter().min_by_key(|id| real_size(**id)).unwrap();
    for id in [largest, smallest, 25, 93, 94] {
        let text = synthetic.document(id);
        assert_eq!(text, synthetic.document(id), "{id}: deterministic");
        // As served, `{base}` is `http://127.0.0.1:PORT`; sizes count that.
        let served = text.replace("{base}", "http://127.0.0.1:40000");
        let target = real_size(id);
        // At least the target; over it by less than one move entry (or the document without
        // moves is larger than a small target).
        assert!(
            served.len() + 1 >= target && served.len() < target.max(30_000) + 6_000,
            "{id}: {} bytes for a target of {target}",
            served.len()
        );
        let p: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(p["id"], id);
        let moves = p["moves"].as_array().unwrap();
        assert!(!moves.is_empty());
        for m in moves {
            let details = m["version_group_details"].as_array().unwrap();
            assert!((1..=27).contains(&details.len()), "{id}: {m}");
            assert!(details[0]["version_group"]["name"].is_string());
            assert!(details[0]["move_learn_method"]["url"].is_string());
        }
        let versions = p["sprites"]["versions"].as_object().unwrap();
        assert_eq!(versions.len(), 8, "generation-i to generation-viii");
        assert!(p["sprites"]["other"]["official-artwork"]["front_default"].is_string());
        assert_eq!(p["game_indices"].as_array().unwrap().len(), 20);
        assert!(p["held_items"].is_array());
        // Everything the model maps is there as PokeAPI has it.
        for key in [
            "name",
            "height",
            "weight",
            "types",
            "abilities",
            "stats",
            "species",
        ] {
            assert!(p.get(key).is_some(), "{id}: {key}");
        }
    }
    // The fixtures' awkward cases survive growing: haunter's null, pikachu's drift field.
    let haunter: Value = serde_json::from_str(&synthetic.document(93)).unwrap();
    assert!(haunter["base_experience"].is_null());
    let pikachu: Value = serde_json::from_str(&synthetic.document(25)).unwrap();
    assert!(pikachu["cries"].is_object());
    let other: Value = serde_json::from_str(&synthetic.document(94)).unwrap();
    assert!(other.get("cries").is_none());
}
