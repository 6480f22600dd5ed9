//! Workload cgroups: every process a workload starts, including those that
//! leave its process group with `setsid`, stays in one cgroup v2 group of
//! its own, so a stop reaches all of them.
//!
//! Used where berth may create cgroups (a writable cgroup v2 hierarchy —
//! `/sys/fs/cgroup` on a pure v2 system, `/sys/fs/cgroup/unified` on a
//! hybrid one — as root, or with a delegated subtree). The groups live
//! under `<berth's own cgroup>/berth-<tag>/<workload>`, where `<tag>` is
//! derived from the backend's root directory: two berths with their own
//! state never share (or clean up) each other's groups. No controller is
//! enabled; the groups only track membership. Elsewhere the backend falls
//! back to process groups plus a snapshot of each workload's descendants
//! taken when it is stopped (see `lib.rs`).

use std::ffi::CString;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tracing::{debug, warn};

/// The directory holding this backend's workload cgroups.
#[derive(Debug, Clone)]
pub(crate) struct CgroupRoot {
    dir: PathBuf,
}

impl CgroupRoot {
    /// The root for a backend whose state is `state_root`, created if
    /// needed; `None` (with the reason at debug level) where no cgroup v2
    /// hierarchy can be written.
    pub(crate) fn discover(state_root: &Path) -> Option<Self> {
        let mount = match cgroup2_mount() {
            Some(m) => m,
            None => {
                debug!("No cgroup v2 hierarchy is mounted.");
                return None;
            }
        };
        let own = own_cgroup().unwrap_or_default();
        let tag = fnv1a(state_root.as_os_str().as_bytes());
        let dir = mount
            .join(own.trim_start_matches('/'))
            .join(format!("berth-{tag:016x}"));
        if let Err(err) = std::fs::create_dir_all(&dir) {
            debug!(dir = %dir.display(), error = %err, "Cannot create berth's cgroup.");
            return None;
        }
        // Creating a directory is not enough: moving a process in needs
        // write access to `cgroup.procs` too.
        let probe = dir.join("cgroup.procs");
        if std::fs::OpenOptions::new()
            .write(true)
            .open(&probe)
            .is_err()
        {
            debug!(dir = %dir.display(), "berth's cgroup is not writable.");
            return None;
        }
        Some(Self { dir })
    }

    /// Where the groups are.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// The (empty) group of workload `name`, created or emptied of what a
    /// berth that died left in it.
    pub(crate) fn prepare(&self, name: &str) -> io::Result<WorkloadCgroup> {
        let group = WorkloadCgroup {
            dir: self.dir.join(name),
        };
        match std::fs::create_dir(&group.dir) {
            Ok(()) => {}
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
                if !group.is_empty() {
                    warn!(
                        workload = name,
                        "Killing processes a previous berth left in the workload's cgroup."
                    );
                    group.kill_all();
                }
            }
            Err(err) => return Err(err),
        }
        Ok(group)
    }

    /// Removes the groups that are empty, then this directory if it is:
    /// what a berth that stopped its workloads leaves clean.
    pub(crate) fn remove_empty(&self) {
        if let Ok(entries) = std::fs::read_dir(&self.dir) {
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    let _ = std::fs::remove_dir(entry.path());
                }
            }
        }
        let _ = std::fs::remove_dir(&self.dir);
    }

    /// Kills what runs in every group here and removes the groups whose
    /// processes are gone: the leftovers of a berth that was killed.
    pub(crate) fn reap_leftovers(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let group = WorkloadCgroup { dir: entry.path() };
            if !group.is_empty() {
                warn!(cgroup = %group.dir.display(), "Killing leftover processes of a workload.");
                group.kill_all();
            }
            group.remove();
        }
    }
}

/// One workload's cgroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WorkloadCgroup {
    dir: PathBuf,
}

impl WorkloadCgroup {
    /// What a child runs, between fork and exec, to join the group: the
    /// path of `cgroup.procs` (allocated here, before the fork).
    pub(crate) fn join_path(&self) -> io::Result<CString> {
        CString::new(self.dir.join("cgroup.procs").as_os_str().as_bytes()).map_err(io::Error::other)
    }

    /// The processes in the group.
    pub(crate) fn pids(&self) -> Vec<i32> {
        std::fs::read_to_string(self.dir.join("cgroup.procs"))
            .map(|s| s.lines().filter_map(|l| l.trim().parse().ok()).collect())
            .unwrap_or_default()
    }

    /// Whether no process is left (zombies included until reaped; the
    /// kernel drops a process from `cgroup.procs` once it has exited).
    pub(crate) fn is_empty(&self) -> bool {
        match std::fs::read_to_string(self.dir.join("cgroup.events")) {
            Ok(events) => events.lines().any(|l| l.trim() == "populated 0"),
            Err(_) => self.pids().is_empty(),
        }
    }

    /// Sends `signal` to every process in the group.
    pub(crate) fn signal(&self, signal: Signal) {
        for pid in self.pids() {
            let _ = kill(Pid::from_raw(pid), signal);
        }
    }

    /// Kills every process in the group: `cgroup.kill` (Linux 5.14), else
    /// SIGKILL to each member.
    pub(crate) fn kill_all(&self) {
        let written = std::fs::OpenOptions::new()
            .write(true)
            .open(self.dir.join("cgroup.kill"))
            .and_then(|mut f| f.write_all(b"1"));
        if written.is_err() {
            self.signal(Signal::SIGKILL);
        }
    }

    /// Removes the group (once it is empty; otherwise it stays, and the
    /// next `prepare` or start-up clean-up deals with it).
    pub(crate) fn remove(&self) {
        match std::fs::remove_dir(&self.dir) {
            Ok(()) => {}
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => {
                debug!(cgroup = %self.dir.display(), error = %err, "Cannot remove a workload cgroup yet.");
            }
        }
    }
}

/// Moves the calling process into the group whose `cgroup.procs` is
/// `procs`. Runs in the child between fork and exec: only
/// async-signal-safe calls, no allocation.
pub(crate) fn join_self(procs: &CString) -> io::Result<()> {
    #[allow(unsafe_code)]
    // SAFETY: `open`, `write` and `close` are async-signal-safe; `procs`
    // is a valid NUL-terminated string allocated before the fork, and the
    // buffer written is a static byte string.
    unsafe {
        let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // "0" moves the writing process itself.
        let n = libc::write(fd, b"0".as_ptr().cast(), 1);
        let err = io::Error::last_os_error();
        libc::close(fd);
        if n != 1 {
            return Err(err);
        }
    }
    Ok(())
}

/// The cgroup v2 mount point, from `/proc/self/mountinfo`.
fn cgroup2_mount() -> Option<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().find_map(|line| {
        // `id parent major:minor root mountpoint options [optional...] - fstype source super`
        let (left, right) = line.split_once(" - ")?;
        let fstype = right.split_whitespace().next()?;
        let mountpoint = left.split_whitespace().nth(4)?;
        (fstype == "cgroup2").then(|| PathBuf::from(mountpoint))
    })
}

/// berth's own cgroup v2 path (`0::/path` in `/proc/self/cgroup`).
fn own_cgroup() -> Option<String> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(str::to_owned)
}

/// FNV-1a: a stable, short tag for a path (no security role).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}
