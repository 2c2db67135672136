//! `secnet clean` during a run: a live run (another process holding its liveness
//! marker) is left untouched and named; once that process is gone, the same command
//! removes what it left.

use std::io::BufRead as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn secnet() -> Command {
    Command::new(secnet::bins::bundled("secnet").unwrap_or_else(|e| panic!("{e}")))
}

#[test]
fn clean_during_a_live_run_leaves_it_untouched_then_removes_it_once_dead() {
    if !secnet::prereq::require_root("secnet clean during a run") {
        return;
    }
    // A real run in a second process: the DHCP lab keeps its cluster up for a while.
    let mut child = secnet()
        .args(["conform", "--label", "dhcp", "-j", "1"])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut first = String::new();
    stderr.read_line(&mut first).unwrap();
    let run_id = first
        .split_whitespace()
        .find(|w| secnet::clean::is_ours(&format!("{w}-x"), None))
        .unwrap_or_else(|| panic!("no run id in {first:?}"))
        .to_string();
    // Drain the rest so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in stderr.lines() {});
    let started = Instant::now();
    let before = loop {
        let found = secnet::clean::leftovers(&run_id).unwrap();
        if found.namespaces.len() >= 3 {
            break found;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the run never started its cluster"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before its cluster was seen"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        secnet::clean::liveness(&run_id).is_some(),
        "the running process holds its run's marker"
    );

    let out = secnet().args(["clean", "--run", &run_id]).output().unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    let after = secnet::clean::leftovers(&run_id).unwrap();
    let still_running = child.try_wait().unwrap().is_none();

    // Then the run goes away the hard way, and clean does its job.
    child.kill().unwrap();
    child.wait().unwrap();
    let cleaned = secnet().args(["clean", "--run", &run_id]).output().unwrap();
    let left = secnet::clean::leftovers(&run_id).unwrap();

    assert!(out.status.success(), "{said}");
    assert!(
        said.contains(&format!(
            "skipped run {run_id} (still alive: pid {}",
            child.id()
        )),
        "clean does not say it skipped the live run: {said}"
    );
    assert!(
        before
            .namespaces
            .iter()
            .all(|n| after.namespaces.contains(n)),
        "clean removed namespaces of a live run: before {:?}, after {:?}",
        before.namespaces,
        after.namespaces
    );
    assert!(still_running, "the run did not survive the clean");
    assert!(
        cleaned.status.success(),
        "{}",
        String::from_utf8_lossy(&cleaned.stderr)
    );
    assert!(
        !String::from_utf8_lossy(&cleaned.stderr).contains("skipped"),
        "a killed run is dead"
    );
    assert!(left.is_empty(), "left after clean: {}", left.describe());
}

/// `secnet clean --cluster kind` during a run: the live run's kind cluster
/// (`secnet-<run>`) stays and is named, a dead run's goes. `kind` is a script on
/// PATH that lists both clusters and records what it is asked to do.
#[test]
fn clean_of_kind_clusters_leaves_a_live_runs_cluster_and_names_it() {
    use std::os::unix::fs::PermissionsExt;
    if !secnet::prereq::require_root("secnet clean --cluster kind during a run") {
        return;
    }
    // A live run: this test's process holds the marker of the id it made.
    let live = secnet::lab::new_run_id();
    let dead = "sn0dead1";
    let scratch = secnet::lab::ScratchDir::new(&format!("secnet-{live}")).unwrap();
    let log = scratch.path().join("kind.log");
    let kind = scratch.path().join("kind");
    std::fs::write(
        &kind,
        format!(
            "#!/bin/sh\necho \"$*\" >> {}\ncase \"$1\" in get) printf 'secnet-{live}\\nsecnet-{dead}\\nmine\\n' ;; esac\n",
            log.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&kind, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        scratch.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = secnet()
        .args(["clean", "--cluster", "kind"])
        .env("PATH", &path)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    let asked = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains(&format!(
            "skipped run {live} (still alive: pid {}",
            std::process::id()
        )),
        "clean does not say it skipped the live run: {said}"
    );
    assert!(
        !asked.contains(&format!("delete cluster --name secnet-{live}")),
        "clean deleted a live run's kind cluster: {asked}"
    );
    assert!(
        asked.contains(&format!("delete cluster --name secnet-{dead}")),
        "the dead run's cluster goes: {asked}"
    );
    // --force takes the live one too.
    std::fs::write(&log, "").unwrap();
    let forced = secnet()
        .args(["clean", "--cluster", "kind", "--force"])
        .env("PATH", &path)
        .output()
        .unwrap();
    let asked = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(forced.status.success());
    assert!(
        asked.contains(&format!("delete cluster --name secnet-{live}")),
        "--force deletes a live run's cluster: {asked}"
    );
}
