//! Durable state: JSON documents written atomically under berth's state directory.
//!
//! Every write goes to a temporary file in the target's directory, is
//! fsynced, renamed over the target, and the directory is fsynced, so a
//! `kill -9` at any moment leaves either the old or the new document.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Why the state store failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// Reading or writing a file failed.
    #[error("state file `{path}`: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// A file exists but does not parse.
    #[error("state file `{path}` is corrupt: {source}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
}

/// The kinds of documents berth keeps, one directory each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Workload run configurations (`runconfigs/<name>.json`).
    RunConfig,
    /// Workload statuses (`statuses/<name>.json`).
    Status,
    /// Groups (`groups/<name>.json`).
    Group,
    /// Upgrades in progress: the configuration to put back if berth stops
    /// before the new one answers (`upgrades/<name>.json`).
    Upgrade,
}

impl Kind {
    fn dir(self) -> &'static str {
        match self {
            Self::RunConfig => "runconfigs",
            Self::Status => "statuses",
            Self::Group => "groups",
            Self::Upgrade => "upgrades",
        }
    }
}

/// The state directory and its documents.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    /// Opens (creating, mode 0700) the state directory `root`, and removes
    /// the temporary files an interrupted write left. Only here: while
    /// berth runs, a temporary file may be a write in flight.
    pub fn open(root: &Path) -> Result<Self, StateError> {
        let io = |source| StateError::Io {
            path: root.to_owned(),
            source,
        };
        for dir in [
            Kind::RunConfig.dir(),
            Kind::Status.dir(),
            Kind::Group.dir(),
            Kind::Upgrade.dir(),
            "logs",
        ] {
            fs::create_dir_all(root.join(dir)).map_err(io)?;
            for entry in fs::read_dir(root.join(dir)).map_err(io)?.flatten() {
                if entry
                    .file_name()
                    .to_str()
                    .is_some_and(|f| f.starts_with('.') && f.contains(".tmp"))
                {
                    let _ = fs::remove_file(entry.path());
                }
            }
        }
        set_mode(root, 0o700).map_err(io)?;
        Ok(Self {
            root: root.to_owned(),
        })
    }

    /// The state directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The file of document `name` of `kind`. Names are validated by their
    /// services before they reach the store; a name with a path separator
    /// is a bug, caught here.
    fn path(&self, kind: Kind, name: &str) -> PathBuf {
        assert!(
            !name.is_empty() && !name.contains('/') && !name.starts_with('.'),
            "unvalidated state name {name:?}"
        );
        self.root.join(kind.dir()).join(format!("{name}.json"))
    }

    /// Where berth's own log of workload `name` lives.
    pub fn workload_log(&self, name: &str) -> PathBuf {
        self.root.join("logs").join(format!("{name}.log"))
    }

    /// Reads a document; `None` if it does not exist.
    pub fn read<T: DeserializeOwned>(
        &self,
        kind: Kind,
        name: &str,
    ) -> Result<Option<T>, StateError> {
        let path = self.path(kind, name);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|source| StateError::Corrupt { path, source }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(StateError::Io { path, source }),
        }
    }

    /// Writes a document atomically (2-space JSON, trailing newline, mode 0600).
    pub fn write<T: Serialize>(&self, kind: Kind, name: &str, value: &T) -> Result<(), StateError> {
        let path = self.path(kind, name);
        let mut bytes = serde_json::to_vec_pretty(value).expect("state documents serialize");
        bytes.push(b'\n');
        write_atomic(&path, &bytes).map_err(|source| StateError::Io { path, source })
    }

    /// Removes a document; removing an absent one succeeds.
    pub fn remove(&self, kind: Kind, name: &str) -> Result<(), StateError> {
        let path = self.path(kind, name);
        match fs::remove_file(&path) {
            Ok(()) => sync_dir(path.parent().expect("state files have a parent"))
                .map_err(|source| StateError::Io { path, source }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(StateError::Io { path, source }),
        }
    }

    /// Names of all documents of `kind`, sorted. Temporary files are not
    /// documents (and are never removed here: a concurrent write may own
    /// one; [`Store::open`] sweeps leftovers).
    pub fn list(&self, kind: Kind) -> Result<Vec<String>, StateError> {
        let dir = self.root.join(kind.dir());
        let io = |source| StateError::Io {
            path: dir.clone(),
            source,
        };
        let mut names = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io)? {
            let entry = entry.map_err(io)?;
            let file = entry.file_name();
            let Some(file) = file.to_str() else { continue };
            if let Some(name) = file.strip_suffix(".json")
                && !name.is_empty()
                && !name.starts_with('.')
            {
                names.push(name.to_owned());
            }
        }
        names.sort();
        Ok(names)
    }
}

