//! A repository in a local directory.
//!
//! Objects are written to a temporary file beside their final place, synced, then renamed,
//! so a crash leaves either the whole object or a `.tmp-*` file that listings ignore.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::{Backend, Kind, Listed, ObjectName};
use crate::error::{Error, Result};
use crate::format::config::ObjectLockConfig;

pub struct LocalBackend {
    root: PathBuf,
}

const TMP_PREFIX: &str = ".tmp-";

impl LocalBackend {
    pub fn new(root: impl Into<PathBuf>) -> LocalBackend {
        LocalBackend { root: root.into() }
    }

    fn path(&self, obj: &ObjectName) -> PathBuf {
        self.root.join(obj.path())
    }

    fn backend_err(obj: &ObjectName, path: &Path, source: std::io::Error) -> Error {
        if source.kind() == ErrorKind::NotFound {
            Error::ObjectNotFound(obj.path())
        } else {
            Error::io(path, source)
        }
    }
}

fn mkdir(path: &Path) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(|e| Error::io(path, e))
}

/// The entries of folder `d`, or `None` if it does not exist (yet).
fn read_dir_if_present(d: &Path) -> Result<Option<fs::ReadDir>> {
    match fs::read_dir(d) {
        Ok(rd) => Ok(Some(rd)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(d, e)),
    }
}

impl Backend for LocalBackend {
    fn location(&self) -> String {
        self.root.display().to_string()
    }

    /// Hard links: `link` fails when the name exists.
    fn atomic_create(&self) -> Result<bool> {
        Ok(true)
    }

    fn require_object_lock(&self, repo: Option<&ObjectLockConfig>) -> Result<()> {
        match repo {
            None => Ok(()),
            Some(lock) => Err(Error::Invalid(format!(
                "object-lock retention ({lock}) is for S3 repositories; a local directory such as {} cannot keep it",
                self.root.display()
            ))),
        }
    }

    fn describe_store(&self) -> Result<Option<String>> {
        Ok(None)
    }

    fn create(&self) -> Result<()> {
        mkdir(&self.root)?;
        for kind in [Kind::Key, Kind::Index, Kind::Snapshot, Kind::Lock] {
            mkdir(&self.root.join(kind.dir()))?;
        }
        // Pack folders are made up front so that writers never race to create them.
        for i in 0..=255u8 {
            mkdir(&self.root.join("data").join(hex::encode([i])))?;
        }
        Ok(())
    }

    fn read(&self, obj: &ObjectName) -> Result<Vec<u8>> {
        let path = self.path(obj);
        fs::read(&path).map_err(|e| Self::backend_err(obj, &path, e))
    }

    fn read_range(&self, obj: &ObjectName, offset: u64, length: u64) -> Result<Vec<u8>> {
        let path = self.path(obj);
        let mut f = File::open(&path).map_err(|e| Self::backend_err(obj, &path, e))?;
        f.seek(SeekFrom::Start(offset))
            .map_err(|e| Error::io(&path, e))?;
        let mut buf = Vec::with_capacity(length as usize);
        f.take(length)
            .read_to_end(&mut buf)
            .map_err(|e| Error::io(&path, e))?;
        if buf.len() as u64 != length {
            return Err(Error::corrupt(
                obj.path(),
                format!(
                    "wanted {length} bytes at offset {offset}, the object has only {}",
                    buf.len()
                ),
            ));
        }
        Ok(buf)
    }

