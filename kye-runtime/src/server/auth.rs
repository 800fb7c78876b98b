//! Who is asking and what they may do: API tokens (256 random bits, stored as SHA-256) and
//! the roles of kye.toml.
//!
//! ```toml
//! [roles.analyst]
//! read = ["Pokemon", "PokemonType"]   # records from the warehouse
//! fetch = ["Pokemon"]                 # have the server fetch on the caller's behalf
//! backfill = []                       # start runs
//! admin = false                       # the audit log (true, or a list: ["audit"])
//! [roles.ops]
//! read = ["*"]                        # every model
//! backfill = ["*"]
//! admin = true
//! [roles.cats]
//! read = ["source:cats"]              # every model the `cats` source's functions provide
//! ```

use std::collections::{BTreeMap, BTreeSet};

use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::source::Sources;

/// Every token starts with this, so that a token found in a log or a repository is
/// recognizable (and a scanner can look for it).
pub(crate) const TOKEN_PREFIX: &str = "kye_";

/// A new token: [`TOKEN_PREFIX`] and 64 hex digits (256 random bits).
pub(crate) fn new_token() -> Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| Error::permanent(format!("no random bytes from the operating system: {e}")))?;
    let mut token = String::with_capacity(TOKEN_PREFIX.len() + 64);
    token.push_str(TOKEN_PREFIX);
    for b in bytes {
        token.push_str(&format!("{b:02x}"));
    }
    Ok(token)
}

/// Whether `text` has the shape of a token (a malformed one is refused before any lookup).
pub(crate) fn well_formed(text: &str) -> bool {
    text.strip_prefix(TOKEN_PREFIX).is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// What the store keeps of a token: lowercase hex SHA-256.
pub(crate) fn hash_token(token: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = Sha256::digest(token.as_bytes());
    let mut hex = String::with_capacity(64);
    for b in digest {
        hex.push(char::from(HEX[usize::from(b >> 4)]));
        hex.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    hex
}

/// Models a permission covers: all (`"*"`) or some.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) enum Models {
    /// None.
    #[default]
    None,
    /// Every model.
    All,
    /// These models.
    Some(BTreeSet<String>),
}

impl Models {
    pub(crate) fn allows(&self, model: &str) -> bool {
        match self {
            Models::None => false,
            Models::All => true,
            Models::Some(set) => set.contains(model),
        }
    }
}

/// One role of `[roles.NAME]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Role {
    pub read: Models,
    pub fetch: Models,
    pub backfill: Models,
    /// Admin areas: `audit` (the audit log). `admin = true` is every area.
    pub admin: BTreeSet<String>,
    pub admin_all: bool,
}

impl Role {
    pub(crate) fn may_admin(&self, area: &str) -> bool {
        self.admin_all || self.admin.contains(area)
    }
}

/// A role entry naming a source rather than a model: `"source:cats"`.
pub(crate) const SOURCE_PREFIX: &str = "source:";

/// Per model, the sources whose functions provide it (`None`: a function of no source).
pub(crate) type Providers = BTreeMap<String, BTreeSet<Option<&'static str>>>;

/// Which sources provide each model of `registry`: its fetchers, list functions and
/// transformers, each through the source it names.
pub(crate) fn providers(registry: &crate::Registry) -> Providers {
    let sources = registry.sources();
    let mut out = Providers::new();
    let mut add = |model: &str, scope: &str| {
        out.entry(model.to_string())
            .or_default()
            .insert(sources.source_of(scope).map(|s| s.name));
    };
    for f in registry.fetchers() {
        add(f.model, &f.identifier_text());
    }
    for l in registry.listers() {
        add(l.model, l.function);
    }
    for t in registry.transformers() {
        add(t.output, t.function);
    }
    out
}

/// Admin areas a role may name.
const ADMIN_AREAS: &[&str] = &["audit"];

/// The roles of kye.toml.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Roles(BTreeMap<String, Role>);

impl Roles {
    /// Reads `[roles.*]`. Unknown keys and wrong types are errors naming the role and key.
    pub(crate) fn from_config(config: &Config) -> Result<Roles> {
        let mut roles = BTreeMap::new();
        let Some(table) = config.table("roles") else {
            return Ok(Roles(roles));
        };
        for (name, entry) in table {
            let bad = |key: &str, why: &str| {
                Error::permanent(format!("kye.toml: [roles.{name}] {key}: {why}"))
            };
            let Some(entry) = entry.as_table() else {
                return Err(bad("", "expected a table ([roles.NAME] read = [...])"));
            };
            let mut role = Role::default();
            for (key, value) in entry {
                match key.as_str() {
                    "read" | "fetch" | "backfill" => {
                        let models = models(value).map_err(|why| bad(key, &why))?;
                        match key.as_str() {
                            "read" => role.read = models,
                            "fetch" => role.fetch = models,
                            _ => role.backfill = models,
                        }
                    }
                    "admin" => match value {
                        toml::Value::Boolean(b) => role.admin_all = *b,
                        toml::Value::Array(items) => {
                            for item in items {
                                let area = item.as_str().filter(|a| ADMIN_AREAS.contains(a));
                                let Some(area) = area else {
                                    return Err(bad(
                                        key,
                                        &format!(
                                            "expected true, false or a list of {}",
                                            ADMIN_AREAS.join(", ")
                                        ),
                                    ));
                                };
                                role.admin.insert(area.to_string());
                            }
                        }
                        _ => return Err(bad(key, "expected true, false or a list of areas")),
                    },
                    other => {
                        return Err(bad(
                            other,
                            "unknown permission (known: read, fetch, backfill, admin)",
                        ))
                    }
                }
            }
            roles.insert(name.clone(), role);
        }
        Ok(Roles(roles))
    }

