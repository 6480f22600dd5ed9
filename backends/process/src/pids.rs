//! Pid records: which processes berth started, so that the children of a
//! berth that was killed can be found and ended when it starts again.
//!
//! A record holds the pid, its process group and its start time (field 22
//! of `/proc/<pid>/stat`); a process is ours only if all three still match,
//! so a recycled pid is never signalled.

use std::fs;
use std::path::Path;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

/// One started process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PidRecord {
    pub(crate) pid: u32,
    pub(crate) pgid: u32,
    pub(crate) start_time: u64,
}

/// The start time of `pid` in clock ticks since boot, if it runs.
pub(crate) fn start_time(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses: split after the last ')'.
    let rest = stat.rsplit_once(')')?.1;
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Writes the record of a started process.
pub(crate) fn write(dir: &Path, name: &str, rec: &PidRecord) -> std::io::Result<()> {
    let tmp = dir.join(format!(".{name}.json.tmp"));
    fs::write(&tmp, serde_json::to_vec(rec).expect("records serialize"))?;
    fs::rename(tmp, dir.join(format!("{name}.json")))
}

/// Removes the record of `name`.
pub(crate) fn remove(dir: &Path, name: &str) {
    let _ = fs::remove_file(dir.join(format!("{name}.json")));
}

/// Kills the process group of every recorded process that still runs, and
/// removes all records. Returns the names whose processes were killed.
pub(crate) fn reap_leftovers(dir: &Path) -> Vec<String> {
    let mut killed = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return killed;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let file = entry.file_name().to_string_lossy().into_owned();
        let Some(name) = file.strip_suffix(".json").filter(|n| !n.starts_with('.')) else {
            if file.starts_with('.') {
                let _ = fs::remove_file(&path); // an interrupted write
            }
            continue;
        };
        let record = fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice::<PidRecord>(&b).ok());
        if let Some(rec) = record {
            if start_time(rec.pid) == Some(rec.start_time) {
                if let Ok(pgid) = i32::try_from(rec.pgid) {
                    let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
                    killed.push(name.to_owned());
                }
            }
        }
        let _ = fs::remove_file(&path);
    }
    killed
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;

    #[test]
    fn leftovers_are_killed_and_strangers_spared() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .process_group(0)
            .spawn()
            .expect("spawn sleep");
        let pid = child.id();
        let rec = PidRecord {
            pid,
            pgid: pid,
            start_time: start_time(pid).expect("running"),
        };
        write(dir.path(), "w", &rec).expect("write");
        // A record whose start time does not match: a recycled pid, not ours.
        let stranger = PidRecord {
            start_time: rec.start_time + 1,
            ..rec.clone()
        };
        write(dir.path(), "x", &stranger).expect("write");
        // Reap only the stranger first: nothing is killed.
        fs::rename(dir.path().join("w.json"), dir.path().join("w.keep")).expect("hide");
        assert!(reap_leftovers(dir.path()).is_empty());
        assert!(
            child.try_wait().expect("try_wait").is_none(),
            "a stranger is spared"
        );
        fs::rename(dir.path().join("w.keep"), dir.path().join("w.json")).expect("unhide");
        assert_eq!(reap_leftovers(dir.path()), ["w"]);
        let status = child.wait().expect("wait");
        assert!(!status.success(), "the leftover was killed");
        assert_eq!(
            fs::read_dir(dir.path()).expect("dir").count(),
            0,
            "records removed"
        );
    }
}