    fn write(&self, obj: &ObjectName, data: &[u8]) -> Result<()> {
        let path = self.path(obj);
        let dir = path.parent().unwrap_or(&self.root);
        if path.exists() {
            return super::write_over_existing(self, obj, data);
        }
        let mut suffix = [0u8; 8];
        crate::format::crypto::random_bytes(&mut suffix)?;
        let tmp = dir.join(format!("{TMP_PREFIX}{}", hex::encode(suffix)));
        let result = (|| -> std::io::Result<()> {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(data)?;
            f.sync_all()?;
            if obj.kind.content_named() {
                fs::rename(&tmp, &path)?;
            } else {
                // A hard link fails if the name exists, where a rename would replace it:
                // two processes taking the same lock cannot both succeed.
                let linked = fs::hard_link(&tmp, &path);
                fs::remove_file(&tmp)?;
                linked?;
            }
            // Make the rename itself durable.
            File::open(dir)?.sync_all()
        })();
        if let Err(e) = result {
            let _ = fs::remove_file(&tmp);
            if e.kind() == ErrorKind::AlreadyExists {
                return super::write_over_existing(self, obj, data);
            }
            if e.kind() == ErrorKind::NotFound {
                // A repository copied by a tool that drops empty folders (git, rclone, a
                // sync from S3) lacks some `data/xx/` or `locks/`: make the folder, but only
                // inside a repository, so that a mistyped path is still reported as missing.
                if !dir.is_dir() && self.root.join("config").is_file() {
                    mkdir(dir)?;
                    return self.write(obj, data);
                }
                return Err(Error::RepositoryNotFound(self.location()));
            }
            return Err(Error::io(&path, e));
        }
        Ok(())
    }

    fn list(&self, kind: Kind) -> Result<Vec<Listed>> {
        let mut out = Vec::new();
        let dir = self.root.join(kind.dir());
        let mut dirs = vec![dir.clone()];
        if kind == Kind::Pack {
            dirs.clear();
            match fs::read_dir(&dir) {
                Ok(rd) => {
                    for e in rd {
                        let e = e.map_err(|e| Error::io(&dir, e))?;
                        dirs.push(e.path());
                    }
                }
                Err(e) if e.kind() == ErrorKind::NotFound => return Ok(out),
                Err(e) => return Err(Error::io(&dir, e)),
            }
        }
        for d in dirs {
            let Some(rd) = read_dir_if_present(&d)? else {
                continue;
            };
            for e in rd {
                let e = e.map_err(|e| Error::io(&d, e))?;
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') {
                    continue;
                }
                let meta = e.metadata().map_err(|err| Error::io(e.path(), err))?;
                if meta.is_file() {
                    out.push(Listed {
                        name,
                        size: meta.len(),
                        archived: None,
                    });
                }
            }
        }
        Ok(out)
    }

    fn stat(&self, obj: &ObjectName) -> Result<Option<u64>> {
        let path = self.path(obj);
        match fs::metadata(&path) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(&path, e)),
        }
    }

    fn remove(&self, obj: &ObjectName) -> Result<()> {
        let path = self.path(obj);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(&path, e)),
        }
    }

    /// Temporary files of writes that never finished (the writer was killed, or the disk
    /// filled), in every folder that objects are written to.
    fn remove_leftovers(&self, age: std::time::Duration) -> Result<u64> {
        let mut dirs = vec![self.root.clone()];
        for kind in [Kind::Key, Kind::Index, Kind::Snapshot, Kind::Lock] {
            dirs.push(self.root.join(kind.dir()));
        }
        for i in 0..=255u8 {
            dirs.push(self.root.join("data").join(hex::encode([i])));
        }
        let now = std::time::SystemTime::now();
        let mut removed = 0;
        for d in dirs {
            let Some(rd) = read_dir_if_present(&d)? else {
                continue;
            };
            for e in rd {
                let e = e.map_err(|e| Error::io(&d, e))?;
                if !e.file_name().to_string_lossy().starts_with(TMP_PREFIX) {
                    continue;
                }
                let path = e.path();
                let modified = e
                    .metadata()
                    .and_then(|m| m.modified())
                    .map_err(|err| Error::io(&path, err))?;
                if now.duration_since(modified).unwrap_or_default() < age {
                    continue;
                }
                match fs::remove_file(&path) {
                    Ok(()) => removed += 1,
                    Err(e) if e.kind() == ErrorKind::NotFound => {}
                    Err(e) => return Err(Error::io(&path, e)),
                }
            }
        }
        Ok(removed)
    }
}
