//! Turning kye names into Rust identifiers.

/// Rust keywords (strict and reserved) that cannot be plain identifiers.
const KEYWORDS: &[&str] = &[
    "as", "async", "await", "break", "const", "continue", "crate", "dyn", "else", "enum", "extern",
    "false", "fn", "for", "if", "impl", "in", "let", "loop", "match", "mod", "move", "mut", "pub",
    "ref", "return", "self", "Self", "static", "struct", "super", "trait", "true", "type",
    "unsafe", "use", "where", "while", "abstract", "become", "box", "do", "final", "gen", "macro",
    "override", "priv", "typeof", "unsized", "virtual", "yield", "try",
];

/// `baseExperience` → `base_experience`, `HTTPCode` → `http_code`; keywords get a trailing `_`.
pub fn snake_case(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let mut out = String::new();
    for (i, &c) in chars.iter().enumerate() {
        if c.is_uppercase() {
            let prev = i.checked_sub(1).map(|j| chars[j]);
            let next = chars.get(i + 1).copied();
            let boundary = match prev {
                Some(p) if p.is_lowercase() || p.is_ascii_digit() => true,
                Some(p) if p.is_uppercase() => next.is_some_and(char::is_lowercase),
                _ => false,
            };
            if boundary && !out.ends_with('_') {
                out.push('_');
            }
            out.extend(c.to_lowercase());
        } else if c.is_alphanumeric() || c == '_' {
            out.push(c);
        } else if !out.ends_with('_') {
            out.push('_');
        }
    }
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    if KEYWORDS.contains(&out.as_str()) {
        out.push('_');
    }
    out
}

/// `"fire type"` → `FireType`, `"1st"` → `V1st`, `""` → `Empty`.
pub fn pascal_case(name: &str) -> String {
    let mut out = String::new();
    for part in name.split(|c: char| !c.is_alphanumeric()) {
        let mut chars = part.chars();
        if let Some(first) = chars.next() {
            out.extend(first.to_uppercase());
            out.push_str(chars.as_str());
        }
    }
    if out.is_empty() {
        return "Empty".to_string();
    }
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, 'V');
    }
    if KEYWORDS.contains(&out.as_str()) {
        out.push('_');
    }
    out
}

/// True when `name` can be written as a plain Rust identifier.
pub fn is_plain_ident(name: &str) -> bool {
    !name.is_empty()
        && !KEYWORDS.contains(&name)
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_alphanumeric() || c == '_')
}

/// The identifier of an index, from its edge names in order: a 128-bit FNV-1a hash that
/// `kye::models!` writes into each `HasIndex<ID>` impl and `#[kye::get]` looks up. Edge names
/// never contain `,`, so the joined text is unambiguous.
pub fn index_id<S: AsRef<str>>(edges: &[S]) -> u128 {
    const OFFSET: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    const PRIME: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013b;
    let mut hash = OFFSET;
    for (i, edge) in edges.iter().enumerate() {
        if i > 0 {
            hash ^= u128::from(b',');
            hash = hash.wrapping_mul(PRIME);
        }
        for b in edge.as_ref().bytes() {
            hash ^= u128::from(b);
            hash = hash.wrapping_mul(PRIME);
        }
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snake() {
        assert_eq!(snake_case("base_experience"), "base_experience");
        assert_eq!(snake_case("baseExperience"), "base_experience");
        assert_eq!(snake_case("HTTPCode"), "http_code");
        assert_eq!(snake_case("Id"), "id");
        assert_eq!(snake_case("type"), "type_");
        assert_eq!(snake_case("1st"), "_1st");
    }

    #[test]
    fn pascal() {
        assert_eq!(pascal_case("fire type"), "FireType");
        assert_eq!(pascal_case("red"), "Red");
        assert_eq!(pascal_case("1st"), "V1st");
        assert_eq!(pascal_case(""), "Empty");
        assert_eq!(pascal_case("already-Pascal"), "AlreadyPascal");
    }

    #[test]
    fn index_ids_differ_by_edges_and_order() {
        let id = index_id(&["id"]);
        assert_eq!(id, index_id(&[String::from("id")]));
        assert_ne!(id, index_id(&["name"]));
        assert_ne!(index_id(&["a", "b"]), index_id(&["b", "a"]));
        assert_ne!(index_id(&["ab"]), index_id(&["a", "b"]));
    }
}
