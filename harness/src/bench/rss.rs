//! Peak memory: `VmHWM` of a running process (from `/proc/<pid>/status`), and
//! `ru_maxrss` of a CNI plugin invocation (reaped with `wait4`).

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::cni::Call;
use crate::lab::enter::Enter;

/// One peak-memory row.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MemRow {
    pub(crate) name: String,
    /// What was measured (e.g. `ADD+DEL, ru_maxrss`).
    pub(crate) what: String,
    pub(crate) n: usize,
    pub(crate) median_kb: u64,
    pub(crate) max_kb: u64,
}

impl MemRow {
    pub fn of(name: &str, what: &str, samples: &[u64]) -> MemRow {
        let mut s = samples.to_vec();
        s.sort_unstable();
        MemRow {
            name: name.into(),
            what: what.into(),
            n: s.len(),
            median_kb: s.get(s.len().saturating_sub(1) / 2).copied().unwrap_or(0),
            max_kb: s.last().copied().unwrap_or(0),
        }
    }
}

/// `VmHWM` (peak resident set) in kB from the text of `/proc/<pid>/status`.
pub fn parse_vm_hwm_kb(status: &str) -> Option<u64> {
    status.lines().find_map(|l| {
        let rest = l.strip_prefix("VmHWM:")?;
        let mut parts = rest.split_whitespace();
        let value = parts.next()?.parse().ok()?;
        match parts.next() {
            Some("kB") | None => Some(value),
            Some(_) => None,
        }
    })
}

/// Peak RSS of a running process in kB.
pub fn vm_hwm_kb(pid: u32) -> Option<u64> {
    parse_vm_hwm_kb(&std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?)
}

/// One plugin run as [`crate::cni::exec_in`] makes it, but reaped with `wait4` so its
/// peak RSS is known.
#[derive(Debug, Clone)]
pub struct Measured {
    pub success: bool,
    pub stdout: String,
    pub elapsed: Duration,
    pub(crate) maxrss_kb: u64,
}

pub fn run_cni(call: &Call, enter: &Enter) -> std::io::Result<Measured> {
    let mut cmd = Command::new(&call.plugin);
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("CNI_COMMAND", &call.command)
        .env("CNI_CONTAINERID", &call.container_id)
        .env("CNI_NETNS", call.netns.as_deref().unwrap_or(""))
        .env("CNI_IFNAME", &call.ifname)
        .env("CNI_ARGS", &call.args)
        .env("CNI_PATH", &call.path)
        .envs(call.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    enter.apply_std(&mut cmd)?;
    let start = Instant::now();
    let mut child = cmd.spawn()?;
    let input = serde_json::to_vec(&call.config).expect("config serializes");
    if let Some(mut stdin) = child.stdin.take() {
        match stdin.write_all(&input) {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => return Err(e),
            _ => {}
        }
    }
    let mut stdout = String::new();
    if let Some(mut out) = child.stdout.take() {
        out.read_to_string(&mut stdout)?;
    }
    let pid = child.id() as nix::libc::pid_t;
    let mut status: nix::libc::c_int = 0;
    // SAFETY: an all-zero rusage is valid; wait4 fills it for our own child.
    let mut usage: nix::libc::rusage = unsafe { std::mem::zeroed() };
    let reaped = loop {
        // SAFETY: pid is our unreaped child; status and usage point to live locals.
        let r = unsafe { nix::libc::wait4(pid, &mut status, 0, &mut usage) };
        if r >= 0 || std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            break r;
        }
    };
    let elapsed = start.elapsed();
    if reaped < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // Reaped above; dropping a std `Child` does not wait again.
    drop(child);
    Ok(Measured {
        success: nix::libc::WIFEXITED(status) && nix::libc::WEXITSTATUS(status) == 0,
        stdout,
        elapsed,
        // Linux reports ru_maxrss in kB.
        maxrss_kb: usage.ru_maxrss.max(0) as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_hwm_from_a_status_file() {
        let status = "Name:\tmacvtap-devicep\nVmPeak:\t  123456 kB\nVmHWM:\t    8424 kB\nVmRSS:\t    8000 kB\n";
        assert_eq!(parse_vm_hwm_kb(status), Some(8424));
        assert_eq!(parse_vm_hwm_kb("Name:\tx\nVmRSS:\t 1 kB\n"), None);
        assert_eq!(parse_vm_hwm_kb("VmHWM:\t 12 MB\n"), None);
    }

    #[test]
    fn mem_row_median_and_max() {
        let r = MemRow::of("x", "ADD", &[300, 100, 200, 400]);
        assert_eq!((r.n, r.median_kb, r.max_kb), (4, 200, 400));
        assert_eq!(MemRow::of("x", "ADD", &[]).max_kb, 0);
    }

    #[test]
    fn true_has_a_small_nonzero_peak_rss() {
        let m = run_cni(
            &Call::new("/bin/true", "VERSION", serde_json::json!({})),
            &Enter::default(),
        )
        .unwrap();
        assert!(m.success);
        assert!(m.maxrss_kb > 0 && m.maxrss_kb < 100_000, "{}", m.maxrss_kb);
    }
}
