//! Safe edits of one client's configuration file in the user's home.
//!
//! berth runs as a daemon, often as root, and edits files in a directory
//! its user controls. The invariants:
//!
//! - **Only inside home.** A path is resolved first, following every
//!   symlink the way the kernel would (a link whose target does not exist
//!   yet is followed too); a result outside the home directory is refused
//!   before anything is created or locked. A symlinked config file is
//!   edited at its target and the link stays a link.
//! - **No following afterwards.** The resolved directories are then opened
//!   one by one from home with `O_NOFOLLOW`, and every later step (the
//!   lock, the read, the temp file, the rename) works relative to the
//!   directory's descriptor with `O_NOFOLLOW`: a directory swapped for a
//!   symlink after the resolution makes the edit fail instead of writing
//!   elsewhere.
//! - **Checks before effects.** Non-regular files (directories, fifos,
//!   devices: looked at with `fstatat`, never opened blocking) and
//!   read-only files or directories (no owner write bit, or not writable
//!   by berth: as root the kernel allows everything, so the mode bits are
//!   the user's word) are refused before any directory, lock or file is
//!   made.
//! - **One editor at a time.** An exclusive `flock` on `<file>.lock` (the
//!   lock file ToolHive uses, so the two tools exclude each other) covers
//!   read, change and write. It blocks: call [`edit`] off the async
//!   runtime. The missing directories of the file are made before the
//!   lock, as the lock file lives in the file's directory.
//! - **Atomic replacement.** The new text goes to a temp file in the same
//!   directory, fsynced, given its mode and owner, renamed over the file,
//!   and the directory is fsynced. A failure at any step removes the temp
//!   file and leaves the original as it was. The file's inode is replaced,
//!   never written through, so a hard link to another file is not touched.
//! - **Ownership.** An existing file keeps its permission bits (without
//!   setuid, setgid and sticky) and owner; a new file is 0600 and new
//!   directories 0700, owned by home's owner (as is a new lock file). No
//!   file berth did not create is ever chowned.
//! - **Bounded reads.** Text over [`LIMIT`] bytes or not UTF-8 is refused;
//!   error messages name paths, never file content.

// Until the client sync that calls it lands.

use std::ffi::{OsStr, OsString};
use std::fs::{self, File, Permissions};
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt, fchown};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AT_FDCWD, AtFlags, Flock, FlockArg, OFlag, openat, renameat};
use nix::sys::stat::{FileStat, Mode, SFlag, fstatat, mkdirat};
use nix::unistd::{AccessFlags, UnlinkatFlags, faccessat, unlinkat};

use super::format::FormatError;

/// The largest file berth reads (16 MiB).
pub(crate) const LIMIT: u64 = 16 << 20;

/// How many symlinks one resolution follows (Linux's own limit).
const MAX_LINKS: u32 = 40;

/// The user's home directory: canonical path, and the owner new files and
/// directories get.
#[derive(Debug)]
pub(crate) struct Home {
    root: PathBuf,
    uid: u32,
    gid: u32,
}

/// Why a file cannot be read or edited. Nothing was written.
#[derive(Debug, thiserror::Error)]
pub(crate) enum EditError {
    /// The path (after following symlinks) is outside the home directory.
    #[error("`{path}` resolves outside the home directory `{home}`")]
    Escapes { path: PathBuf, home: PathBuf },
    /// The file or its directory is read-only (no owner write bit, or not
    /// writable by berth).
    #[error("`{path}` is read-only")]
    ReadOnly { path: PathBuf },
    /// Not a regular file (a directory, fifo, device...).
    #[error("`{path}` is not a regular file")]
    NotAFile { path: PathBuf },
    /// The file is not UTF-8 text.
    #[error("`{path}` is not UTF-8 text")]
    NotText { path: PathBuf },
    /// Larger than the limit: not read.
    #[error("`{path}` is larger than {limit} bytes")]
    TooLarge { path: PathBuf, limit: u64 },
    /// The writer refused the content. (The writer's own words, which may
    /// quote the file, are left to the source.)
    #[error("`{path}` cannot be edited: {}", refusal(source))]
    Format {
        path: PathBuf,
        #[source]
        source: FormatError,
    },
    /// Any other I/O failure.
    #[error("`{path}`: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn refusal(err: &FormatError) -> String {
    match err {
        FormatError::Parse { format, .. } => format!("it is not valid {format}"),
        FormatError::Shape(_) => "its content is not laid out as the client expects".into(),
    }
}

