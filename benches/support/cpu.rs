//! Where the machine's CPU time went during a benchmark window, from `/proc` (Linux): the whole
//! machine, each process by name, and this process's threads by name (the in-process server's
//! actix workers apart from the load generator's tokio threads).

// Included by more than one benchmark, each using a part.
#![allow(dead_code)]

use std::collections::BTreeMap;

/// CPU time used so far, in clock ticks.
#[derive(Debug, Default, Clone)]
pub struct Cpu {
    /// The machine's busy time (all cores).
    pub busy: u64,
    /// The machine's total time (all cores, busy or idle).
    pub total: u64,
    /// Each process: its name and its user + system time.
    pub by_pid: BTreeMap<u32, (String, u64)>,
    /// Each thread of this process: its name and its user + system time.
    pub by_thread: BTreeMap<u32, (String, u64)>,
}

/// `(name, user + system ticks)` from a `/proc/…/stat` line: "pid (comm) state ppid …".
fn parse_stat(stat: &str) -> Option<(String, u64)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?.to_owned();
    let rest: Vec<&str> = stat.get(close + 2..)?.split_whitespace().collect();
    let field = |i: usize| rest.get(i).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
    Some((comm, field(11) + field(12)))
}

fn read_dir_stats(dir: &str, stat_of: impl Fn(u32) -> String) -> BTreeMap<u32, (String, u64)> {
    let mut out = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let Some(id) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if let Ok(stat) = std::fs::read_to_string(stat_of(id))
            && let Some(parsed) = parse_stat(&stat)
        {
            out.insert(id, parsed);
        }
    }
    out
}

/// Reads the counters now.
pub fn read_cpu() -> Cpu {
    let mut cpu = Cpu::default();
    if let Ok(stat) = std::fs::read_to_string("/proc/stat")
        && let Some(line) = stat.lines().next()
    {
        let v: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .filter_map(|x| x.parse().ok())
            .collect();
        cpu.total = v.iter().take(8).sum();
        // Idle and I/O wait are not busy.
        cpu.busy = cpu.total - v.get(3).copied().unwrap_or(0) - v.get(4).copied().unwrap_or(0);
    }
    cpu.by_pid = read_dir_stats("/proc", |pid| format!("/proc/{pid}/stat"));
    cpu.by_thread = read_dir_stats("/proc/self/task", |tid| {
        format!("/proc/self/task/{tid}/stat")
    });
    cpu
}

/// Ticks used between two readings by the entries `pred` picks (an entry that appeared in
/// between counts from zero).
fn used_in(
    before: &BTreeMap<u32, (String, u64)>,
    after: &BTreeMap<u32, (String, u64)>,
    pred: &dyn Fn(u32, &str) -> bool,
) -> u64 {
    after
        .iter()
        .filter(|(id, (name, _))| pred(**id, name))
        .map(|(id, (_, a))| a - before.get(id).map_or(0, |(_, b)| *b).min(*a))
        .sum()
}

impl Cpu {
    /// Ticks the processes `pred` picks used since `before`.
    pub fn processes_since(&self, before: &Cpu, pred: &dyn Fn(u32, &str) -> bool) -> u64 {
        used_in(&before.by_pid, &self.by_pid, pred)
    }

    /// Ticks this process's threads that `pred` picks used since `before`.
    pub fn threads_since(&self, before: &Cpu, pred: &dyn Fn(u32, &str) -> bool) -> u64 {
        used_in(&before.by_thread, &self.by_thread, pred)
    }
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`: 100 on Linux for every architecture we run).
pub const TICKS_PER_SEC: f64 = 100.0;
