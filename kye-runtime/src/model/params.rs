//! From a key to a fetcher's parameters: the kind of each index edge, which parameter types
//! can hold it (checked by `#[kye::get]` at compile time), and the conversion at run time.

use std::sync::Arc;

use super::{FromKeyValue, Key, KeyError, KeyValue};

/// Index kinds: marker types naming what an index edge holds. `kye::models!` describes each
/// index with a tuple of them, and [`FromKeyValue`] says which parameter types can hold each.
pub mod kind {
    /// A `Number` index edge: integer key values.
    #[derive(Debug, Clone, Copy)]
    pub struct NumberIndex;
    /// A `String` index edge.
    #[derive(Debug, Clone, Copy)]
    pub struct StringIndex;
    /// A `Boolean` index edge.
    #[derive(Debug, Clone, Copy)]
    pub struct BooleanIndex;
    /// An index edge whose type is another model: not usable as a fetcher key.
    #[derive(Debug, Clone, Copy)]
    pub struct ReferenceIndex;
    /// The edges of a stand-in model that `kye::models!` emits after a schema error: every
    /// key parameter type accepts it, so only the schema error is reported.
    #[doc(hidden)]
    #[derive(Debug, Clone, Copy)]
    pub struct StandInIndex;
}
use kind::{BooleanIndex, NumberIndex, StringIndex};

/// A stand-in model's edges (after a schema error) accept every key parameter type; the
/// crate does not compile anyway, this only keeps the schema error the only one.
macro_rules! stand_in_params {
    ($($t:ty),*) => {$(
        #[diagnostic::do_not_recommend]
        impl FromKeyValue<kind::StandInIndex> for $t {
            fn from_key_value(_: &KeyValue) -> Result<Self, KeyError> {
                Err(KeyError::new("a stand-in model of a schema that does not compile"))
            }
        }
    )*};
}
stand_in_params!(
    i64,
    i32,
    i16,
    i8,
    isize,
    u64,
    u32,
    u16,
    u8,
    usize,
    i128,
    u128,
    f64,
    String,
    Box<str>,
    Arc<str>,
    bool
);

impl<K> FromKeyValue<K> for KeyValue {
    fn from_key_value(value: &KeyValue) -> Result<Self, KeyError> {
        Ok(value.clone())
    }
}

macro_rules! int_params {
    ($($t:ty),*) => {$(
        impl FromKeyValue<NumberIndex> for $t {
            fn from_key_value(value: &KeyValue) -> Result<Self, KeyError> {
                match value {
                    KeyValue::Int(i) => <$t>::try_from(*i).map_err(|_| {
                        KeyError::new(format!(
                            "key {i} does not fit the fetcher's parameter type `{}`",
                            stringify!($t)
                        ))
                    }),
                    other => Err(KeyError::new(format!(
                        "expected an integer key, found the {} {other}",
                        other.kind()
                    ))),
                }
            }
        }
    )*};
}
int_params!(i64, i32, i16, i8, isize, u64, u32, u16, u8, usize, i128, u128);

impl FromKeyValue<NumberIndex> for f64 {
    fn from_key_value(value: &KeyValue) -> Result<Self, KeyError> {
        match value {
            KeyValue::Int(i) => Ok(*i as f64),
            KeyValue::Float(x) => Ok(*x),
            other => Err(KeyError::new(format!(
                "expected a number key, found the {} {other}",
                other.kind()
            ))),
        }
    }
}

fn string_key(value: &KeyValue) -> Result<&str, KeyError> {
    match value {
        KeyValue::String(s) => Ok(s),
        other => Err(KeyError::new(format!(
            "expected a string key, found the {} {other}",
            other.kind()
        ))),
    }
}

impl FromKeyValue<StringIndex> for String {
    fn from_key_value(value: &KeyValue) -> Result<Self, KeyError> {
        string_key(value).map(str::to_owned)
    }
}

impl FromKeyValue<StringIndex> for Box<str> {
    fn from_key_value(value: &KeyValue) -> Result<Self, KeyError> {
        string_key(value).map(Box::from)
    }
}

impl FromKeyValue<StringIndex> for Arc<str> {
    fn from_key_value(value: &KeyValue) -> Result<Self, KeyError> {
        string_key(value).map(Arc::from)
    }
}

impl FromKeyValue<BooleanIndex> for bool {
    fn from_key_value(value: &KeyValue) -> Result<Self, KeyError> {
        match value {
            KeyValue::Bool(b) => Ok(*b),
            other => Err(KeyError::new(format!(
                "expected a boolean key, found the {} {other}",
                other.kind()
            ))),
        }
    }
}

