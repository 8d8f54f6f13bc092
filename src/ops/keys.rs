//! Key management: several passwords for one repository. Each key file wraps the same
//! master key under its own password, so adding or removing one never touches the data.
//! Two rules keep the repository openable: the last key is never removed, and neither is
//! the key that opened it (use another password, or `change_password`).

use crate::error::{Error, Result};
use crate::format::id::{Id, Prefix, by_prefix};
use crate::format::keyfile::KeyFile;
use crate::repo::Repository;
use crate::store::{Kind, ObjectName};

/// One key file of the repository.
pub struct KeyEntry {
    pub id: Id,
    /// `None` when the key file cannot be read or decoded.
    pub file: Option<KeyFile>,
}

/// Every key of the repository, oldest first.
pub fn list(repo: &Repository) -> Result<Vec<KeyEntry>> {
    let mut out = Vec::new();
    for (id, _) in repo.backend().list_ids(Kind::Key)? {
        let name = ObjectName::new(Kind::Key, &id);
        let file = repo
            .backend()
            .read(&name)
            .and_then(|b| KeyFile::decode(&b, &name.path()))
            .ok();
        out.push(KeyEntry { id, file });
    }
    out.sort_by_key(|k| k.file.as_ref().map(|f| f.created));
    Ok(out)
}

/// Adds a key for `password`; returns its id.
pub fn add(repo: &Repository, password: &[u8]) -> Result<Id> {
    let (id, bytes) = KeyFile::create(repo.key(), password)?.encode();
    repo.backend()
        .write(&ObjectName::new(Kind::Key, &id), &bytes)?;
    Ok(id)
}

/// Removes the key whose id starts with `wanted`; returns its id.
pub fn remove(repo: &Repository, wanted: &str) -> Result<Id> {
    let all = list(repo)?;
    let id = match by_prefix(&all, |k| &k.id, wanted) {
        Prefix::One(k) => k.id,
        Prefix::NotFound | Prefix::NotHex => {
            return Err(Error::Invalid(format!(
                "no key with id {wanted} (see `cairn key list`)"
            )));
        }
        Prefix::Ambiguous => {
            return Err(Error::Invalid(format!(
                "key id prefix {wanted} is ambiguous; give more digits"
            )));
        }
    };
    if id == *repo.key_file() {
        return Err(Error::Invalid(
            "that is the key in use; open the repository with another password to remove it, or use `cairn key passwd`".into(),
        ));
    }
    remove_unless_last(repo, &all, &id)?;
    Ok(id)
}

/// Replaces the key in use by one for `password`: adds the new key, then removes the
/// current one. Returns (added, removed).
pub fn change_password(repo: &Repository, password: &[u8]) -> Result<(Id, Id)> {
    let added = add(repo, password)?;
    let all = list(repo)?;
    remove_unless_last(repo, &all, repo.key_file())?;
    Ok((added, *repo.key_file()))
}

fn remove_unless_last(repo: &Repository, all: &[KeyEntry], id: &Id) -> Result<()> {
    if all.len() <= 1 {
        return Err(Error::Invalid(
            "this is the repository's only key; without it nobody could open the repository".into(),
        ));
    }
    repo.backend().remove(&ObjectName::new(Kind::Key, id))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::repo::InitOptions;
    use crate::store::Backend;
    use crate::store::memory::MemoryBackend;
    use crate::store::retry::RetryPolicy;

    fn open(store: &Arc<dyn Backend>, password: &[u8]) -> Result<Repository> {
        Repository::open(store.clone(), password, None, &RetryPolicy::default())
    }

    #[test]
    fn the_key_in_use_and_the_last_key_stay() {
        let store: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
        Repository::init(
            store.clone(),
            b"first",
            &InitOptions::default(),
            &RetryPolicy::default(),
        )
        .unwrap();
        let repo = open(&store, b"first").unwrap();
        let first = *repo.key_file();
        let err = remove(&repo, &first.short()).unwrap_err().to_string();
        assert!(err.contains("the key in use"), "{err}");
        assert!(
            remove(&repo, "zz")
                .unwrap_err()
                .to_string()
                .contains("no key")
        );

        let second = add(&repo, b"second").unwrap();
        assert_eq!(list(&repo).unwrap().len(), 2);
        let other = open(&store, b"second").unwrap();
        assert_eq!(remove(&other, &first.to_hex()).unwrap(), first);
        assert!(
            open(&store, b"first").is_err(),
            "the removed password opens nothing"
        );

        // Only `second` is left: changing its password adds before it removes.
        let (added, removed) = change_password(&other, b"third").unwrap();
        assert_eq!(removed, second);
        assert_eq!(list(&repo).unwrap().len(), 1);
        assert_eq!(*open(&store, b"third").unwrap().key_file(), added);
        let only = open(&store, b"third").unwrap();
        let err = remove_unless_last(&only, &list(&only).unwrap(), &added)
            .unwrap_err()
            .to_string();
        assert!(err.contains("only key"), "{err}");
    }
}
