//! Keys, sealing and blob ids.
//!
//! * Master key: random; an AES-256-GCM-SIV key, a BLAKE3 key for blob ids and the chunker
//!   seed. It never leaves the process unwrapped.
//! * Sealed bytes: `nonce (12) ‖ AES-256-GCM-SIV(plaintext) (len + 16)`, with associated data
//!   that names what the bytes are, so bytes moved to another place fail to open.
//! * Key files wrap the master key under a key derived from the password with Argon2id.

use aes_gcm_siv::aead::inout::InOutBuf;
use aes_gcm_siv::aead::{AeadInOut, KeyInit};
use aes_gcm_siv::{Aes256GcmSiv, Nonce};
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::error::{Error, Result};
use crate::format::cbor::{self, Versioned};
use crate::format::id::Id;

pub const NONCE_LEN: usize = 12;
pub const TAG_LEN: usize = 16;
/// Bytes a sealed value adds to its plaintext.
pub const SEAL_OVERHEAD: usize = NONCE_LEN + TAG_LEN;

/// What a sealed value is; part of its associated data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Aad {
    Config,
    Index,
    Snapshot,
    PackHeader,
    Lock,
    /// Master key inside a key file.
    MasterKey,
    /// A blob: its type byte and id.
    Blob(u8, Id),
}

impl Aad {
    fn bytes(&self) -> Vec<u8> {
        let mut out = b"cairn.v1.".to_vec();
        match self {
            Aad::Config => out.extend_from_slice(b"config"),
            Aad::Index => out.extend_from_slice(b"index"),
            Aad::Snapshot => out.extend_from_slice(b"snapshot"),
            Aad::PackHeader => out.extend_from_slice(b"pack-header"),
            Aad::Lock => out.extend_from_slice(b"lock"),
            Aad::MasterKey => out.extend_from_slice(b"master-key"),
            Aad::Blob(kind, id) => {
                out.extend_from_slice(b"blob.");
                out.push(*kind);
                out.extend_from_slice(&id.0);
            }
        }
        out
    }
}

/// Fills `buf` from the operating system's CSPRNG.
pub fn random_bytes(buf: &mut [u8]) -> Result<()> {
    getrandom::fill(buf).map_err(|e| Error::System(format!("the OS random generator failed: {e}")))
}

/// The repository's secret material.
#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub struct MasterKey {
    v: u64,
    /// AES-256-GCM-SIV key for everything sealed in the repository.
    #[serde(with = "serde_key")]
    encrypt: [u8; 32],
    /// BLAKE3 key for blob ids.
    #[serde(with = "serde_key")]
    id_key: [u8; 32],
    /// Seed XORed into the FastCDC gear table, so chunk boundaries depend on the key.
    pub chunker_seed: u64,
}

crate::format::cbor::versioned!(MasterKey, "master key", 1);

mod serde_key {
    use serde::{Deserializer, Serializer, de};
    pub fn serialize<S: Serializer>(k: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(k)
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let v: Vec<u8> = crate::format::id::bytes::deserialize(d)?;
        let v = zeroize::Zeroizing::new(v);
        v.as_slice()
            .try_into()
            .map_err(|_| de::Error::invalid_length(v.len(), &"32 bytes"))
    }
}

impl MasterKey {
    pub fn generate() -> Result<MasterKey> {
        let mut key = MasterKey {
            v: MasterKey::VERSION,
            encrypt: [0; 32],
            id_key: [0; 32],
            chunker_seed: 0,
        };
        random_bytes(&mut key.encrypt)?;
        random_bytes(&mut key.id_key)?;
        let mut seed = [0u8; 8];
        random_bytes(&mut seed)?;
        key.chunker_seed = u64::from_le_bytes(seed);
        Ok(key)
    }

    /// A key made of fixed bytes, for fuzzing: a crash found with it reproduces.
    pub(crate) fn fixed(byte: u8) -> MasterKey {
        MasterKey {
            v: MasterKey::VERSION,
            encrypt: [byte; 32],
            id_key: [byte ^ 0x5a; 32],
            chunker_seed: u64::from(byte),
        }
    }

