//! The image's install step, run as the real `install-cni` binary: what the
//! DaemonSets' init containers do, and what their idle containers run.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use secnet::lab::ScratchDir;

#[path = "plugins/bundled.rs"]
mod bundled;

const BIN: bundled::Bundled = bundled::Bundled("install-cni");

fn run(program: &Path, args: &[&Path]) -> Output {
    Command::new(program).args(args).output().expect("runs")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Every file in `dir`, sorted (temporary files included: none may be left).
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn installs_into_a_directory_whole_and_executable_replacing_by_rename() {
    let tmp = ScratchDir::new("install-cni-dir").unwrap();
    let (src, dest) = (tmp.path().join("src"), tmp.path().join("opt-cni-bin"));
    std::fs::create_dir_all(&src).unwrap();
    std::fs::create_dir_all(&dest).unwrap();
    std::fs::write(src.join("macvtap"), b"new macvtap").unwrap();
    std::fs::write(src.join("ovs"), vec![7u8; 1 << 20]).unwrap();
    // The node already has an older macvtap, which a runtime may be executing.
    std::fs::write(dest.join("macvtap"), b"old macvtap").unwrap();
    let old = std::fs::File::open(dest.join("macvtap")).unwrap();
    let old_inode = old.metadata().unwrap().ino();

    let out = run(BIN.path(), &[&src.join("macvtap"), &src.join("ovs"), &dest]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(names(&dest), ["macvtap", "ovs"], "no temporary files left");
    assert_eq!(std::fs::read(dest.join("macvtap")).unwrap(), b"new macvtap");
    assert_eq!(std::fs::read(dest.join("ovs")).unwrap(), vec![7u8; 1 << 20]);
    for name in ["macvtap", "ovs"] {
        let meta = std::fs::metadata(dest.join(name)).unwrap();
        assert_eq!(meta.permissions().mode() & 0o7777, 0o755, "{name}");
    }
    let new_inode = std::fs::metadata(dest.join("macvtap")).unwrap().ino();
    assert_ne!(
        new_inode, old_inode,
        "replaced by rename, not rewritten in place"
    );
    assert_eq!(
        std::io::read_to_string(old).unwrap(),
        "old macvtap",
        "whoever had the old binary open still reads it whole"
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("installed"),
        "says what it wrote"
    );
}

/// Upstream's DaemonSet runs `cp /macvtap-cni /host/opt/cni/bin/macvtap`; the image's
/// `/bin/cp` is this binary, so the same command line installs under a file path.
#[test]
fn installs_one_file_under_another_name_when_called_as_cp() {
    let tmp = ScratchDir::new("install-cni-cp").unwrap();
    let cp = tmp.path().join("cp");
    std::os::unix::fs::symlink(BIN, &cp).unwrap();
    let src = tmp.path().join("macvtap-cni");
    std::fs::write(&src, b"plugin").unwrap();
    let dest = tmp.path().join("bin");
    std::fs::create_dir(&dest).unwrap();

    let out = run(&cp, &[&src, &dest.join("macvtap")]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(names(&dest), ["macvtap"]);
    assert_eq!(std::fs::read(dest.join("macvtap")).unwrap(), b"plugin");
}

#[test]
fn failures_name_the_file_and_leave_the_destination_alone() {
    let tmp = ScratchDir::new("install-cni-fail").unwrap();
    let dest = tmp.path().join("bin");
    std::fs::create_dir(&dest).unwrap();
    std::fs::write(dest.join("macvtap"), b"old").unwrap();

    let missing = tmp.path().join("no-such-plugin");
    let out = run(BIN.path(), &[&missing, &dest]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("failed to open"), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&missing.display().to_string()),
        "{}",
        stderr(&out)
    );
    assert_eq!(names(&dest), ["macvtap"]);
    assert_eq!(std::fs::read(dest.join("macvtap")).unwrap(), b"old");

    // Two sources need a directory; a flag is not cp's: both are usage errors.
    let a = tmp.path().join("a");
    std::fs::write(&a, b"a").unwrap();
    let out = run(BIN.path(), &[&a, &a, &dest.join("macvtap")]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("is not a directory"),
        "{}",
        stderr(&out)
    );
    let out = run(BIN.path(), &[Path::new("-f"), &a, &dest]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("usage: install-cni"),
        "{}",
        stderr(&out)
    );
    assert_eq!(std::fs::read(dest.join("macvtap")).unwrap(), b"old");
}

#[test]
fn idle_runs_until_sigterm_and_exits_zero() {
    let mut child = Command::new(BIN)
        .arg("--idle")
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(child.try_wait().unwrap().is_none(), "still idle");
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "SIGTERM ignored");
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(status.success(), "{status:?}");
}
