//! File names of documents: key values percent-encoded so that no key can name another
//! directory, long names cut with a hash.

use sha2::{Digest, Sha256};

/// Encoded names longer than this are shortened with a hash (the document keeps the key).
pub(super) const MAX_NAME: usize = 200;

pub(super) const RESERVED: [&str; 22] = [
    "CON", "PRN", "AUX", "NUL", "COM1", "COM2", "COM3", "COM4", "COM5", "COM6", "COM7", "COM8",
    "COM9", "LPT1", "LPT2", "LPT3", "LPT4", "LPT5", "LPT6", "LPT7", "LPT8", "LPT9",
];

pub(super) fn push_pct(out: &mut String, b: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push('%');
    out.push(HEX[(b >> 4) as usize] as char);
    out.push(HEX[(b & 15) as usize] as char);
}

pub(super) fn encode_part(s: &str) -> String {
    if s.is_empty() {
        return "~".to_string();
    }
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            out.push(b as char);
        } else {
            push_pct(&mut out, b);
        }
    }
    if RESERVED.iter().any(|r| r.eq_ignore_ascii_case(&out)) {
        let first = out.as_bytes()[0];
        let mut t = String::new();
        push_pct(&mut t, first);
        t.push_str(&out[1..]);
        out = t;
    }
    out
}

/// The file-system-safe name of a key (without `.json`): each part percent-encoded (every
/// byte outside `[A-Za-z0-9_-]`, so no `/`, `\`, `.`, `:`, NUL or leading dot survives),
/// an empty part written `~`, Windows device names (`CON`, `NUL`, …) escaped, parts joined
/// with `,`. Names longer than 200 bytes are cut and end in `~` and a hash of the key; those
/// are the only names [`decode_file_name`] cannot reverse (the document holds the key).
pub fn encode_file_name(parts: &[&str]) -> String {
    let name = parts
        .iter()
        .map(|p| encode_part(p))
        .collect::<Vec<_>>()
        .join(",");
    if name.len() <= MAX_NAME {
        return name;
    }
    let mut cut_at = 120;
    // Do not split a %XX escape.
    while cut_at > 0 && name.as_bytes()[cut_at - 1..cut_at.min(name.len())].contains(&b'%')
        || (cut_at >= 2 && name.as_bytes()[cut_at - 2] == b'%')
    {
        cut_at -= 1;
    }
    let digest = Sha256::digest(parts.join("\u{0}").as_bytes());
    let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!("{}~{hex}", &name[..cut_at])
}

/// Reverses [`encode_file_name`]; `None` for names it cannot have produced or hashed names.
pub fn decode_file_name(name: &str) -> Option<Vec<String>> {
    name.split(',')
        .map(|part| {
            if part == "~" {
                return Some(String::new());
            }
            let b = part.as_bytes();
            let mut out = Vec::with_capacity(b.len());
            let mut i = 0;
            while i < b.len() {
                match b[i] {
                    b'%' => {
                        let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                        out.push(u8::from_str_radix(hex, 16).ok()?);
                        i += 3;
                    }
                    c if c.is_ascii_alphanumeric() || c == b'_' || c == b'-' => {
                        out.push(c);
                        i += 1;
                    }
                    _ => return None,
                }
            }
            String::from_utf8(out).ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_stay_inside() {
        for key in [
            "pikachu",
            "../../etc/passwd",
            "a/b\\c:d",
            ".hidden",
            "..",
            "nul\u{0}byte",
            "CON",
            "nul",
            "Mr. Mime",
            "café ☕",
            "%41",
            "~",
            "",
            "a,b",
        ] {
            let name = encode_file_name(&[key]);
            assert!(
                name.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_-%~,".contains(&b)),
                "{key:?} → {name}"
            );
            assert!(!name.starts_with('.'), "{name}");
            assert!(
                !RESERVED.iter().any(|r| r.eq_ignore_ascii_case(&name)),
                "{name}"
            );
            assert_eq!(
                decode_file_name(&name),
                Some(vec![key.to_string()]),
                "{key:?} → {name}"
            );
        }
        let composite = encode_file_name(&["2024", "a,b", ""]);
        assert_eq!(
            decode_file_name(&composite),
            Some(vec!["2024".to_string(), "a,b".to_string(), String::new()])
        );
    }

    #[test]
    fn long_names_are_cut_with_a_hash() {
        let long = "x".repeat(10_000);
        let a = encode_file_name(&[&long]);
        let b = encode_file_name(&[&format!("{long}y")]);
        assert!(a.len() <= MAX_NAME && b.len() <= MAX_NAME);
        assert_ne!(a, b);
        let pct = "/".repeat(500);
        let c = encode_file_name(&[&pct]);
        assert!(c.len() <= MAX_NAME);
        assert!(c.split('~').next().unwrap().len().is_multiple_of(3), "{c}");
    }
}