    /// The id of a blob: keyed BLAKE3 of its plaintext, so ids reveal nothing about content
    /// to anyone without the key.
    pub fn blob_id(&self, plaintext: &[u8]) -> Id {
        // A hasher rather than `blake3::keyed_hash`, so that its copy of the key can be
        // wiped: the one-shot function leaves it in a dead stack frame.
        let mut hasher = blake3::Hasher::new_keyed(&self.id_key);
        hasher.update(plaintext);
        let id = Id(*hasher.finalize().as_bytes());
        hasher.zeroize();
        id
    }

    fn cipher(&self) -> Aes256GcmSiv {
        // The key is exactly 32 bytes, which is what AES-256 takes.
        Aes256GcmSiv::new_from_slice(&self.encrypt).expect("32-byte AES-256 key")
    }

    pub fn seal(&self, aad: Aad, plaintext: &[u8]) -> Result<Vec<u8>> {
        seal_with(&self.cipher(), aad, plaintext)
    }

    pub fn open(&self, aad: Aad, sealed: &[u8], name: &str) -> Result<Vec<u8>> {
        open_with(&self.cipher(), aad, sealed, name)
    }

    /// Opens sealed bytes into `out`, replacing what it held: see [`open_into`].
    pub fn open_into(&self, aad: Aad, sealed: &[u8], name: &str, out: &mut Vec<u8>) -> Result<()> {
        open_into(&self.cipher(), aad, sealed, name, out)
    }

    /// A reusable cipher for hot loops (one per thread).
    pub fn sealer(&self) -> Sealer {
        Sealer {
            cipher: self.cipher(),
        }
    }
}

/// A cipher instance bound to the master key, for threads that seal many blobs.
pub struct Sealer {
    cipher: Aes256GcmSiv,
}

impl Sealer {
    pub fn seal(&self, aad: Aad, plaintext: &[u8]) -> Result<Vec<u8>> {
        seal_with(&self.cipher, aad, plaintext)
    }

    /// Appends sealed bytes to `out` without an intermediate buffer: see [`seal_appending`].
    pub fn seal_appending(
        &self,
        aad: Aad,
        out: &mut Vec<u8>,
        fill: impl FnOnce(&mut Vec<u8>) -> Result<()>,
    ) -> Result<()> {
        seal_appending(&self.cipher, aad, out, fill)
    }

    pub fn open(&self, aad: Aad, sealed: &[u8], name: &str) -> Result<Vec<u8>> {
        open_with(&self.cipher, aad, sealed, name)
    }
}

fn seal_with(cipher: &Aes256GcmSiv, aad: Aad, plaintext: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(plaintext.len() + SEAL_OVERHEAD);
    seal_appending(cipher, aad, &mut out, |out| {
        out.extend_from_slice(plaintext);
        Ok(())
    })?;
    Ok(out)
}

/// Writes the nonce to `out`, lets `fill` append the plaintext, encrypts it where it lies
/// and appends the tag: `nonce ‖ ciphertext ‖ tag` with no copy of the plaintext beyond
/// the one `fill` makes. On error, `out` is cut back to its length on entry.
fn seal_appending(
    cipher: &Aes256GcmSiv,
    aad: Aad,
    out: &mut Vec<u8>,
    fill: impl FnOnce(&mut Vec<u8>) -> Result<()>,
) -> Result<()> {
    let start = out.len();
    let result = (|| {
        let mut nonce = [0u8; NONCE_LEN];
        random_bytes(&mut nonce)?;
        out.extend_from_slice(&nonce);
        fill(out)?;
        let body = &mut out[start + NONCE_LEN..];
        let tag = cipher
            .encrypt_inout_detached(&Nonce::from(nonce), &aad.bytes(), body.into())
            .map_err(|_| Error::Internal("encryption failed".into()))?;
        out.extend_from_slice(tag.as_slice());
        Ok(())
    })();
    if result.is_err() {
        out.truncate(start);
    }
    result
}