/// A tuple of index kinds, one per index edge (e.g. `(NumberIndex, NumberIndex, NumberIndex)`).
pub trait IndexKinds {
    /// Number of edges in the index.
    const ARITY: usize;
}

/// The kind of the `N`th edge of an index (implemented for tuples of kinds).
pub trait KindAt<const N: usize>: IndexKinds {
    /// The kind at position `N`.
    type Kind;
}

macro_rules! kind_at {
    ($n:literal => $at:ident; [$($all:ident),*]) => {
        impl<$($all),*> KindAt<$n> for ($($all,)*) {
            type Kind = $at;
        }
    };
}

macro_rules! kinds_tuple {
    ($arity:literal; $($name:ident),*; $($n:literal => $at:ident),*) => {
        impl<$($name),*> IndexKinds for ($($name,)*) {
            const ARITY: usize = $arity;
        }
        kinds_tuple!(@at [$($name),*]; $($n => $at),*);
    };
    (@at $all:tt; $($n:literal => $at:ident),*) => {
        $( kind_at!($n => $at; $all); )*
    };
}
kinds_tuple!(1; A; 0 => A);
kinds_tuple!(2; A, B; 0 => A, 1 => B);
kinds_tuple!(3; A, B, C; 0 => A, 1 => B, 2 => C);
kinds_tuple!(4; A, B, C, D; 0 => A, 1 => B, 2 => C, 3 => D);
kinds_tuple!(5; A, B, C, D, E; 0 => A, 1 => B, 2 => C, 3 => D, 4 => E);
kinds_tuple!(6; A, B, C, D, E, F; 0 => A, 1 => B, 2 => C, 3 => D, 4 => E, 5 => F);
kinds_tuple!(7; A, B, C, D, E, F, G; 0 => A, 1 => B, 2 => C, 3 => D, 4 => E, 5 => F, 6 => G);
kinds_tuple!(8; A, B, C, D, E, F, G, H; 0 => A, 1 => B, 2 => C, 3 => D, 4 => E, 5 => F, 6 => G, 7 => H);

/// The kinds of a model's `N`th index (in [`Model::INDEXES`](super::Model::INDEXES) order). `kye::models!` implements
/// it for every index; `#[kye::get]` finds `N` at compile time with [`index_position`](super::index_position).
pub trait IndexAt<const N: usize> {
    /// A tuple of [`kind`] markers, one per index edge.
    type Kinds: IndexKinds;
}

/// Converts the `N`th value of `key` into a parameter of type `P`, for an index whose edge kinds
/// are `K` (generated code calls this, spanned at the parameter's type).
pub fn key_at<K, const N: usize, P>(key: &Key) -> Result<P, KeyError>
where
    K: KindAt<N>,
    P: FromKeyValue<<K as KindAt<N>>::Kind>,
{
    if key.len() != K::ARITY {
        return Err(KeyError::new(format!(
            "key {key} has {} value(s) but the index has {} edge(s)",
            key.len(),
            K::ARITY
        )));
    }
    P::from_key_value(&key.values[N])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_parameters_are_range_checked() {
        let ok: u8 = FromKeyValue::<NumberIndex>::from_key_value(&KeyValue::Int(255)).unwrap();
        assert_eq!(ok, 255);
        let err =
            <u8 as FromKeyValue<NumberIndex>>::from_key_value(&KeyValue::Int(300)).unwrap_err();
        assert_eq!(
            err.message(),
            "key 300 does not fit the fetcher's parameter type `u8`"
        );
        let err =
            <i64 as FromKeyValue<NumberIndex>>::from_key_value(&KeyValue::String("abc".into()))
                .unwrap_err();
        assert_eq!(
            err.message(),
            "expected an integer key, found the string \"abc\""
        );
    }

    #[test]
    fn key_at_checks_arity() {
        type Kinds = (NumberIndex, NumberIndex);
        let key = Key::new(vec![1i64.into(), 2i64.into()]);
        let b: i32 = key_at::<Kinds, 1, i32>(&key).unwrap();
        assert_eq!(b, 2);
        let err = key_at::<Kinds, 0, i32>(&Key::single(1i64)).unwrap_err();
        assert_eq!(
            err.message(),
            "key 1 has 1 value(s) but the index has 2 edge(s)"
        );
    }
}
