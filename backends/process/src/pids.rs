//! Pid records (`pids/<name>.json`) and the clean-up of processes that a
//! previous berth left behind, plus the `/proc` reading both need.
//!
//! A record is written when a workload is spawned and removed when its
//! process is reaped, so a record found at start-up belongs to a berth that
//! died without stopping its children (`kill -9`). The process start time in
//! the record tells a leftover from an unrelated process that reuses its pid.

use std::io;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use tracing::{debug, warn};

/// What berth remembers of a spawned workload process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PidRecord {
    /// The process id.
    pub(crate) pid: i32,
    /// Its start time in clock ticks after boot (`/proc/<pid>/stat` field
    /// 22), when it could be read.
    pub(crate) start_time: Option<u64>,
    /// The process group it leads.
    pub(crate) pgid: i32,
}

/// The path of workload `name`'s pid record.
pub(crate) fn record_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.json"))
}

/// Writes the record of workload `name`.
pub(crate) fn write(dir: &Path, name: &str, record: &PidRecord) -> io::Result<()> {
    let json = serde_json::to_vec(record).map_err(io::Error::other)?;
    std::fs::write(record_path(dir, name), json)
}

/// Deletes the record of workload `name`, if any.
pub(crate) fn remove(dir: &Path, name: &str) -> io::Result<()> {
    match std::fs::remove_file(record_path(dir, name)) {
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Kills the process group of every record in `dir` whose process still runs
/// (same pid, same start time), then deletes every record.
pub(crate) fn reap_leftovers(dir: &Path) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_none_or(|ext| ext != "json") {
            continue;
        }
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        match read_record(&path) {
            Ok(record) => reap_one(&name, &record),
            Err(err) => {
                warn!(path = %path.display(), error = %err, "Unreadable pid record; deleting it.");
            }
        }
        match std::fs::remove_file(&path) {
            Err(err) if err.kind() != io::ErrorKind::NotFound => return Err(err),
            _ => {}
        }
    }
    Ok(())
}

fn read_record(path: &Path) -> io::Result<PidRecord> {
    let bytes = std::fs::read(path)?;
    serde_json::from_slice(&bytes).map_err(io::Error::other)
}

fn reap_one(name: &str, record: &PidRecord) {
    let Some(stat) = ProcStat::read(record.pid) else {
        debug!(workload = %name, pid = record.pid, "Leftover process is gone.");
        return;
    };
    let same = record.start_time == Some(stat.start_time) && stat.pgrp == record.pgid;
    if !same {
        debug!(workload = %name, pid = record.pid, "Pid now belongs to another process; leaving it.");
        return;
    }
    match killpg(Pid::from_raw(record.pgid), Signal::SIGKILL) {
        Ok(()) | Err(Errno::ESRCH) => {
            warn!(
                workload = %name,
                pid = record.pid,
                pgid = record.pgid,
                "Killed the process group a previous berth left running."
            );
        }
        Err(err) => {
            warn!(workload = %name, pgid = record.pgid, error = %err, "Could not kill a leftover process group.");
        }
    }
}

/// The fields of `/proc/<pid>/stat` berth uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProcStat {
    /// The state letter (field 3), e.g. `R`, `S`, `Z`.
    pub(crate) state: char,
    /// The parent process (field 4).
    pub(crate) ppid: i32,
    /// The process group (field 5).
    pub(crate) pgrp: i32,
    /// The start time in clock ticks after boot (field 22).
    pub(crate) start_time: u64,
}

impl ProcStat {
    /// Reads `/proc/<pid>/stat`; `None` when the process does not exist or
    /// there is no `/proc`.
    pub(crate) fn read(pid: i32) -> Option<Self> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        Self::parse(&text)
    }

    fn parse(text: &str) -> Option<Self> {
        // The command name (field 2) is in parentheses and may hold spaces or
        // parentheses itself, so the fields after it start at the last `)`.
        let rest = &text[text.rfind(')')? + 1..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        Some(Self {
            state: fields.first()?.chars().next()?,
            ppid: fields.get(1)?.parse().ok()?,
            pgrp: fields.get(2)?.parse().ok()?,
            start_time: fields.get(19)?.parse().ok()?,
        })
    }
}

