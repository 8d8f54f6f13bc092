//! `keys/<id>`: the master key wrapped under a password. Key files are the only objects
//! not sealed with the master key; they are plain CBOR holding a sealed master key.

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::format::cbor::{self, Versioned};
use crate::format::crypto::{KdfParams, MasterKey, unwrap_master_key, wrap_master_key};
use crate::format::id::Id;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KeyFile {
    pub v: u64,
    pub kdf: KdfParams,
    /// nonce ‖ AES-256-GCM-SIV(CBOR master key) under the Argon2id-derived key.
    #[serde(with = "crate::format::id::bytes")]
    pub master: Vec<u8>,
    /// Unix seconds.
    pub created: i64,
    pub hostname: String,
    pub username: String,
}

crate::format::cbor::versioned!(KeyFile, "key file", 1);

impl KeyFile {
    pub fn create(master: &MasterKey, password: &[u8]) -> Result<KeyFile> {
        let kdf = KdfParams::new_default()?;
        let wrapped = wrap_master_key(master, &kdf, password)?;
        Ok(KeyFile {
            v: KeyFile::VERSION,
            kdf,
            master: wrapped,
            created: chrono::Utc::now().timestamp(),
            hostname: crate::sysinfo::hostname(),
            username: crate::sysinfo::username(),
        })
    }

    /// Encoded bytes and their name.
    pub fn encode(&self) -> (Id, Vec<u8>) {
        let bytes = cbor::encode(self);
        (Id::of_stored(&bytes), bytes)
    }

    pub fn decode(bytes: &[u8], name: &str) -> Result<KeyFile> {
        cbor::decode(bytes, name)
    }

    pub fn open(&self, password: &[u8], name: &str) -> Result<Option<MasterKey>> {
        unwrap_master_key(&self.master, &self.kdf, password, name)
    }
}