impl Home {
    /// Opens `dir` (must exist and be a directory; canonicalized); records
    /// its owner uid/gid.
    pub(crate) fn open(dir: &Path) -> Result<Home, EditError> {
        let io = |source| EditError::Io {
            path: dir.to_owned(),
            source,
        };
        let root = fs::canonicalize(dir).map_err(io)?;
        let meta = fs::metadata(&root).map_err(io)?;
        if !meta.is_dir() {
            return Err(io(io::ErrorKind::NotADirectory.into()));
        }
        Ok(Home {
            root,
            uid: meta.uid(),
            gid: meta.gid(),
        })
    }

    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    /// Whether `path` (a file or directory, may contain symlinks) exists
    /// and resolves inside home. Used for "installed" detection.
    pub(crate) fn exists(&self, path: &Path) -> bool {
        fs::canonicalize(self.root.join(path)).is_ok_and(|p| p.starts_with(&self.root))
    }

    /// Where `path` (relative to home, or absolute) really is.
    fn target(&self, path: &Path) -> Result<Target, EditError> {
        let given = self.root.join(path);
        let resolved = resolve(&given).map_err(|source| EditError::Io {
            path: given.clone(),
            source,
        })?;
        let escapes = || EditError::Escapes {
            path: given.clone(),
            home: self.root.clone(),
        };
        let rel = resolved.strip_prefix(&self.root).map_err(|_| escapes())?;
        let (Some(name), Some(dir)) = (rel.file_name(), rel.parent()) else {
            return Err(EditError::NotAFile { path: resolved });
        };
        Ok(Target {
            dir: dir.to_owned(),
            name: name.to_owned(),
            path: resolved.clone(),
        })
    }
}

/// A resolved file: its directory relative to home (no symlinks, no `..`)
/// and its name.
struct Target {
    dir: PathBuf,
    name: OsString,
    /// The absolute path, for messages.
    path: PathBuf,
}

impl Target {
    fn io(&self, source: impl Into<io::Error>) -> EditError {
        EditError::Io {
            path: self.path.clone(),
            source: source.into(),
        }
    }
}

