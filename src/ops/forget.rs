//! Forgetting snapshots: which snapshots a command line's ids name, readable or not, and
//! removing them, with what object-lock retention keeps. Which snapshots a policy keeps
//! is `retention`'s job; the data of forgotten snapshots stays until `prune`.

use crate::error::{Error, Result};
use crate::format::id::{Id, Prefix, by_prefix};
use crate::format::snapshot::{Snapshot, resolve};
use crate::repo::Repository;
use crate::store::{Kind, ObjectName};

/// A snapshot named on the command line.
pub enum Named<'a> {
    Readable(&'a Id, &'a Snapshot),
    /// A snapshot object that cannot be read (damaged, or of a foreign key): it is not
    /// listed, but its id still names it, and removing it is how it is got rid of.
    Unreadable(Id),
}

impl Named<'_> {
    pub fn id(&self) -> Id {
        match self {
            Named::Readable(id, _) => **id,
            Named::Unreadable(id) => *id,
        }
    }
}

/// The snapshots `wanted` (ids, prefixes or `latest`) name among `all` (the readable
/// ones), each once, in the order given.
pub fn named<'a>(
    repo: &Repository,
    all: &'a [(Id, Snapshot)],
    wanted: &[String],
) -> Result<Vec<Named<'a>>> {
    let mut out: Vec<Named<'a>> = Vec::new();
    let mut unreadable: Option<Vec<Id>> = None;
    for w in wanted {
        let found = match resolve(all, w) {
            Ok((id, s)) => Named::Readable(id, s),
            Err(e) => {
                let unreadable = match &unreadable {
                    Some(u) => u,
                    None => unreadable.insert(unreadable_snapshots(repo, all)?),
                };
                match by_prefix(unreadable, |id| id, w) {
                    Prefix::One(id) => Named::Unreadable(*id),
                    _ => return Err(e),
                }
            }
        };
        if !out.iter().any(|n| n.id() == found.id()) {
            out.push(found);
        }
    }
    Ok(out)
}

/// Snapshot objects in the store that `all` (the readable ones) leaves out.
fn unreadable_snapshots(repo: &Repository, all: &[(Id, Snapshot)]) -> Result<Vec<Id>> {
    Ok(repo
        .backend()
        .list_ids(Kind::Snapshot)?
        .into_iter()
        .map(|(id, _)| id)
        .filter(|id| !all.iter().any(|(a, _)| a == id))
        .collect())
}

/// What removing snapshots did.
#[derive(Debug, Default)]
pub struct Removal {
    pub removed: Vec<Id>,
    /// Under object-lock retention: left, with the date it ends.
    pub retained: Vec<(Id, String)>,
}

/// Removes the snapshot objects `ids`; those under retention stay and are reported.
pub fn remove(repo: &Repository, ids: &[Id]) -> Result<Removal> {
    let mut out = Removal::default();
    for id in ids {
        match repo.backend().remove(&ObjectName::new(Kind::Snapshot, id)) {
            Ok(()) => out.removed.push(*id),
            Err(Error::Retained { until, .. }) => out.retained.push((*id, until)),
            Err(e) => {
                return Err(e.during(
                    format!("removing snapshot {}: ", id.short()),
                    format!(
                        "; {} of the {} snapshots to forget were removed before this, the others are kept",
                        out.removed.len(),
                        ids.len()
                    ),
                ));
            }
        }
    }
    Ok(out)
}