/// This berth's instance id: 128 random bits, hex, kept in
/// `<state dir>/instance-id` from the first start on. Container backends
/// label what they create with it, so that berths with their own state
/// never touch each other's containers on a shared engine.
pub fn instance_id(state_dir: &Path) -> io::Result<String> {
    let path = state_dir.join("instance-id");
    match fs::read_to_string(&path) {
        Ok(text) => {
            let id = text.trim();
            if id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Ok(id.to_owned());
            }
            Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} does not hold an instance id", path.display()),
            ))
        }
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            let id = format!("{:032x}", rand::random::<u128>());
            write_atomic(&path, id.as_bytes())?;
            Ok(id)
        }
        Err(err) => Err(err),
    }
}

/// Writes `bytes` to `path` atomically: temp file, fsync, rename, fsync dir.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path
        .parent()
        .expect("atomic writes target a file in a directory");
    let file_name = path.file_name().expect("a file name").to_string_lossy();
    let tmp = dir.join(format!(".{file_name}.tmp-{}", rand::random::<u64>()));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_read_list_remove() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        assert_eq!(
            store
                .read::<serde_json::Value>(Kind::Group, "a")
                .expect("read"),
            None
        );
        store
            .write(Kind::Group, "b", &serde_json::json!({"n": 2}))
            .expect("write");
        store
            .write(Kind::Group, "a", &serde_json::json!({"n": 1}))
            .expect("write");
        store
            .write(Kind::Group, "a", &serde_json::json!({"n": 3}))
            .expect("overwrite");
        fs::write(dir.path().join("groups/.c.json.tmp-1"), b"{").expect("fake leftover");
        assert_eq!(store.list(Kind::Group).expect("list"), ["a", "b"]);
        assert!(
            dir.path().join("groups/.c.json.tmp-1").exists(),
            "a listing never removes a temporary file (a write may own it)"
        );
        Store::open(dir.path()).expect("reopen");
        assert!(
            !dir.path().join("groups/.c.json.tmp-1").exists(),
            "leftover temp removed at open"
        );
        let a: serde_json::Value = store.read(Kind::Group, "a").expect("read").expect("some");
        assert_eq!(a["n"], 3);
        let text = fs::read_to_string(dir.path().join("groups/a.json")).expect("raw");
        assert!(
            text.ends_with("}\n") && text.contains("\n  \"n\""),
            "{text:?}"
        );
        store.remove(Kind::Group, "a").expect("remove");
        store.remove(Kind::Group, "a").expect("remove absent");
        assert_eq!(store.list(Kind::Group).expect("list"), ["b"]);
    }

    /// A listing running beside writes never breaks them (it once removed
    /// their temporary files).
    #[test]
    fn listing_while_writing_never_fails_a_write() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let lister = {
            let (store, stop) = (store.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    store.list(Kind::Group).expect("list");
                }
            })
        };
        for i in 0..500 {
            store
                .write(Kind::Group, "g", &serde_json::json!({"n": i}))
                .expect("a write beside a listing");
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        lister.join().expect("lister");
    }

    #[test]
    fn a_failed_write_leaves_the_previous_document_intact() {
        let dir = tempfile::tempdir().expect("tempdir");
        // The longest name whose file fits NAME_MAX (255) but whose
        // temporary sibling does not: every write of it fails after the
        // document exists, as a full disk would make it fail.
        let name = "n".repeat(250);
        let path = dir.path().join(format!("{name}.json"));
        std::fs::write(&path, b"{\"n\": 1}\n").expect("the previous document");
        let err = write_atomic(&path, b"{\"n\": 2}\n").expect_err("the write fails");
        assert!(
            err.kind() == io::ErrorKind::InvalidFilename || err.raw_os_error() == Some(36),
            "{err}"
        );
        assert_eq!(
            std::fs::read(&path).expect("still there"),
            b"{\"n\": 1}\n",
            "the previous document is intact"
        );
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .expect("dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(left.len(), 1, "nothing else is left behind: {left:?}");
    }

    #[test]
    fn corrupt_files_are_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        fs::write(dir.path().join("groups/x.json"), b"{\"na").expect("write");
        let err = store
            .read::<serde_json::Value>(Kind::Group, "x")
            .unwrap_err();
        assert!(err.to_string().contains("corrupt"), "{err}");
    }
}
