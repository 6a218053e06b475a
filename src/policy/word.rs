//! The contract's enums written as one word (`"status": "suspended"`), read through one
//! visitor for all of them instead of one derived reader each. What is accepted and what the
//! errors say are serde's for a unit enum ("unknown variant `x`, expected one of ...",
//! "invalid type: ..., expected enum Status"), except that only a JSON string is taken (serde's
//! enums also took `{"word": null}`). A leaf: it imports nothing of the domain.

use std::fmt;

use serde::de::{Deserializer, Error, Visitor};

/// An enum of the contract written as a word.
pub trait Word: Copy + 'static {
    /// How errors name it, as serde's derive does: `enum Status`.
    const EXPECTING: &'static str;
    /// Its words, and the value of each (in the same order).
    const WORDS: &'static [&'static str];
    const VALUES: &'static [Self];
}

/// `Deserialize::deserialize` of a [`Word`].
pub fn deserialize<'de, T: Word, D: Deserializer<'de>>(deserializer: D) -> Result<T, D::Error> {
    let index = deserializer.deserialize_str(WordVisitor {
        expecting: T::EXPECTING,
        words: T::WORDS,
    })?;
    T::VALUES
        .get(index)
        .copied()
        .ok_or_else(|| D::Error::custom("a word without a value"))
}

/// Finds the word's index.
struct WordVisitor {
    expecting: &'static str,
    words: &'static [&'static str],
}

impl Visitor<'_> for WordVisitor {
    type Value = usize;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str(self.expecting)
    }

    fn visit_str<E: Error>(self, v: &str) -> Result<usize, E> {
        self.words
            .iter()
            .position(|word| *word == v)
            .ok_or_else(|| E::unknown_variant(v, self.words))
    }
}

/// `impl Deserialize` for enums of words: `words!(Status: "enum Status", Active = "active", ...)`.
macro_rules! words {
    ($ty:ident: $expecting:literal, $($variant:ident = $word:literal),+ $(,)?) => {
        impl $crate::policy::word::Word for $ty {
            const EXPECTING: &'static str = $expecting;
            const WORDS: &'static [&'static str] = &[$($word),+];
            const VALUES: &'static [Self] = &[$($ty::$variant),+];
        }

        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                $crate::policy::word::deserialize(deserializer)
            }
        }
    };
}
pub(crate) use words;
