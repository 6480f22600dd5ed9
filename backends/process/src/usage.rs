//! What processes use, read from `/proc`: a workload's process tree
//! ([`crate::ProcessBackend`]'s `usage`) and any one process, berth's own
//! included ([`sample`]).

use std::sync::OnceLock;

use berth_runtime_api::Usage;
use nix::unistd::{SysconfVar, sysconf};

/// One process as read from `/proc/<pid>/stat`.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct Sample {
    /// User and system CPU time, its reaped children's included, seconds.
    pub cpu_seconds: f64,
    /// Resident memory, bytes.
    pub rss_bytes: u64,
    /// Virtual memory, bytes.
    pub virtual_bytes: u64,
    /// Threads.
    pub threads: u64,
    /// When it started, in seconds after boot.
    pub started_after_boot: f64,
}

/// Clock ticks per second and the page size.
fn units() -> (f64, u64) {
    static UNITS: OnceLock<(f64, u64)> = OnceLock::new();
    *UNITS.get_or_init(|| {
        let ticks = sysconf(SysconfVar::CLK_TCK)
            .ok()
            .flatten()
            .filter(|t| *t > 0)
            .unwrap_or(100);
        let page = sysconf(SysconfVar::PAGE_SIZE)
            .ok()
            .flatten()
            .filter(|p| *p > 0)
            .unwrap_or(4096);
        (ticks as f64, page as u64)
    })
}

/// Reads process `pid` (`"self"` for the caller); `None` when it is gone,
/// a zombie, or there is no `/proc`.
pub fn sample(pid: &str) -> Option<Sample> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse(&text, units())
}

fn parse(text: &str, (ticks, page): (f64, u64)) -> Option<Sample> {
    // Fields after the command name (which may hold spaces and
    // parentheses): `rest[0]` is field 3 of proc(5).
    let rest: Vec<&str> = text[text.rfind(')')? + 1..].split_whitespace().collect();
    if matches!(rest.first()?.chars().next()?, 'Z' | 'X') {
        return None;
    }
    let field = |n: usize| rest.get(n - 3)?.parse::<u64>().ok();
    let cpu = field(14)? + field(15)? + field(16)? + field(17)?;
    Some(Sample {
        cpu_seconds: cpu as f64 / ticks,
        threads: field(20)?,
        started_after_boot: field(22)? as f64 / ticks,
        virtual_bytes: field(23)?,
        rss_bytes: field(24)?.saturating_mul(page),
    })
}

/// The sum over `pids` (those gone by now are left out).
pub(crate) fn total(pids: impl IntoIterator<Item = i32>) -> Usage {
    let (mut n, mut rss, mut cpu) = (0u32, 0u64, 0.0);
    for pid in pids {
        if let Some(s) = sample(&pid.to_string()) {
            n += 1;
            rss += s.rss_bytes;
            cpu += s.cpu_seconds;
        }
    }
    Usage::new(n, rss, cpu)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_stat_line_whose_name_has_parentheses() {
        let line = "42 (we (ird) name) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 30 20 20 0 3 0 12345 104857600 2560 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 17 1 0 0 0 0 0";
        let s = parse(line, (100.0, 4096)).unwrap();
        assert_eq!(s.cpu_seconds, 3.5);
        assert_eq!(s.threads, 3);
        assert_eq!(s.started_after_boot, 123.45);
        assert_eq!(s.virtual_bytes, 104_857_600);
        assert_eq!(s.rss_bytes, 2560 * 4096);
        let zombie = line.replace(") S ", ") Z ");
        assert_eq!(parse(&zombie, (100.0, 4096)), None);
        assert_eq!(parse("garbage", (100.0, 4096)), None);
        assert_eq!(parse("1 (x) S 1 2", (100.0, 4096)), None);
    }

    #[test]
    fn reads_this_process() {
        let s = sample("self").expect("/proc/self/stat");
        assert!(s.rss_bytes > 1 << 20, "{s:?}");
        assert!(s.threads >= 1);
        let total = total([std::process::id() as i32, i32::MAX]);
        assert_eq!(total.processes, 1);
    }
}
