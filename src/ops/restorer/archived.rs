//! Data packs in an S3 archive storage class (GLACIER, DEEP_ARCHIVE): which ones a
//! restore needs, and asking the store to bring them back.
//!
//! A GET of an archived object fails until a retrieval (S3 RestoreObject) has made a
//! temporary readable copy, which takes minutes to 48 hours by tier. So a restore that
//! meets one reports each such pack once and how much waits on it; `--retrieve-cold`
//! first looks at exactly the packs the restore needs and requests what is archived, and
//! the same restore run again later completes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde::Serialize;

use super::select::{Choice, Visit, walk_selected};
use crate::error::Result;
use crate::format::id::Id;
use crate::format::pack::BlobType;
use crate::format::tree::NodeKind;
use crate::repo::Repository;
use crate::repo::tree_walk::root_node;
use crate::store::{Availability, Kind, ObjectName, RetrievalTier};

/// One archived data pack a restore needs.
#[derive(Clone, Debug, Serialize)]
pub struct ArchivedPack {
    pub id: Id,
    /// Its storage class (`GLACIER`, `DEEP_ARCHIVE`).
    pub class: String,
    pub size: u64,
}

/// How archived packs are asked back: `--tier` and `--retrieve-days`.
#[derive(Clone, Copy, Debug)]
pub struct Retrieval {
    pub tier: RetrievalTier,
    /// How long the readable copy is kept (and charged for).
    pub days: u32,
}

/// What `prepare` found among the packs a restore needs.
#[derive(Debug, Default, Serialize)]
pub struct Preparation {
    /// Archived and not yet retrieved: a retrieval was requested just now.
    pub requested: Vec<ArchivedPack>,
    /// A retrieval is under way.
    pub retrieving: Vec<ArchivedPack>,
    /// Archived packs already retrieved: readable now.
    pub ready: u64,
}

impl Preparation {
    /// Whether the restore can run now.
    pub fn complete(&self) -> bool {
        self.requested.is_empty() && self.retrieving.is_empty()
    }
}

/// The data packs holding the contents of the selected part of the snapshot.
fn needed_packs(repo: &Repository, root: Id, choice: &Choice) -> Result<BTreeSet<Id>> {
    let mut packs = BTreeSet::new();
    let mut each = |v: Visit<'_>| -> Result<bool> {
        match v.node.kind {
            NodeKind::Dir => return Ok(true),
            NodeKind::File => {
                for id in &v.node.content {
                    packs.insert(repo.locate(BlobType::Data, id)?.pack);
                }
            }
            _ => {}
        }
        Ok(false)
    };
    walk_selected(
        repo,
        PathBuf::new(),
        &root_node(root),
        None,
        choice,
        false,
        &mut each,
    )?;
    Ok(packs)
}

/// Looks at every archived pack the restore of `choice` needs (one listing of the packs,
/// then one HEAD per archived pack) and requests the retrieval of those not yet retrieved.
pub fn prepare(
    repo: &Repository,
    root: Id,
    choice: &Choice,
    retrieval: Retrieval,
) -> Result<Preparation> {
    let needed = needed_packs(repo, root, choice)?;
    let mut found = Preparation::default();
    for (id, listed) in repo.backend().list_ids(Kind::Pack)? {
        let Some(class) = listed.archived else {
            continue;
        };
        if !needed.contains(&id) {
            continue;
        }
        let name = ObjectName::new(Kind::Pack, &id);
        let pack = ArchivedPack {
            id,
            class,
            size: listed.size,
        };
        match repo.backend().availability(&name)? {
            Availability::Ready => found.ready += 1,
            Availability::Retrieving { .. } => found.retrieving.push(pack),
            Availability::Archived { .. } => {
                repo.backend()
                    .retrieve(&name, retrieval.tier, retrieval.days)?;
                found.requested.push(pack);
            }
        }
    }
    Ok(found)
}

/// The archived packs a restore met, with their sizes from one listing of the packs.
pub fn sized(repo: &Repository, met: BTreeMap<Id, String>) -> Result<Vec<ArchivedPack>> {
    if met.is_empty() {
        return Ok(Vec::new());
    }
    let sizes = repo.stored_packs()?;
    Ok(met
        .into_iter()
        .map(|(id, class)| ArchivedPack {
            size: sizes.get(&id).copied().unwrap_or(0),
            id,
            class,
        })
        .collect())
}