fn open_with(cipher: &Aes256GcmSiv, aad: Aad, sealed: &[u8], name: &str) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    open_into(cipher, aad, sealed, name, &mut out)?;
    Ok(out)
}

/// Decrypts `nonce ‖ ciphertext ‖ tag` from `sealed` straight into `out` (its old contents
/// are replaced), so a caller that reuses `out` makes no allocation and no extra copy per
/// object. On failure `out` is left empty: nothing unauthenticated is ever visible.
fn open_into(
    cipher: &Aes256GcmSiv,
    aad: Aad,
    sealed: &[u8],
    name: &str,
    out: &mut Vec<u8>,
) -> Result<()> {
    out.clear();
    if sealed.len() < SEAL_OVERHEAD {
        return Err(Error::corrupt(
            name,
            format!("{} bytes is too short to be sealed data", sealed.len()),
        ));
    }
    let (nonce, rest) = sealed.split_at(NONCE_LEN);
    let (ct, tag) = rest.split_at(rest.len() - TAG_LEN);
    let nonce: [u8; NONCE_LEN] = nonce.try_into().expect("split at NONCE_LEN");
    let tag: [u8; TAG_LEN] = tag.try_into().expect("split at TAG_LEN");
    out.resize(ct.len(), 0);
    let buf = InOutBuf::new(ct, &mut out[..]).expect("output sized to the ciphertext");
    let opened = cipher.decrypt_inout_detached(&Nonce::from(nonce), &aad.bytes(), buf, &tag.into());
    if opened.is_err() {
        out.clear();
        return Err(Error::corrupt(
            name,
            "authentication failed (modified or misplaced bytes)",
        ));
    }
    Ok(())
}

/// Argon2id parameters as stored in a key file.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct KdfParams {
    /// Always "argon2id" in version 1.
    pub algorithm: String,
    /// Memory in KiB.
    pub m_cost: u32,
    pub t_cost: u32,
    pub p_cost: u32,
    #[serde(with = "crate::format::id::bytes")]
    pub salt: Vec<u8>,
}

impl KdfParams {
    /// 64 MiB, 3 passes, 4 lanes (RFC 9106's second recommended setting): the lanes are
    /// filled on every core, so opening takes about half as long on two cores as one lane
    /// did, while a guess costs an attacker the same memory and work.
    pub fn new_default() -> Result<KdfParams> {
        let mut salt = vec![0u8; 32];
        random_bytes(&mut salt)?;
        Ok(KdfParams {
            algorithm: "argon2id".into(),
            m_cost: 64 * 1024,
            t_cost: 3,
            p_cost: 4,
            salt,
        })
    }

    /// Derives the key-wrapping key. Parameters come from a file an attacker may have
    /// written, so they are bounded before use.
    pub fn derive(&self, password: &[u8]) -> Result<Zeroizing<[u8; 32]>> {
        let params = self.check()?;
        let argon =
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let mut out = Zeroizing::new([0u8; 32]);
        argon
            .hash_password_into(password, &self.salt, out.as_mut())
            .map_err(|e| Error::Invalid(format!("Argon2 failed: {e}")))?;
        Ok(out)
    }

    /// The parameters as Argon2 takes them, if they are known and within bounds.
    pub fn check(&self) -> Result<argon2::Params> {
        if self.algorithm != "argon2id" {
            return Err(Error::Invalid(format!(
                "key file uses unknown KDF {:?}",
                self.algorithm
            )));
        }
        if self.m_cost > 4 * 1024 * 1024 || self.t_cost > 100 || self.p_cost > 64 {
            return Err(Error::Invalid(
                "key file asks for unreasonable Argon2 parameters (over 4 GiB, 100 passes or 64 lanes)".into(),
            ));
        }
        argon2::Params::new(self.m_cost, self.t_cost, self.p_cost, Some(32))
            .map_err(|e| Error::Invalid(format!("bad Argon2 parameters in key file: {e}")))
    }
}

