//! The operating-system side: file-descriptor limit, memory of a process from /proc, signals,
//! reaping with resource usage.

use std::time::Duration;

use anyhow::{bail, Context, Result};

/// Raises the soft limit on open files to the hard limit (10,000 clients need 10,000 sockets);
/// returns the new soft limit. Children (the gateway) inherit it.
pub fn raise_nofile() -> Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed by pointer.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            bail!("getrlimit: {}", std::io::Error::last_os_error());
        }
        limit.rlim_cur = limit.rlim_max;
        if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
            bail!("setrlimit: {}", std::io::Error::last_os_error());
        }
    }
    Ok(limit.rlim_cur)
}

/// A field of /proc/PID/status in KiB (`VmRSS`, `VmHWM`).
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// Resident memory now, in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmRSS")
}

/// The most resident memory the process has had, in KiB.
pub fn hwm_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmHWM")
}

/// Direct children of `parent` whose command name is `comm`.
pub fn children_named(parent: u32, comm: &str) -> Vec<u32> {
    dynamodb_local::procfs::children_of(parent)
        .into_iter()
        .filter(|(_, name)| name == comm)
        .map(|(pid, _)| pid)
        .collect()
}

/// Sends `signal` to one process by its id.
pub fn signal(pid: u32, signal: libc::c_int) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: kill has no memory effects; a stale pid only yields ESRCH.
        unsafe {
            libc::kill(pid, signal);
        }
    }
}

/// Waits for a child started with `std::process` and returns its peak RSS (KiB) from
/// `wait4`'s resource usage. Blocking: call from `spawn_blocking`.
pub fn reap_with_rusage(pid: u32) -> Result<u64> {
    let pid = libc::pid_t::try_from(pid).context("pid out of range")?;
    let mut status = 0;
    // SAFETY: rusage is plain data; wait4 fills it for the child it reaps.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: wait4 writes only to the two pointers given.
    let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    if reaped != pid {
        bail!("wait4({pid}): {}", std::io::Error::last_os_error());
    }
    // On Linux ru_maxrss is in KiB.
    Ok(u64::try_from(usage.ru_maxrss).unwrap_or(0))
}

/// Stops a tokio child politely (SIGTERM), then firmly (SIGKILL) after `grace`.
pub async fn terminate(child: &mut tokio::process::Child, grace: Duration) {
    if let Some(pid) = child.id() {
        signal(pid, libc::SIGTERM);
        if tokio::time::timeout(grace, child.wait()).await.is_ok() {
            return;
        }
        eprintln!("bench: process {pid} did not stop within {grace:?} of SIGTERM: killing it");
    }
    let _ = child.kill().await;
}

/// CPU time (user + system) a process has used so far, in µs.
pub fn cpu_us(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, tail) = stat.rsplit_once(')')?;
    // After the name: state is field 3, utime field 14, stime field 15.
    let fields: Vec<&str> = tail.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf only reads a system constant.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let ticks = if ticks > 0 { ticks as f64 } else { 100.0 };
    Some((utime + stime) as f64 / ticks * 1e6)
}

/// CPU time of several processes, by pid (for differences over an interval).
pub fn cpu_snapshot(pids: &[u32]) -> std::collections::HashMap<u32, f64> {
    pids.iter()
        .filter_map(|&pid| Some((pid, cpu_us(pid)?)))
        .collect()
}

/// CPU used between two snapshots (a process absent from `before` counts from zero).
pub fn cpu_between(
    before: &std::collections::HashMap<u32, f64>,
    after: &std::collections::HashMap<u32, f64>,
) -> f64 {
    after
        .iter()
        .map(|(pid, used)| used - before.get(pid).copied().unwrap_or(0.0))
        .sum()
}
