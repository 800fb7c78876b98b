//! `#[kye::get(Model.edge)]` at compile time: the identifier the user wrote is looked up among
//! the model's indexes in const evaluation, and a miss is a compile error naming the indexes.

/// The index of a model whose edges hash to `ID` (see `kye-macros`' `names::index_id`), and
/// its position in [`Model::INDEXES`](super::Model::INDEXES). `kye::models!` implements it for every index;
/// `#[kye::get]` looks the identifier up through it, so an identifier that is not an index is
/// a compile error at the edge the user wrote.
#[doc(hidden)]
pub trait HasIndex<const ID: u128> {
    /// Position of the index in [`Model::INDEXES`](super::Model::INDEXES).
    const POSITION: usize;
}

const fn str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// Position of the index made of exactly `edges` (in order) among `indexes`. Evaluated at
/// compile time by `#[kye::get]`: when there is no such index, compilation fails with
/// `not_found` (which names the model's indexes) at the identifier the user wrote.
pub const fn index_position(indexes: &[&[&str]], edges: &[&str], not_found: &str) -> usize {
    let mut i = 0;
    while i < indexes.len() {
        let ix = indexes[i];
        if ix.len() == edges.len() {
            let mut j = 0;
            let mut same = true;
            while j < ix.len() {
                if !str_eq(ix[j], edges[j]) {
                    same = false;
                }
                j += 1;
            }
            if same {
                return i;
            }
        }
        i += 1;
    }
    panic!("{}", not_found)
}

/// A message assembled at compile time (const evaluation cannot `format!`): `#[kye::get]`
/// joins the identifier the user wrote with the model's index list.
pub struct ConstMessage {
    buf: [u8; 1024],
    len: usize,
}

impl ConstMessage {
    /// The parts joined, cut at 1024 bytes.
    pub const fn concat(parts: &[&str]) -> ConstMessage {
        let mut buf = [0u8; 1024];
        let mut len = 0;
        let mut i = 0;
        while i < parts.len() {
            let bytes = parts[i].as_bytes();
            let mut j = 0;
            while j < bytes.len() && len < buf.len() {
                buf[len] = bytes[j];
                len += 1;
                j += 1;
            }
            i += 1;
        }
        ConstMessage { buf, len }
    }

    /// The message (a generic one if the cut split a character).
    pub const fn as_str(&self) -> &str {
        match std::str::from_utf8(self.buf.split_at(self.len).0) {
            Ok(s) => s,
            Err(_) => "this identifier is not an index of the model",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_position_matches_whole_indexes_in_order() {
        const IX: &[&[&str]] = &[&["id"], &["year", "month", "day"]];
        assert_eq!(index_position(IX, &["id"], "x"), 0);
        assert_eq!(index_position(IX, &["year", "month", "day"], "x"), 1);
        let r = std::panic::catch_unwind(|| index_position(IX, &["day", "month", "year"], "nope"));
        assert!(r.is_err());
    }

    #[test]
    fn const_messages_join_parts() {
        const M: ConstMessage =
            ConstMessage::concat(&["`P.x` is not an index; ", "its indexes are `P.id`"]);
        assert_eq!(M.as_str(), "`P.x` is not an index; its indexes are `P.id`");
        let long = "é".repeat(600);
        let cut = ConstMessage::concat(&["a", &long]);
        assert_eq!(cut.as_str(), "this identifier is not an index of the model");
    }
}
