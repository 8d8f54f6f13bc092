//! 256-bit identifiers: blob ids (keyed BLAKE3 of plaintext) and object names (BLAKE3 of the
//! stored bytes).

use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};

/// A 32-byte identifier. Serialised in CBOR as a byte string, shown as lowercase hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Id(pub [u8; 32]);

impl Id {
    /// The name of stored bytes: plain BLAKE3 of the bytes as written, so that damage to an
    /// object is detectable without the key.
    pub fn of_stored(bytes: &[u8]) -> Id {
        Id(*blake3::hash(bytes).as_bytes())
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Short form for tables and messages (first 8 hex digits), as restic shows.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..4])
    }

    pub fn from_hex(s: &str) -> Result<Id> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out)
            .map_err(|_| Error::Invalid(format!("{s:?} is not a 64-digit hex id")))?;
        Ok(Id(out))
    }
}

/// What some hex digits given on a command line name among `items`: the one lookup by id
/// prefix behind snapshot, key and unreadable-snapshot arguments.
pub enum Prefix<'a, T> {
    One(&'a T),
    NotFound,
    /// More than one id starts with them.
    Ambiguous,
    /// Empty, or not hex digits.
    NotHex,
}

/// Finds the one item whose id (`id_of`) starts with `wanted`, in either case.
pub fn by_prefix<'a, T>(items: &'a [T], id_of: impl Fn(&T) -> &Id, wanted: &str) -> Prefix<'a, T> {
    let wanted = wanted.to_ascii_lowercase();
    if wanted.is_empty() || !wanted.chars().all(|c| c.is_ascii_hexdigit()) {
        return Prefix::NotHex;
    }
    let mut found = items
        .iter()
        .filter(|item| id_of(item).to_hex().starts_with(&wanted));
    match (found.next(), found.next()) {
        (Some(one), None) => Prefix::One(one),
        (None, _) => Prefix::NotFound,
        (Some(_), Some(_)) => Prefix::Ambiguous,
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Id({})", self.short())
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// A CBOR byte string in the repository; hex text in JSON output, as users see ids
/// everywhere else.
impl Serialize for Id {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&self.to_hex())
        } else {
            s.serialize_bytes(&self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Id, D::Error> {
        struct IdVisitor;
        impl<'de> Visitor<'de> for IdVisitor {
            type Value = Id;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a 32-byte string")
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> std::result::Result<Id, E> {
                let arr: [u8; 32] = v
                    .try_into()
                    .map_err(|_| E::invalid_length(v.len(), &self))?;
                Ok(Id(arr))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<Id, E> {
                Id::from_hex(v).map_err(|_| E::invalid_value(de::Unexpected::Str(v), &self))
            }
        }
        if d.is_human_readable() {
            d.deserialize_str(IdVisitor)
        } else {
            d.deserialize_bytes(IdVisitor)
        }
    }
}

/// Serde helper for `Vec<u8>` fields that must be CBOR byte strings rather than arrays of
/// integers (names, link targets, salts).
pub mod bytes {
    use serde::{Deserializer, Serializer, de};
    use std::fmt;

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct V;
        impl<'de> de::Visitor<'de> for V {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a byte string")
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
        }
        d.deserialize_byte_buf(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_hex_in_json_and_bytes_in_cbor() {
        let id = Id([0xab; 32]);
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{}\"", "ab".repeat(32)));
        assert_eq!(serde_json::from_str::<Id>(&json).unwrap(), id);
        let cbor = crate::format::cbor::encode(&id);
        assert_eq!(cbor.len(), 2 + 32, "a CBOR byte string of 32 bytes");
        let back: Id = ciborium::from_reader(cbor.as_slice()).unwrap();
        assert_eq!(back, id);
    }

    #[test]
    fn a_prefix_names_one_id_or_says_why_not() {
        let ids = [Id([0xab; 32]), Id([0xac; 32]), Id([0x12; 32])];
        let found = |w: &str| match by_prefix(&ids, |id| id, w) {
            Prefix::One(id) => format!("one {}", id.short()),
            Prefix::NotFound => "not found".into(),
            Prefix::Ambiguous => "ambiguous".into(),
            Prefix::NotHex => "not hex".into(),
        };
        assert_eq!(found("AB"), "one abababab");
        assert_eq!(found(&ids[2].to_hex()), "one 12121212");
        assert_eq!(found("a"), "ambiguous");
        assert_eq!(found("ff"), "not found");
        assert_eq!(found(""), "not hex");
        assert_eq!(found("latest"), "not hex");
    }
}