    /// Entries naming a source (`"source:NAME"`) replaced by the models that source's
    /// fetchers, list functions and transformers provide. A source the binary does not
    /// declare is an error naming the role and the permission.
    ///
    /// `providers` says which sources provide each model (`None`: a function of no source): a
    /// source entry is refused when one of its models is provided by anything else too, since
    /// roles are checked per model and the entry would grant the other provider's records and
    /// fetches (and credentials) as well.
    pub(crate) fn with_sources(
        mut self,
        sources: &Sources,
        providers: &Providers,
    ) -> Result<Roles> {
        for (name, role) in &mut self.0 {
            for (key, models) in [
                ("read", &mut role.read),
                ("fetch", &mut role.fetch),
                ("backfill", &mut role.backfill),
            ] {
                let Models::Some(set) = models else {
                    continue;
                };
                let named: Vec<String> = set
                    .iter()
                    .filter(|m| m.starts_with(SOURCE_PREFIX))
                    .cloned()
                    .collect();
                for entry in named {
                    set.remove(&entry);
                    let source = &entry[SOURCE_PREFIX.len()..];
                    if sources.get(source).is_none() {
                        let declared: Vec<&str> = sources.iter().map(|s| s.name).collect();
                        return Err(Error::permanent(format!(
                            "kye.toml: [roles.{name}] {key}: no source {source:?} is declared ({})",
                            if declared.is_empty() {
                                "this binary declares none".to_string()
                            } else {
                                format!("sources: {}", declared.join(", "))
                            }
                        )));
                    }
                    for model in sources.models_of(source) {
                        let others: Vec<String> = providers
                            .get(model)
                            .into_iter()
                            .flatten()
                            .filter(|p| **p != Some(source))
                            .map(|p| match p {
                                Some(other) => format!("source {other:?}"),
                                None => "a function of no source".to_string(),
                            })
                            .collect();
                        if !others.is_empty() {
                            return Err(Error::permanent(format!(
                                "kye.toml: [roles.{name}] {key}: {entry:?} would also grant {model}, \
                                 which {} provides too; name the models instead",
                                others.join(" and ")
                            )));
                        }
                        set.insert(model.to_string());
                    }
                }
                if set.is_empty() {
                    *models = Models::None;
                }
            }
        }
        Ok(self)
    }

    pub(crate) fn get(&self, name: &str) -> Option<&Role> {
        self.0.get(name)
    }

    #[cfg(any(test, feature = "cli"))]
    pub(crate) fn names(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }

    /// An error for a role that kye.toml does not define.
    #[cfg(any(test, feature = "cli"))]
    pub(crate) fn unknown(&self, name: &str) -> Error {
        let known = self.names();
        Error::permanent(format!(
            "no role {name:?} in kye.toml ({}): add [roles.{name}] with read = [...], fetch, \
             backfill, admin",
            if known.is_empty() {
                "it defines no roles".to_string()
            } else {
                format!("roles: {}", known.join(", "))
            }
        ))
    }
}

