//! CBOR encoding of every repository structure, with the version check that all of them share.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

/// Every stored structure carries `v`, its format version. An unknown version is reported as
/// such, never as "damaged".
pub trait Versioned {
    /// What the structure is, for messages ("snapshot", "index", ...).
    const WHAT: &'static str;
    /// The version this build writes.
    const VERSION: u64;
    /// The oldest version this build still reads (older layouts that decode as this one).
    const OLDEST: u64;
    fn version(&self) -> u64;
}

/// Implements [`Versioned`] for a structure whose version lives in its field `v`.
macro_rules! versioned {
    ($ty:ty, $what:expr, $version:expr) => {
        $crate::format::cbor::versioned!($ty, $what, $version, $version);
    };
    ($ty:ty, $what:expr, $version:expr, $oldest:expr) => {
        impl $crate::format::cbor::Versioned for $ty {
            const WHAT: &'static str = $what;
            const VERSION: u64 = $version;
            const OLDEST: u64 = $oldest;
            fn version(&self) -> u64 {
                self.v
            }
        }
    };
}
pub(crate) use versioned;

pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    // Writing into a Vec cannot fail, and our types contain no maps with non-string keys
    // or other shapes that ciborium refuses.
    ciborium::into_writer(value, &mut out).expect("CBOR encoding into memory cannot fail");
    out
}

#[derive(serde::Deserialize)]
struct VersionProbe {
    v: u64,
}

/// Decodes `bytes` as `T`, checking its version. `name` names the object in errors.
pub fn decode<T: DeserializeOwned + Versioned>(bytes: &[u8], name: &str) -> Result<T> {
    let known = T::OLDEST..=T::VERSION;
    match ciborium::from_reader::<T, _>(bytes) {
        Ok(value) if known.contains(&value.version()) => Ok(value),
        Ok(value) => Err(Error::UnknownVersion {
            what: format!("{} {name}", T::WHAT),
            found: value.version(),
            supported: T::VERSION,
        }),
        Err(err) => match ciborium::from_reader::<VersionProbe, _>(bytes) {
            Ok(probe) if !known.contains(&probe.v) => Err(Error::UnknownVersion {
                what: format!("{} {name}", T::WHAT),
                found: probe.v,
                supported: T::VERSION,
            }),
            _ => Err(Error::corrupt(
                format!("{} {name}", T::WHAT),
                format!("cannot decode: {err}"),
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::tree::Tree;

    #[test]
    fn unknown_version_is_named_not_called_damage() {
        let mut t = Tree::new(Vec::new());
        t.v = 7;
        let err = decode::<Tree>(&encode(&t), "x").unwrap_err();
        assert!(
            matches!(err, Error::UnknownVersion { found: 7, .. }),
            "{err}"
        );
        // A future layout that no longer decodes as today's, but says its version.
        #[derive(serde::Serialize)]
        struct Future {
            v: u64,
            nodes: String,
        }
        let bytes = encode(&Future {
            v: Tree::VERSION + 1,
            nodes: "new".into(),
        });
        let err = decode::<Tree>(&bytes, "x").unwrap_err();
        assert!(
            matches!(err, Error::UnknownVersion { found, .. } if found == Tree::VERSION + 1),
            "{err}"
        );
        let err = decode::<Tree>(b"\xff\x00", "x").unwrap_err();
        assert!(matches!(err, Error::Corrupt(..)), "{err}");
    }
}