/// Every live descendant of process `root` (children, their children, …),
/// whatever their process group or session.
pub(crate) fn descendants(root: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let procs: Vec<(i32, ProcStat)> = entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| Some((pid, ProcStat::read(pid)?)))
        .filter(|(_, s)| !matches!(s.state, 'Z' | 'X'))
        .collect();
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(
            procs
                .iter()
                .filter(|(pid, s)| s.ppid == parent && !found.contains(pid))
                .map(|(pid, _)| *pid)
                .collect::<Vec<_>>(),
        );
        i += 1;
    }
    found.remove(0);
    found
}

/// The live members of process group `pgid`.
pub(crate) fn group_members(pgid: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            ProcStat::read(*pid).is_some_and(|s| s.pgrp == pgid && !matches!(s.state, 'Z' | 'X'))
        })
        .collect()
}

/// Whether process `pid` still runs (not a zombie) and started at `start`.
pub(crate) fn running_since(pid: i32, start: Option<u64>) -> bool {
    ProcStat::read(pid)
        .is_some_and(|s| !matches!(s.state, 'Z' | 'X') && Some(s.start_time) == start)
}

/// The start time of process `pid`, if it can be read.
pub(crate) fn start_time(pid: i32) -> Option<u64> {
    ProcStat::read(pid).map(|s| s.start_time)
}

/// Whether process group `pgid` still has a member that is not a zombie.
pub(crate) fn group_alive(pgid: i32) -> bool {
    if killpg(Pid::from_raw(pgid), None) == Err(Errno::ESRCH) {
        return false;
    }
    // Zombies count for kill(2) until someone reaps them, which for orphans is
    // up to init; look for a live member instead.
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return true;
    };
    entries.filter_map(Result::ok).any(|entry| {
        entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
            .and_then(ProcStat::read)
            .is_some_and(|stat| stat.pgrp == pgid && !matches!(stat.state, 'Z' | 'X'))
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::{CommandExt, ExitStatusExt};
    use std::process::Command;

    use super::*;

    #[test]
    fn parses_proc_stat() {
        let line = "4242 (my (odd) cmd) S 1 4240 4240 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 200 18446744073709551615";
        assert_eq!(
            ProcStat::parse(line),
            Some(ProcStat {
                state: 'S',
                ppid: 1,
                pgrp: 4240,
                start_time: 987_654
            })
        );
        assert_eq!(ProcStat::parse("4242 (x) S 1"), None);
        assert_eq!(ProcStat::parse(""), None);
    }

    /// A `sleep 30` in a process group of its own, and its pid.
    fn sleeper() -> (std::process::Child, i32) {
        let child = Command::new("/bin/sleep")
            .arg("30")
            .process_group(0)
            .spawn()
            .expect("spawn sleep");
        let pid = i32::try_from(child.id()).expect("pid fits");
        (child, pid)
    }

    #[test]
    fn reaps_a_leftover_process_group() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut child, pid) = sleeper();
        let record = PidRecord {
            pid,
            start_time: start_time(pid),
            pgid: pid,
        };
        assert!(record.start_time.is_some(), "start time of a live process");
        write(dir.path(), "leftover", &record).expect("write record");

        reap_leftovers(dir.path()).expect("reap");

        let status = child.wait().expect("wait");
        assert_eq!(status.signal(), Some(Signal::SIGKILL as i32), "{status:?}");
        assert!(
            !record_path(dir.path(), "leftover").exists(),
            "record deleted"
        );
    }

    #[test]
    fn spares_a_process_that_reuses_the_pid() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut child, pid) = sleeper();
        let stale = PidRecord {
            pid,
            start_time: start_time(pid).map(|t| t + 1),
            pgid: pid,
        };
        write(dir.path(), "stale", &stale).expect("write record");
        std::fs::write(record_path(dir.path(), "garbage"), "not json").expect("write garbage");

        reap_leftovers(dir.path()).expect("reap");

        assert!(
            child.try_wait().expect("try_wait").is_none(),
            "still running"
        );
        assert_eq!(
            std::fs::read_dir(dir.path()).expect("read dir").count(),
            0,
            "records deleted"
        );
        child.kill().expect("kill");
        child.wait().expect("wait");
    }
}
