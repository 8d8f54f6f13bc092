//! Where repository objects are stored.
//!
//! A backend stores opaque named objects; it knows nothing of encryption or formats. The
//! layout (which name lives under which path) is fixed here so that every backend uses the
//! same one, and no object path is ever a prefix of another.

pub(crate) mod counting;
pub mod faulty;
pub mod local;
pub mod memory;
pub mod retry;
pub mod s3;

use std::fmt;
use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::format::config::ObjectLockConfig;
use crate::format::id::Id;

/// Where a repository is, as the user wrote it: a local directory or `s3://BUCKET/PREFIX`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// An absolute path (a relative one is resolved against the working directory).
    Local(PathBuf),
    S3(s3::S3Location),
}

impl Location {
    pub fn parse(repo: &str) -> Result<Location> {
        if repo.is_empty() {
            return Err(Error::Usage(
                "no repository given: use -r/--repo or set CAIRN_REPOSITORY".into(),
            ));
        }
        if repo.starts_with("s3:") {
            return Ok(Location::S3(s3::S3Location::parse(repo)?));
        }
        if let Some((scheme, _)) = repo.split_once("://") {
            return Err(Error::Usage(format!(
                "repository {repo:?}: unknown scheme {scheme}://; give a local directory path or s3://BUCKET/PREFIX"
            )));
        }
        let path = std::path::absolute(repo).map_err(|e| Error::io(repo, e))?;
        Ok(Location::Local(path))
    }
}

/// The kinds of object a repository holds, each in its own folder.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Config,
    Key,
    Pack,
    Index,
    Snapshot,
    Lock,
}

impl Kind {
    /// The folder of this kind (`Config` has none: it is the single object `config`).
    pub fn dir(self) -> &'static str {
        match self {
            Kind::Config => "",
            Kind::Key => "keys",
            Kind::Pack => "data",
            Kind::Index => "index",
            Kind::Snapshot => "snapshots",
            Kind::Lock => "locks",
        }
    }
}

/// A named object of the repository.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ObjectName {
    pub kind: Kind,
    /// 64 hex digits, except for the config.
    pub name: String,
}

impl ObjectName {
    pub fn config() -> ObjectName {
        ObjectName {
            kind: Kind::Config,
            name: "config".into(),
        }
    }

    pub fn new(kind: Kind, id: &Id) -> ObjectName {
        ObjectName {
            kind,
            name: id.to_hex(),
        }
    }

    /// The object's path below the repository root: `config`, `keys/<id>`,
    /// `data/<first 2 hex>/<id>`, `index/<id>`, `snapshots/<id>`, `locks/<id>`.
    pub fn path(&self) -> String {
        match self.kind {
            Kind::Config => "config".into(),
            Kind::Pack => format!(
                "data/{}/{}",
                &self.name[..2.min(self.name.len())],
                self.name
            ),
            kind => format!("{}/{}", kind.dir(), self.name),
        }
    }
}

impl fmt::Display for ObjectName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.path())
    }
}

/// One listed object: its name (without folder) and stored size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    pub name: String,
    pub size: u64,
    /// In an archive storage class (S3 GLACIER, DEEP_ARCHIVE): not readable until
    /// retrieved, and perhaps not even then (the listing does not say).
    pub archived: Option<String>,
}

/// Whether an object can be read now (S3 archive storage classes need a retrieval first).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Availability {
    Ready,
    /// In archive class `class`, not retrieved.
    Archived {
        class: String,
    },
    /// A retrieval was requested and is not done yet.
    Retrieving {
        class: String,
    },
}

/// How fast (and dearly) an archived object is brought back: S3's retrieval tiers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetrievalTier {
    Expedited,
    Standard,
    Bulk,
}

impl Kind {
    /// Whether objects of this kind are named by the hash of their bytes. The others (the
    /// config, locks) have fixed names and must be created atomically.
    pub fn content_named(self) -> bool {
        !matches!(self, Kind::Config | Kind::Lock)
    }
}

/// What a write does when its object already exists. Content-named objects hold the same
/// bytes under the same name, so the write is done. The config and locks are compared: a
/// retried write that had landed is done; different bytes are `Error::AlreadyExists`,
/// never replaced.
fn write_over_existing(backend: &dyn Backend, obj: &ObjectName, data: &[u8]) -> Result<()> {
    if obj.kind.content_named() || backend.read(obj)? == data {
        return Ok(());
    }
    Err(Error::AlreadyExists(format!(
        "{} in {}",
        obj.path(),
        backend.location()
    )))
}