/// Wraps the master key under a password-derived key.
pub fn wrap_master_key(master: &MasterKey, kdf: &KdfParams, password: &[u8]) -> Result<Vec<u8>> {
    let kek = kdf.derive(password)?;
    let cipher = Aes256GcmSiv::new_from_slice(kek.as_ref()).expect("32-byte key");
    let plain = Zeroizing::new(cbor::encode(master));
    seal_with(&cipher, Aad::MasterKey, &plain)
}

/// Unwraps a master key. `Ok(None)` means the password does not fit this key file.
pub fn unwrap_master_key(
    sealed: &[u8],
    kdf: &KdfParams,
    password: &[u8],
    name: &str,
) -> Result<Option<MasterKey>> {
    let kek = kdf.derive(password)?;
    let cipher = Aes256GcmSiv::new_from_slice(kek.as_ref()).expect("32-byte key");
    match open_with(&cipher, Aad::MasterKey, sealed, name) {
        Ok(plain) => {
            let plain = Zeroizing::new(plain);
            Ok(Some(cbor::decode(&plain, name)?))
        }
        Err(Error::Corrupt(..)) => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The format says blob ids are keyed BLAKE3; the wiping hasher must give the same.
    #[test]
    fn blob_id_is_keyed_blake3() {
        let key = MasterKey::fixed(7);
        for len in [0, 1, 1024, 1025, 200_000] {
            let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let expected = blake3::keyed_hash(&[7 ^ 0x5a; 32], &data);
            assert_eq!(key.blob_id(&data).0, *expected.as_bytes(), "length {len}");
        }
    }

    /// Does not compile if a dependency feature that wipes key material gets lost
    /// (see the comment on `aes` in Cargo.toml).
    #[test]
    fn types_holding_keys_wipe_themselves() {
        fn wiped_on_drop<T: ZeroizeOnDrop>() -> &'static str {
            std::any::type_name::<T>()
        }
        fn wipeable<T: Zeroize>() -> &'static str {
            std::any::type_name::<T>()
        }
        let names = [
            wiped_on_drop::<MasterKey>(),
            wiped_on_drop::<aes::Aes256>(),
            wipeable::<blake3::Hasher>(),
        ];
        assert!(names.iter().all(|n| !n.is_empty()));
    }

    #[test]
    fn seal_binds_associated_data() {
        let key = MasterKey::generate().unwrap();
        let id = key.blob_id(b"hello");
        let sealed = key.seal(Aad::Blob(0, id), b"hello").unwrap();
        assert_eq!(sealed.len(), 5 + SEAL_OVERHEAD);
        assert_eq!(key.open(Aad::Blob(0, id), &sealed, "x").unwrap(), b"hello");
        // Same bytes claimed to be another blob, or another type, must not open.
        let other = key.blob_id(b"other");
        assert!(key.open(Aad::Blob(0, other), &sealed, "x").is_err());
        assert!(key.open(Aad::Blob(1, id), &sealed, "x").is_err());
        assert!(key.open(Aad::Index, &sealed, "x").is_err());
    }

    #[test]
    fn blob_ids_are_keyed() {
        let a = MasterKey::generate().unwrap();
        let b = MasterKey::generate().unwrap();
        assert_ne!(a.blob_id(b"x"), b.blob_id(b"x"));
        assert_ne!(a.blob_id(b"x").0, *blake3::hash(b"x").as_bytes());
    }

    #[test]
    fn wrap_and_unwrap() {
        let master = MasterKey::generate().unwrap();
        let mut kdf = KdfParams::new_default().unwrap();
        kdf.m_cost = 1024; // keep the unit test fast
        let wrapped = wrap_master_key(&master, &kdf, b"pw").unwrap();
        let back = unwrap_master_key(&wrapped, &kdf, b"pw", "k")
            .unwrap()
            .unwrap();
        assert_eq!(back.blob_id(b"z"), master.blob_id(b"z"));
        assert!(
            unwrap_master_key(&wrapped, &kdf, b"wrong", "k")
                .unwrap()
                .is_none()
        );
    }
}
