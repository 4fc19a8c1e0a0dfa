//! What Linux's `/proc` says about processes: which children a process has and whether one
//! still runs. Child-process lifecycles are this crate's business; the gateway's tests and the
//! benchmarks ask the same questions of their own processes.

/// The direct children of `parent`, each with its command name (as `/proc/PID/stat` gives it).
pub fn children_of(parent: u32) -> Vec<(u32, String)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // "PID (COMM) STATE PPID ...": the name may hold spaces, so split at the last ')'.
            let (head, tail) = stat.rsplit_once(')')?;
            let name = head.split_once('(').map(|(_, n)| n).unwrap_or_default();
            let ppid = tail.split_whitespace().nth(1)?.parse::<u32>().ok()?;
            (ppid == parent).then(|| (pid, name.to_owned()))
        })
        .collect()
}

/// Whether a process still runs (a zombie, exited but not yet reaped, counts as gone).
pub fn is_running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/status")) {
        Ok(status) => !status
            .lines()
            .any(|l| l.starts_with("State:") && l.contains('Z')),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_child_by_name_until_it_is_reaped() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("spawn sleep");
        let me = std::process::id();
        assert!(children_of(me).contains(&(child.id(), "sleep".to_owned())));
        assert!(is_running(child.id()));
        child.kill().expect("kill");
        child.wait().expect("reap");
        assert!(!is_running(child.id()));
        assert!(!children_of(me).iter().any(|(pid, _)| *pid == child.id()));
    }
}