/// `path` (absolute) with every symlink followed, like the kernel does,
/// except that trailing components need not exist: a dangling link is
/// judged by where it points. `..` after a missing component is taken
/// lexically. The result is absolute and has no `.`, `..` or links.
fn resolve(path: &Path) -> io::Result<PathBuf> {
    let mut out = PathBuf::from("/");
    let mut rest = path.to_owned();
    let mut links = 0;
    loop {
        let mut components = rest.components();
        let Some(first) = components.next() else {
            return Ok(out);
        };
        let tail = components.as_path().to_owned();
        match first {
            Component::RootDir | Component::Prefix(_) => out = PathBuf::from("/"),
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(name) => {
                out.push(name);
                match fs::symlink_metadata(&out) {
                    Ok(meta) if meta.file_type().is_symlink() => {
                        links += 1;
                        if links > MAX_LINKS {
                            return Err(Errno::ELOOP.into());
                        }
                        let link = fs::read_link(&out)?;
                        out.pop();
                        rest = link.join(tail);
                        continue;
                    }
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
        }
        rest = tail;
    }
}

/// Opens a directory below `at` without following a symlink.
fn open_dir(at: impl AsFd, name: &Path) -> nix::Result<File> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    openat(at, name, flags, Mode::empty()).map(File::from)
}

/// Opens home and the directories of `rel` below it one by one, never
/// following a symlink, up to the first that does not exist. Returns the
/// deepest directory opened and the names still missing below it.
fn open_dirs<'a>(root: &Path, rel: &'a Path) -> io::Result<(File, Vec<&'a OsStr>)> {
    let mut dir = open_dir(AT_FDCWD, root)?;
    let mut names = rel.iter();
    for name in names.by_ref() {
        match open_dir(&dir, Path::new(name)) {
            Ok(next) => dir = next,
            Err(Errno::ENOENT) => {
                let missing = std::iter::once(name).chain(names).collect();
                return Ok((dir, missing));
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok((dir, Vec::new()))
}

/// Whether berth may change what `name` in `dir` is: the owner write bit
/// and berth's own access (`EROFS`, or berth not being root).
fn writable(dir: &File, name: &Path, stat: &FileStat) -> bool {
    Mode::from_bits_truncate(stat.st_mode).contains(Mode::S_IWUSR)
        && faccessat(dir, name, AccessFlags::W_OK, AtFlags::empty()).is_ok()
}

/// The file's status without following a link or opening it; `None` when
/// it does not exist. Anything but a regular file is refused.
fn stat_file(dir: &File, t: &Target) -> Result<Option<FileStat>, EditError> {
    match fstatat(dir, t.name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(stat) if SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT == SFlag::S_IFREG => {
            Ok(Some(stat))
        }
        Ok(_) => Err(EditError::NotAFile {
            path: t.path.clone(),
        }),
        Err(Errno::ENOENT) => Ok(None),
        Err(e) => Err(t.io(e)),
    }
}

/// Reads the file `t.name` in `dir`: its text and metadata, `None` when it
/// does not exist.
fn read_at(dir: &File, t: &Target) -> Result<Option<(String, fs::Metadata)>, EditError> {
    if stat_file(dir, t)?.is_none() {
        return Ok(None);
    }
    // O_NONBLOCK: should a fifo replace the file after the check, opening
    // it does not hang (the fstat below refuses it).
    let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
    let file = match openat(dir, t.name.as_os_str(), flags, Mode::empty()) {
        Ok(fd) => File::from(fd),
        Err(Errno::ENOENT) => return Ok(None),
        Err(e) => return Err(t.io(e)),
    };
    let meta = file.metadata().map_err(|e| t.io(e))?;
    if !meta.is_file() {
        return Err(EditError::NotAFile {
            path: t.path.clone(),
        });
    }
    let too_large = || EditError::TooLarge {
        path: t.path.clone(),
        limit: LIMIT,
    };
    if meta.len() > LIMIT {
        return Err(too_large());
    }
    let mut bytes = Vec::new();
    file.take(LIMIT + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| t.io(e))?;
    if bytes.len() as u64 > LIMIT {
        return Err(too_large());
    }
    let text = String::from_utf8(bytes).map_err(|_| EditError::NotText {
        path: t.path.clone(),
    })?;
    Ok(Some((text, meta)))
}

/// Reads the file's text (None when it does not exist). No lock.
pub(crate) fn read(home: &Home, path: &Path) -> Result<Option<String>, EditError> {
    let t = home.target(path)?;
    let (dir, missing) = open_dirs(&home.root, &t.dir).map_err(|e| t.io(e))?;
    if !missing.is_empty() {
        return Ok(None);
    }
    Ok(read_at(&dir, &t)?.map(|(text, _)| text))
}

/// Edits the file: resolves `path` (relative to home, or absolute;
/// following symlinks), refuses a target outside home, read-only files or
/// directories and non-regular files before locking or creating anything,
/// makes the missing directories, takes the exclusive lock on
/// `<target>.lock`, reads the current text ("" when missing) and calls `f`.
/// If `f` returns `Ok(Some(new))` with `new != text`, the file is replaced
/// atomically (see the module doc). Returns whether it was written.
pub(crate) fn edit(
    home: &Home,
    path: &Path,
    f: impl FnOnce(&str) -> Result<Option<String>, FormatError>,
) -> Result<bool, EditError> {
    let t = home.target(path)?;
    let (mut dir, missing) = open_dirs(&home.root, &t.dir).map_err(|e| t.io(e))?;

    // Checks, before anything is made.
    let read_only = || EditError::ReadOnly {
        path: t.path.clone(),
    };
    let dir_stat = nix::sys::stat::fstat(&dir).map_err(|e| t.io(e))?;
    if !writable(&dir, Path::new("."), &dir_stat) {
        return Err(read_only());
    }
    if missing.is_empty()
        && let Some(stat) = stat_file(&dir, &t)?
        && !writable(&dir, Path::new(&t.name), &stat)
    {
        return Err(read_only());
    }

    for name in missing {
        dir = make_dir(&dir, name, home).map_err(|e| t.io(e))?;
    }
    let _lock = lock(&dir, &t.name, home).map_err(|e| t.io(e))?;

    let current = read_at(&dir, &t)?;
    let text = current.as_ref().map_or("", |(text, _)| text.as_str());
    let new = f(text).map_err(|source| EditError::Format {
        path: t.path.clone(),
        source,
    })?;
    let Some(new) = new.filter(|new| new.as_str() != text) else {
        return Ok(false);
    };
    let (mode, uid, gid) = match &current {
        Some((_, meta)) => (meta.mode() & 0o777, meta.uid(), meta.gid()),
        None => (0o600, home.uid, home.gid),
    };
    replace(&dir, &t.name, new.as_bytes(), mode, (uid, gid)).map_err(|e| t.io(e))?;
    Ok(true)
}

/// Makes the directory `name` in `parent` (0700, home's owner), or opens
/// it when another process made it first.
fn make_dir(parent: &File, name: &OsStr, home: &Home) -> io::Result<File> {
    let made = match mkdirat(parent, name, Mode::S_IRWXU) {
        Ok(()) => true,
        Err(Errno::EEXIST) => false,
        Err(e) => return Err(e.into()),
    };
    let dir = open_dir(parent, Path::new(name))?;
    if made {
        fchown(&dir, Some(home.uid), Some(home.gid))?;
    }
    Ok(dir)
}

/// Takes the exclusive lock on `<name>.lock` in `dir`, making the lock file
/// (0600, home's owner) if needed. Blocks while another holder has it.
fn lock(dir: &File, name: &OsStr, home: &Home) -> io::Result<Flock<File>> {
    let mut lock_name = name.to_owned();
    lock_name.push(".lock");
    let flags = OFlag::O_RDWR | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
    let create = flags | OFlag::O_CREAT | OFlag::O_EXCL;
    let file = match openat(
        dir,
        lock_name.as_os_str(),
        create,
        Mode::S_IRUSR | Mode::S_IWUSR,
    ) {
        Ok(fd) => {
            let file = File::from(fd);
            fchown(&file, Some(home.uid), Some(home.gid))?;
            file
        }
        Err(Errno::EEXIST) => File::from(openat(dir, lock_name.as_os_str(), flags, Mode::empty())?),
        Err(e) => return Err(e.into()),
    };
    Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, errno)| errno.into())
}

/// Replaces `name` in `dir` with `bytes` through a temp file given `mode`
/// and `owner`; the temp file is removed on any failure.
fn replace(dir: &File, name: &OsStr, bytes: &[u8], mode: u32, owner: (u32, u32)) -> io::Result<()> {
    let mut tmp = OsString::from(".");
    tmp.push(name);
    tmp.push(format!(".tmp-{:016x}", rand::random::<u64>()));
    let flags =
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let mut file = File::from(openat(
        dir,
        tmp.as_os_str(),
        flags,
        Mode::S_IRUSR | Mode::S_IWUSR,
    )?);
    let result = (|| {
        file.write_all(bytes)?;
        fchown(&file, Some(owner.0), Some(owner.1))?;
        file.set_permissions(Permissions::from_mode(mode))?;
        file.sync_all()?;
        renameat(dir, tmp.as_os_str(), dir, name)?;
        dir.sync_all()
    })();
    if result.is_err() {
        let _ = unlinkat(dir, tmp.as_os_str(), UnlinkatFlags::NoRemoveDir);
    }
    result
}

#[cfg(test)]
mod tests;