/// Storage of repository objects. Implementations must be safe to call from many threads.
///
/// Writes are whole-object: an object is either fully present under its name or absent,
/// never partly written, so a crash or failed upload leaves nothing that looks valid.
pub trait Backend: Send + Sync {
    /// Where the repository is, for messages (`/path` or `s3://bucket/prefix`).
    fn location(&self) -> String;

    /// How many object writes are worth running at once. Each one in flight holds a pack
    /// in memory, so a local disk takes one; a network store takes several to hide latency.
    fn write_concurrency(&self) -> usize {
        1
    }

    /// Whether objects travel over a network and cost requests: then whole tree packs are
    /// worth caching locally, and reads worth coalescing harder.
    fn remote(&self) -> bool {
        false
    }

    /// Prepares an empty repository (folders, for a local one).
    fn create(&self) -> Result<()>;

    /// Whether `write` creates a fixed-name object (config, lock) atomically: of two
    /// writers racing for one name, exactly one succeeds and the other gets
    /// `Error::AlreadyExists`. A local directory does (hard links); an S3 store does where
    /// it honours `If-None-Match: *`. Where not, `lock` uses a protocol that needs only
    /// listings.
    fn atomic_create(&self) -> Result<bool>;

    /// `atomic_create`, asking the store afresh where its answer may have changed since it
    /// was recorded (an S3 store upgraded or moved behind another gateway): the lock
    /// relies on it.
    fn atomic_create_now(&self) -> Result<bool> {
        self.atomic_create()
    }

    /// Applies the repository's object-lock retention (from its config) to every later
    /// write but locks; a command line asking for less is an error. A store that cannot
    /// lock objects refuses a repository that asks for it.
    fn require_object_lock(&self, repo: Option<&ObjectLockConfig>) -> Result<()>;

    /// What the store was found to support, for `init` to show; `None` for a store that
    /// has nothing to tell.
    fn describe_store(&self) -> Result<Option<String>>;

    /// Reads a whole object. A missing object is `Error::ObjectNotFound`.
    fn read(&self, obj: &ObjectName) -> Result<Vec<u8>>;

    /// Reads `length` bytes at `offset`.
    fn read_range(&self, obj: &ObjectName, offset: u64, length: u64) -> Result<Vec<u8>>;

    /// Creates an object. Objects are never replaced: writing a name that already exists
    /// is a no-op for content-named objects (the same name means the same bytes), and for
    /// the config an error unless the bytes are the same.
    fn write(&self, obj: &ObjectName, data: &[u8]) -> Result<()>;

    /// Creates a data pack: an object that only restores and `check --read-data` read, so it
    /// may go to cheaper, slower storage (`--s3-storage-class`). Same rules as `write`.
    fn write_cold(&self, obj: &ObjectName, data: &[u8]) -> Result<()> {
        self.write(obj, data)
    }

    /// Lists the objects of one kind.
    fn list(&self, kind: Kind) -> Result<Vec<Listed>>;

    /// Lists the objects of one kind that are named by an id, sorted by id: every object
    /// but the config is. Other names (a folder marker an S3 console made, a stray file)
    /// are no objects of the repository and are left out.
    fn list_ids(&self, kind: Kind) -> Result<Vec<(Id, Listed)>> {
        let mut ids: Vec<(Id, Listed)> = self
            .list(kind)?
            .into_iter()
            .filter_map(|l| Some((Id::from_hex(&l.name).ok()?, l)))
            .collect();
        ids.sort_by_key(|(id, _)| *id);
        Ok(ids)
    }

    /// Size of one object, or `None` if it does not exist.
    fn stat(&self, obj: &ObjectName) -> Result<Option<u64>>;

    /// Whether an object can be read now; a store without archive classes says `Ready`.
    fn availability(&self, _obj: &ObjectName) -> Result<Availability> {
        Ok(Availability::Ready)
    }

    /// Asks for a temporary readable copy of an archived object, kept `days` days.
    fn retrieve(&self, obj: &ObjectName, _tier: RetrievalTier, _days: u32) -> Result<()> {
        Err(Error::Invalid(format!(
            "{obj} in {}: this store has no archive storage classes to retrieve from",
            self.location()
        )))
    }

    /// Removes an object; removing a missing one is not an error. An object under
    /// object-lock retention is left alone and reported as `Error::Retained`.
    fn remove(&self, obj: &ObjectName) -> Result<()>;

    /// Removes what interrupted writes left behind, if they are older than `age` (so that
    /// writes still in flight keep theirs), and returns how many went. Never objects.
    fn remove_leftovers(&self, age: std::time::Duration) -> Result<u64>;
}