fn models(value: &toml::Value) -> std::result::Result<Models, String> {
    let items = value
        .as_array()
        .ok_or_else(|| "expected a list of model names, or [\"*\"]".to_string())?;
    let mut set = BTreeSet::new();
    for item in items {
        let name = item
            .as_str()
            .ok_or_else(|| "expected a list of model names (strings)".to_string())?;
        set.insert(name.to_string());
    }
    if set.contains("*") {
        if let Some(entry) = set.iter().find(|m| m.starts_with(SOURCE_PREFIX)) {
            return Err(format!(
                "\"*\" already covers every model: drop {entry:?} (or the \"*\")"
            ));
        }
        return Ok(Models::All);
    }
    Ok(if set.is_empty() {
        Models::None
    } else {
        Models::Some(set)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_well_formed_and_hashed() {
        let a = new_token().unwrap();
        let b = new_token().unwrap();
        assert_ne!(a, b);
        assert!(well_formed(&a), "{a}");
        assert!(!well_formed("kye_xyz"));
        assert!(!well_formed(&a.to_uppercase()));
        assert!(!well_formed(&format!("{a}0")));
        assert_eq!(hash_token(&a).len(), 64);
        // SHA-256 of "abc", as published (FIPS 180-2, appendix B.1).
        assert_eq!(
            hash_token("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_ne!(hash_token(&a), hash_token(&b));
    }

    #[test]
    fn a_role_naming_a_source_covers_the_models_its_functions_provide() {
        use crate::source::{MemberKind, SourceMember, SourceRegistration};
        fn source(name: &'static str) -> &'static SourceRegistration {
            Box::leak(Box::new(crate::source::tests::source(name)))
        }
        fn member(source: &'static str, kind: MemberKind, model: &'static str) -> SourceMember {
            SourceMember {
                source,
                kind,
                model,
                identifier: &[],
                function: model,
            }
        }
        let members: &'static [SourceMember] = Box::leak(Box::new([
            member("cats", MemberKind::Fetcher, "Cat"),
            member("cats", MemberKind::Lister, "Owner"),
            member("cats", MemberKind::Transformer, "CatCard"),
            member("dogs", MemberKind::Fetcher, "Dog"),
        ]));
        let sources =
            Sources::from_parts([source("cats"), source("dogs")], members.iter()).unwrap();
        let mut providers = Providers::new();
        for m in members.iter() {
            providers
                .entry(m.model.to_string())
                .or_default()
                .insert(Some(m.source));
        }
        let config = Config::from_toml_str(
            "[roles.cats]\nread = [\"source:cats\", \"Dog\"]\nfetch = [\"source:cats\"]\n\
             [roles.none]\nread = [\"source:dogs\"]\n",
            None,
        )
        .unwrap();
        let roles = Roles::from_config(&config)
            .unwrap()
            .with_sources(&sources, &providers)
            .unwrap();
        let cats = roles.get("cats").unwrap();
        for model in ["Cat", "Owner", "CatCard", "Dog"] {
            assert!(cats.read.allows(model), "{model}");
        }
        assert!(cats.fetch.allows("CatCard") && !cats.fetch.allows("Dog"));
        assert!(
            !cats.read.allows("source:cats"),
            "the entry itself is no model"
        );
        assert!(roles.get("none").unwrap().read.allows("Dog"));
        let bad = Config::from_toml_str("[roles.x]\nfetch = [\"source:birds\"]\n", None).unwrap();
        let e = Roles::from_config(&bad)
            .unwrap()
            .with_sources(&sources, &providers)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("[roles.x] fetch") && e.contains("\"birds\"") && e.contains("cats, dogs"),
            "{e}"
        );
        // A model another provider offers too: granting the source would grant that one.
        let config = Config::from_toml_str("[roles.x]\nread = [\"source:cats\"]\n", None).unwrap();
        for other in [Some("dogs"), None] {
            let mut shared = providers.clone();
            shared.get_mut("Cat").unwrap().insert(other);
            let e = Roles::from_config(&config)
                .unwrap()
                .with_sources(&sources, &shared)
                .unwrap_err()
                .to_string();
            assert!(e.contains("would also grant Cat"), "{e}");
            assert!(
                e.contains(if other.is_some() {
                    "source \"dogs\""
                } else {
                    "no source"
                }),
                "{e}"
            );
        }
        // Beside "*" a source entry is a mistake, not silently ignored.
        let star =
            Config::from_toml_str("[roles.x]\nread = [\"*\", \"source:typo\"]\n", None).unwrap();
        let e = Roles::from_config(&star).unwrap_err().to_string();
        assert!(e.contains("already covers every model"), "{e}");
    }

    #[test]
    fn roles_read_from_kye_toml_and_bad_ones_name_the_key() {
        let config = Config::from_toml_str(
            r#"
            [roles.analyst]
            read = ["Pokemon", "PokemonType"]
            fetch = ["Pokemon"]
            [roles.ops]
            read = ["*"]
            backfill = ["*"]
            admin = true
            [roles.auditor]
            admin = ["audit"]
            "#,
            None,
        )
        .unwrap();
        let roles = Roles::from_config(&config).unwrap();
        let analyst = roles.get("analyst").unwrap();
        assert!(analyst.read.allows("PokemonType") && !analyst.fetch.allows("PokemonType"));
        assert!(!analyst.may_admin("audit") && analyst.backfill == Models::None);
        let ops = roles.get("ops").unwrap();
        assert!(ops.read.allows("Anything") && ops.may_admin("audit"));
        assert!(roles.get("auditor").unwrap().may_admin("audit"));
        let bad = Config::from_toml_str("[roles.x]\nwrite = [\"A\"]\n", None).unwrap();
        let e = Roles::from_config(&bad).unwrap_err().to_string();
        assert!(
            e.contains("[roles.x] write") && e.contains("unknown permission"),
            "{e}"
        );
        let e = roles.unknown("intern").to_string();
        assert!(e.contains("analyst, auditor, ops"), "{e}");
    }
}
