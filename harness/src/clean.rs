//! `secnet clean`: removes what runs left behind (a killed run, `--keep`), and
//! nothing else: processes living in the run's namespaces, the nodes' mount views
//! under /run/secnet/<run id>…, and network namespaces named `sn<6 hex>-…`.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::lab::{CommandError, run};

const RUN_ROOT: &str = "/run/secnet";

/// Whether `name` (a namespace or run directory) is secnet's, optionally of run `run_id`.
pub fn is_ours(name: &str, run_id: Option<&str>) -> bool {
    let id = name.split_once('-').map_or(name, |(id, _)| id);
    let shaped = id.len() == 8
        && id.starts_with("sn")
        && id[2..].chars().all(|c| c.is_ascii_hexdigit())
        && name.len() > id.len() + 1;
    shaped && run_id.is_none_or(|r| r == id)
}

#[derive(Debug, Default)]
pub struct Cleaned {
    pub namespaces: Vec<String>,
    pub run_dirs: Vec<String>,
    pub processes: Vec<i32>,
}

/// Deletes our leftovers; returns what was removed.
pub fn clean(run_id: Option<&str>) -> Result<Cleaned, CommandError> {
    let t = Duration::from_secs(10);
    let listing = run("ip", &["netns", "list"], t)?;
    let namespaces: Vec<String> = listing
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| is_ours(n, run_id))
        .map(str::to_string)
        .collect();
    let run_dirs: Vec<PathBuf> = std::fs::read_dir(RUN_ROOT)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| is_ours(n, run_id))
                })
                .collect()
        })
        .unwrap_or_default();
    let mnt_files: Vec<PathBuf> = run_dirs.iter().flat_map(|d| node_mount_files(d)).collect();

    // Processes inside any of these namespaces (device plugins, dnsmasq, ...).
    let mut ns_inodes: Vec<(u64, &str)> = namespaces
        .iter()
        .filter_map(|n| inode(&Path::new("/run/netns").join(n)).map(|i| (i, "net")))
        .collect();
    ns_inodes.extend(
        mnt_files
            .iter()
            .filter_map(|f| inode(f).map(|i| (i, "mnt"))),
    );
    let run_paths: Vec<String> = run_dirs.iter().map(|d| d.display().to_string()).collect();
    let mut processes = processes_in(&ns_inodes);
    for pid in processes_naming(&run_paths) {
        if !processes.contains(&pid) {
            processes.push(pid);
        }
    }
    for pid in &processes {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(*pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }

    for f in &mnt_files {
        let _ = run("umount", &[&f.display().to_string()], t);
    }
    let mut removed_dirs = Vec::new();
    for d in &run_dirs {
        let _ = run("umount", &[&d.display().to_string()], t);
        if std::fs::remove_dir_all(d).is_ok() {
            removed_dirs.push(d.display().to_string());
        }
    }
    for name in &namespaces {
        // Another cleaner (a drop guard) may have been quicker.
        if Path::new("/run/netns").join(name).exists() {
            run("ip", &["netns", "del", name], t)?;
        }
    }
    Ok(Cleaned {
        namespaces,
        run_dirs: removed_dirs,
        processes,
    })
}

fn node_mount_files(run_dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(run_dir.join("nodes"))
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.path().join("mnt"))
                .filter(|p| p.exists())
                .collect()
        })
        .unwrap_or_default()
}

fn inode(path: &Path) -> Option<u64> {
    std::fs::metadata(path).ok().map(|m| m.ino())
}

/// PIDs whose command line names one of the run's directories (dnsmasq's lease
/// file, ...): found even after their namespace files are gone.
fn processes_naming(run_paths: &[String]) -> Vec<i32> {
    if run_paths.is_empty() {
        return Vec::new();
    }
    std::fs::read_dir("/proc")
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()))
                .filter(|pid| {
                    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                    let cmdline = String::from_utf8_lossy(&cmdline);
                    run_paths.iter().any(|p| cmdline.contains(&format!("{p}/")))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// PIDs whose network or mount namespace is one of `inodes`.
fn processes_in(inodes: &[(u64, &str)]) -> Vec<i32> {
    if inodes.is_empty() {
        return Vec::new();
    }
    let me = std::process::id() as i32;
    std::fs::read_dir("/proc")
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()))
                .filter(|pid| *pid != me)
                .filter(|pid| {
                    inodes.iter().any(|(ino, kind)| {
                        inode(Path::new(&format!("/proc/{pid}/ns/{kind}"))) == Some(*ino)
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_only_run_prefixed_names() {
        assert!(is_ours("sn0a1b2c-node", None));
        assert!(is_ours("sn0a1b2c-s3", Some("sn0a1b2c")));
        assert!(!is_ours("sn0a1b2c-node", Some("sn000000")));
        for other in [
            "cni-1234",
            "snx-node",
            "sn0a1b2c",
            "sn0a1b2cd-x",
            "sn0a1bzz-x",
            "myns",
        ] {
            assert!(!is_ours(other, None), "{other}");
        }
    }
}
