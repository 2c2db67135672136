//! The main job end to end: the `secnet` binary as users and CI run it.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

/// A scratch directory for one test, removed on drop.
fn scratch(tag: &str) -> secnet::lab::ScratchDir {
    secnet::lab::ScratchDir::new(&format!("secnet-suite-{tag}")).unwrap()
}

fn secnet(args: &[&str]) -> Output {
    let bin = secnet::bins::bundled("secnet").unwrap_or_else(|e| panic!("{e}"));
    Command::new(bin).args(args).output().expect("secnet runs")
}

/// Starts `secnet <args>` and reads the run id it announces on its first line.
fn spawn_conform(
    args: &[&str],
) -> (
    std::process::Child,
    std::io::BufReader<std::process::ChildStderr>,
    String,
) {
    let bin = secnet::bins::bundled("secnet").unwrap_or_else(|e| panic!("{e}"));
    let mut child = Command::new(bin)
        .args(args)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut first = String::new();
    std::io::BufRead::read_line(&mut stderr, &mut first).unwrap();
    let run_id = first
        .split_whitespace()
        .find(|w| secnet::clean::is_ours(&format!("{w}-x"), None))
        .unwrap_or_else(|| panic!("no run id in {first:?}"))
        .to_string();
    (child, stderr, run_id)
}

/// Reads the run's report.json and checks it against the committed JSON Schema, so
/// every report the suite writes keeps the contract.
fn report(dir: &Path) -> Value {
    let text = std::fs::read_to_string(dir.join("report.json")).expect("report.json written");
    let value: Value = serde_json::from_str(&text).expect("report.json is JSON");
    let schema: Value = serde_json::from_str(secnet::report::SCHEMA).expect("schema is JSON");
    let validator = jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .expect("schema compiles");
    let errors: Vec<String> = validator
        .iter_errors(&value)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "report.json breaks its schema: {errors:#?}"
    );
    value
}

/// Parses junit.xml with a strict XML parser.
fn junit(dir: &Path) -> String {
    let xml = std::fs::read_to_string(dir.join("junit.xml")).expect("junit.xml written");
    if let Err(e) = roxmltree::Document::parse(&xml) {
        panic!("junit.xml is not well-formed XML: {e}\n{xml}");
    }
    xml
}

/// The run's scratch dirs (`$TMPDIR/secnet-<run id>-XXXXXX`) that exist.
fn scratch_dirs_of(run_id: &str) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| secnet::clean::is_scratch_dir(n, Some(run_id)))
        })
        .map(|e| e.path())
        .collect()
}

fn namespaces_of(run_id: &str) -> Vec<String> {
    let out =
        secnet::lab::run("ip", &["netns", "list"], std::time::Duration::from_secs(5)).unwrap();
    out.lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(&format!("{run_id}-")))
        .map(str::to_string)
        .collect()
}

#[test]
fn conform_passes_with_the_bundled_plugins_and_leaves_nothing() {
    if !secnet::prereq::require_root("conform with bundled plugins") {
        return;
    }
    let dir = scratch("pass");
    let out = secnet(&["conform", "--report", dir.path().to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "secnet conform failed:\n{stderr}");
    let r = report(dir.path());
    assert_eq!(r["cluster"], "netns");
    assert_eq!(r["summary"]["failed"], 0, "{r:#}");
    let scenarios = r["scenarios"].as_array().unwrap();
    assert!(scenarios.len() >= 8, "{} scenarios", scenarios.len());
    // Only whereabouts needs what no netns cluster has (a real API server).
    let (skipped, ran): (Vec<&Value>, Vec<&Value>) =
        scenarios.iter().partition(|s| s["status"] == "skipped");
    assert!(
        skipped
            .iter()
            .all(|s| s["name"].as_str().unwrap().starts_with("whereabouts/")
                && s["message"].as_str().unwrap().contains("needs Whereabouts")),
        "{r:#}"
    );
    assert!(ran.iter().all(|s| s["status"] == "passed"), "{r:#}");
    assert!(scenarios.iter().any(|s| s["backend"] == "macvlan"));
    assert!(scenarios.iter().any(|s| s["workload"] == "node"));
    assert_eq!(r["summary"]["passed"].as_u64().unwrap() as usize, ran.len());
    // The uniqueness check ran after every cluster scenario and found nothing.
    let checked: Vec<&Value> = ran.iter().filter_map(|s| s.get("uniqueness")).collect();
    assert!(checked.len() >= 40, "{} checked", checked.len());
    assert!(
        checked
            .iter()
            .all(|u| u["duplicates"] == serde_json::json!([])),
        "{r:#}"
    );
    let junit = junit(dir.path());
    assert_eq!(junit.matches("<testcase").count(), scenarios.len());
    assert!(dir.path().join("report.md").exists());
    let run_id = r["implementation"]["run_id"].as_str().unwrap();
    assert_eq!(
        namespaces_of(run_id),
        Vec::<String>::new(),
        "namespaces left behind"
    );
}

#[test]
fn a_broken_plugin_fails_the_run_keep_leaves_state_and_clean_removes_only_ours() {
    if !secnet::prereq::require_root("conform with a broken plugin") {
        return;
    }
    let bins = scratch("broken-bin");
    // Colour and binary garbage on stderr, as a careless plugin prints: the reports
    // must stay well-formed.
    script(
        bins.path(),
        "macvtap",
        &format!(
            "#!/bin/sh\nprintf '\\033[31mboom\\033[0m \\001\\002\\007\\033[1;33mwarn\\376\\377\\n' >&2\n{BROKEN}"
        ),
    );
    let dir = scratch("fail");
    let foreign = format!("secnet-suite-foreign-{}", std::process::id());
    secnet::lab::run(
        "ip",
        &["netns", "add", &foreign],
        std::time::Duration::from_secs(5),
    )
    .unwrap();

    let out = secnet(&[
        "conform",
        "--cni-bin-dir",
        bins.path().to_str().unwrap(),
        "--label",
        "mac",
        "--keep",
        "--report",
        dir.path().to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let r = report(dir.path());
    let run_id = r["implementation"]["run_id"].as_str().unwrap().to_string();
    let kept = namespaces_of(&run_id);
    let cleaned = secnet(&["clean", "--run", &run_id]);
    let foreign_survived =
        secnet::lab::run("ip", &["netns", "list"], std::time::Duration::from_secs(5))
            .unwrap()
            .contains(&foreign);
    let _ = secnet::lab::run(
        "ip",
        &["netns", "del", &foreign],
        std::time::Duration::from_secs(5),
    );

    assert_eq!(
        out.status.code(),
        Some(1),
        "a failed scenario exits 1:\n{stderr}"
    );
    assert!(stderr.contains("broken on purpose"), "{stderr}");
    assert!(
        stderr.contains("ip netns exec"),
        "--keep says how to look inside:\n{stderr}"
    );
    assert!(r["summary"]["failed"].as_u64().unwrap() > 0);
    let xml = junit(dir.path());
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let body = doc
        .descendants()
        .filter(|n| n.has_tag_name("failure"))
        .filter_map(|n| n.text())
        .find(|t| t.contains("broken on purpose"))
        .unwrap_or_else(|| panic!("no failure body names the plugin's error:\n{xml}"));
    assert!(
        body.contains("boom") && body.contains("\\x07") && body.lines().count() > 1,
        "the body has the plugin's cleaned stderr and the rest of the text, lines kept:\n{body}"
    );
    assert!(!xml.contains('\u{1b}'), "no raw escape in junit.xml");
    for file in ["report.md", "report.html", "report.json"] {
        let text = std::fs::read_to_string(dir.path().join(file)).unwrap();
        assert!(!text.contains('\u{1b}'), "{file} holds a raw escape");
    }
    assert!(
        r["scenarios"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["labels"].as_array().unwrap().iter().any(|l| l == "mac"))
    );
    assert!(
        !kept.is_empty(),
        "--keep leaves the failed scenarios' namespaces"
    );
    assert!(
        cleaned.status.success(),
        "{}",
        String::from_utf8_lossy(&cleaned.stderr)
    );
    assert_eq!(
        namespaces_of(&run_id),
        Vec::<String>::new(),
        "secnet clean removes the run's namespaces"
    );
    assert!(
        foreign_survived,
        "secnet clean must not touch namespaces it did not create"
    );
}

#[test]
fn unknown_cluster_and_empty_selection_are_clear_errors() {
    let out = secnet(&["conform", "--cluster", "minikube"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("'minikube'") && stderr.contains("netns, kind, existing"),
        "{stderr}"
    );
    // Without the kind binary the run stops before doing anything, saying what to do.
    let bin = secnet::bins::bundled("secnet").unwrap_or_else(|e| panic!("{e}"));
    let out = Command::new(bin)
        .args(["conform", "--cluster", "kind"])
        .env("PATH", "/nonexistent")
        .output()
        .expect("secnet runs");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("kind not found on PATH") && stderr.contains("--cluster existing"),
        "{stderr}"
    );
    // Nothing of the run is left behind, its scratch dir included.
    let run = stderr
        .split_whitespace()
        .find(|w| w.starts_with("sn") && w.len() == 8)
        .expect("the run id is announced");
    let scratch = scratch_dirs_of(run);
    assert!(scratch.is_empty(), "{scratch:?} left behind");
    if secnet::prereq::is_root() {
        let out = secnet(&["conform", "--label", "no-such-label"]);
        assert_eq!(out.status.code(), Some(2));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("no scenario matches") && stderr.contains("mac"),
            "{stderr}"
        );
    }
}

#[test]
fn backends_filters_and_an_unknown_backend_names_the_valid_ones() {
    // No root needed: the selection is checked before anything runs.
    let out = secnet(&["conform", "--backends", "ovs,sriov"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("\"sriov\"") && stderr.contains("macvlan, macvtap, ovs"),
        "{stderr}"
    );
    if !secnet::prereq::require_root("conform --backends ovs") {
        return;
    }
    let dir = scratch("backends");
    let out = secnet(&[
        "conform",
        "--backends",
        "ovs",
        "--skip-label",
        "vm",
        "--report",
        dir.path().to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let r = report(dir.path());
    let scenarios = r["scenarios"].as_array().unwrap();
    assert!(scenarios.len() >= 4, "{r:#}");
    assert!(
        scenarios
            .iter()
            .all(|s| s["backend"] == "ovs" && s["status"] == "passed"),
        "{r:#}"
    );
}

/// Writes an executable script `name` into `dir`.
/// The tail of a CNI that always fails with a recognisable message.
const BROKEN: &str =
    "echo '{\"cniVersion\":\"0.4.0\",\"code\":999,\"msg\":\"broken on purpose\"}'\nexit 1\n";

fn script(dir: &Path, name: &str, body: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, body).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    path
}

fn scenario<'a>(r: &'a Value, prefix: &str) -> &'a Value {
    r["scenarios"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"].as_str().unwrap().starts_with(prefix))
        .unwrap_or_else(|| panic!("no scenario {prefix}: {r:#}"))
}

#[test]
fn a_device_plugin_that_never_registers_fails_only_what_needs_its_resource() {
    if !secnet::prereq::require_root("conform with a silent device plugin") {
        return;
    }
    let bins = scratch("silent-dp");
    let dp = script(
        bins.path(),
        "macvtap-deviceplugin",
        "#!/bin/sh\necho 'silent on purpose: never registering'\nexec sleep 600\n",
    );
    let ovs = secnet::bins::bundled("ovs").unwrap();
    let dir = scratch("silent-dp-report");
    let out = secnet(&[
        "conform",
        "--plugin",
        &format!("macvtap-deviceplugin={}", dp.display()),
        "--plugin",
        &format!("ovs={}", ovs.display()),
        "--label",
        "ipam",
        "--label",
        "deviceplugin",
        "--label",
        "trunk",
        "--skip-label",
        "vm",
        "--skip-label",
        "fault",
        "--skip-label",
        "bad-input",
        "--report",
        dir.path().to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let r = report(dir.path());
    let capacity = scenario(&r, "seed/device plugin DaemonSet");
    assert_eq!(capacity["status"], "failed", "{r:#}");
    assert!(
        capacity["message"]
            .as_str()
            .unwrap()
            .contains("silent on purpose"),
        "the failure carries the plugin's log: {r:#}"
    );
    assert_eq!(
        scenario(&r, "seed/macvlan-test")["status"],
        "passed",
        "{r:#}"
    );
    assert_eq!(scenario(&r, "ovs/trunk")["status"], "passed", "{r:#}");
    let plugins = &r["implementation"]["plugins"];
    assert_eq!(plugins["macvtap-deviceplugin"]["from"], "--plugin", "{r:#}");
    assert_eq!(plugins["ovs"]["from"], "--plugin", "{r:#}");
    assert_eq!(plugins["macvtap"]["from"], "bundled", "{r:#}");
    let run_id = r["implementation"]["run_id"].as_str().unwrap();
    assert_eq!(namespaces_of(run_id), Vec::<String>::new());
}

#[test]
fn a_cni_missing_from_the_bin_dir_fails_only_its_scenarios() {
    if !secnet::prereq::require_root("conform with a partial --cni-bin-dir") {
        return;
    }
    let bins = scratch("only-macvtap");
    std::os::unix::fs::symlink(
        secnet::bins::bundled("macvtap").unwrap(),
        bins.path().join("macvtap"),
    )
    .unwrap();
    let dir = scratch("only-macvtap-report");
    let out = secnet(&[
        "conform",
        "--cni-bin-dir",
        bins.path().to_str().unwrap(),
        "--label",
        "trunk",
        "--label",
        "network-status",
        "--skip-label",
        "vm",
        "--skip-label",
        "bad-input",
        "--report",
        dir.path().to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let r = report(dir.path());
    let trunk = scenario(&r, "ovs/trunk");
    assert_eq!(trunk["status"], "failed", "{r:#}");
    let message = trunk["message"].as_str().unwrap();
    assert!(
        message.contains("\"ovs\" not found") && message.contains(bins.path().to_str().unwrap()),
        "{message}"
    );
    assert_eq!(
        scenario(&r, "seed/macvtap-pod:")["status"],
        "passed",
        "{r:#}"
    );
    assert!(
        r["implementation"]["plugins"]["ovs"]["missing"]
            .as_str()
            .unwrap()
            .contains(bins.path().to_str().unwrap()),
        "{r:#}"
    );
}

#[test]
fn bad_plugin_flags_exit_2_naming_the_flag() {
    let out = secnet(&["conform", "--plugin", "sriov=/bin/true"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("macvtap, ovs, macvtap-deviceplugin"),
        "{stderr}"
    );
    let out = secnet(&["conform", "--plugin", "ovs=/nonexistent/ovs"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--plugin ovs=/nonexistent/ovs"), "{stderr}");
}

fn compare_json(dir: &Path) -> Value {
    let text = std::fs::read_to_string(dir.join("compare.json")).expect("compare.json written");
    serde_json::from_str(&text).expect("compare.json is JSON")
}

#[test]
fn compare_bundled_against_itself_finds_no_regression() {
    if !secnet::prereq::require_root("secnet compare") {
        return;
    }
    let dir = scratch("compare-same");
    let out = secnet(&[
        "compare",
        "--backends",
        "macvtap",
        "--label",
        "network-status",
        "--report",
        dir.path().to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let c = compare_json(dir.path());
    assert_eq!(c["regressions"], serde_json::json!([]), "{c:#}");
    assert_eq!(c["fixed"], serde_json::json!([]), "{c:#}");
    let rows = c["scenarios"].as_array().unwrap();
    // The two seed pods and the three degradation scenarios carry both labels.
    assert_eq!(rows.len(), 5, "{c:#}");
    for r in rows {
        assert_eq!(r["a"]["status"], "passed", "{c:#}");
        assert_eq!(r["b"]["status"], "passed", "{c:#}");
        assert!(r["b"]["duration_s"].as_f64().unwrap() > 0.0);
    }
    assert_eq!(c["b"]["plugins"]["macvtap"]["from"], "bundled");
    // Interleaved: A then B for each scenario.
    let order: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("] PASS") || l.contains("] FAIL"))
        .map(|l| if l.contains(" A] ") { "A" } else { "B" })
        .collect();
    assert_eq!(order, ["A", "B"].repeat(5), "{stderr}");
    assert!(dir.path().join("compare.md").exists());
    assert!(dir.path().join("compare.html").exists());
    let run_id = c["run_id"].as_str().unwrap();
    assert_eq!(namespaces_of(run_id), Vec::<String>::new());
}

#[test]
fn compare_shows_a_candidate_that_ignores_the_requested_mac_as_a_regression() {
    if !secnet::prereq::require_root("secnet compare") {
        return;
    }
    // The candidate: the bundled macvtap CNI, but the requested MAC never reaches it.
    let bins = scratch("compare-broken");
    let bundled = secnet::bins::bundled("macvtap").unwrap();
    let candidate = script(
        bins.path(),
        "macvtap",
        &format!(
            "#!/bin/sh\nCNI_ARGS=$(printf '%s' \"$CNI_ARGS\" | tr ';' '\\n' | grep -v '^MAC=' | paste -sd ';' -)\nexport CNI_ARGS\nexec {} \"$@\"\n",
            bundled.display()
        ),
    );
    let dir = scratch("compare-broken-report");
    let out = secnet(&[
        "compare",
        "--b-plugin",
        &format!("macvtap={}", candidate.display()),
        "--backends",
        "macvtap",
        "--label",
        "network-status",
        "--report",
        dir.path().to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let c = compare_json(dir.path());
    let regressions = c["regressions"].as_array().unwrap();
    assert_eq!(regressions.len(), 1, "{c:#}");
    assert!(
        regressions[0]
            .as_str()
            .unwrap()
            .starts_with("seed/macvtap-pod-with-mac"),
        "{c:#}"
    );
    let row = c["scenarios"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == regressions[0])
        .unwrap();
    assert_eq!(row["a"]["status"], "passed");
    assert_eq!(row["b"]["status"], "failed");
    assert!(
        row["b"]["message"].as_str().unwrap().contains("MAC"),
        "{c:#}"
    );
    assert_eq!(c["b"]["plugins"]["macvtap"]["from"], "--plugin");
    let md = std::fs::read_to_string(dir.path().join("compare.md")).unwrap();
    let first = md
        .lines()
        .find(|l| l.starts_with("| seed"))
        .unwrap_or_default();
    assert!(first.contains("REGRESSION"), "regressions first:\n{md}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("1 regression(s)"), "{stdout}");
}

#[test]
fn versions_a_plugin_does_not_claim_are_skipped_saying_so_and_extensions_say_so_on_failure() {
    if !secnet::prereq::require_root("conform with a CNI 0.4.0-only plugin") {
        return;
    }
    // The bundled macvtap, but claiming only 0.1.0-0.4.0 (as kubevirt/macvtap-cni does)
    // and without standalone mode (no deviceID: refused as upstream refuses it).
    let bins = scratch("old-versions");
    let bundled = secnet::bins::bundled("macvtap").unwrap();
    let plugin = script(
        bins.path(),
        "macvtap",
        &format!(
            "#!/bin/sh\nif [ \"$CNI_COMMAND\" = VERSION ]; then\n  echo '{{\"cniVersion\":\"0.4.0\",\"supportedVersions\":[\"0.1.0\",\"0.2.0\",\"0.3.0\",\"0.3.1\",\"0.4.0\"]}}'; exit 0\nfi\nconf=$(cat)\ncase \"$conf\" in *deviceID*) ;; *) [ \"$CNI_COMMAND\" = ADD ] && {{ echo '{{\"code\":999,\"msg\":\"deviceID is required\"}}'; exit 1; }};; esac\nprintf '%s' \"$conf\" | exec {} \"$@\"\n",
            bundled.display()
        ),
    );
    let dir = scratch("old-versions-report");
    let out = secnet(&[
        "conform",
        "--plugin",
        &format!("macvtap={}", plugin.display()),
        "--label",
        "spec",
        "--label",
        "extension",
        "--skip-label",
        "vm",
        "--report",
        dir.path().to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let r = report(dir.path());
    for v in ["1.0.0", "1.1.0"] {
        let s = scenario(&r, &format!("macvtap-cni/[{v}]"));
        assert_eq!(s["status"], "skipped", "{r:#}");
        let m = s["message"].as_str().unwrap();
        assert!(
            m.contains(&format!("does not claim CNI {v}")) && m.contains("0.4.0"),
            "{m}"
        );
    }
    assert_eq!(
        scenario(&r, "macvtap-cni/[0.4.0]")["status"],
        "passed",
        "{r:#}"
    );
    let standalone = scenario(&r, "macvtap-cni/standalone");
    assert_eq!(standalone["status"], "failed", "{r:#}");
    let m = standalone["message"].as_str().unwrap();
    assert!(
        m.contains("deviceID is required")
            && m.contains("reference implementation: standalone mode"),
        "{m}"
    );
    assert_eq!(
        r["implementation"]["plugins"]["macvtap"]["cni_versions"],
        serde_json::json!(["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0"])
    );
}

#[test]
fn kind_dry_run_prints_the_whole_plan_without_docker_or_root() {
    let out = secnet(&[
        "conform",
        "--cluster",
        "kind",
        "--dry-run",
        "--label",
        "capacity",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plan = String::from_utf8_lossy(&out.stdout);
    let run = plan
        .split_whitespace()
        .find(|w| w.starts_with("sn") && w.len() == 8)
        .expect("the plan names its run id");
    for expected in [
        format!("$ kind create cluster --name secnet-{run} --config"),
        format!(
            "$ docker exec secnet-{run}-worker ip link add ens33 link eth0 type macvlan mode bridge"
        ),
        format!("$ kind load docker-image localhost/secnet-plugins:dev --name secnet-{run}"),
        "kind: DaemonSet".into(),
        format!("secnet.run: {run}"),
        "run   seed/capacity accounting".into(),
        "kind: NetworkAttachmentDefinition".into(),
        format!("$ kind delete cluster --name secnet-{run}"),
    ] {
        assert!(plan.contains(&expected), "missing {expected:?} in:\n{plan}");
    }
    // --keep: the plan says the cluster stays.
    let out = secnet(&["conform", "--cluster", "kind", "--dry-run", "--keep"]);
    let plan = String::from_utf8_lossy(&out.stdout);
    assert!(
        plan.contains("the kind cluster stays") && !plan.contains("$ kind delete"),
        "{plan}"
    );
}

#[test]
fn kind_runs_every_scenario_whose_capabilities_it_offers() {
    let out = secnet(&["conform", "--cluster", "kind", "--list", "--output", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Value = serde_json::from_slice(&out.stdout).expect("--output json is JSON");
    let rows = rows.as_array().unwrap();
    let runnable: Vec<&str> = rows
        .iter()
        .filter(|r| r["runnable"] == true)
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    // Eight were portable when scenarios named their provider; with node probe pods,
    // Open vSwitch and KubeVirt on kind (its default components), the OVS and VM
    // scenarios and the node checks run there too.
    assert!(runnable.len() >= 20, "{runnable:?}");
    for group in [
        "ovs/",
        "vm/",
        "seed/",
        "security/macvtap: a deviceID of another pod",
    ] {
        assert!(
            runnable.iter().any(|n| n.starts_with(group)),
            "{group} runs on kind: {runnable:?}"
        );
    }
    // What only secnet's own nodes give stays skipped, naming the need (and
    // whereabouts, which kind deploys only with `--components ...,whereabouts`).
    // KubeVirt migrates and hot-plugs on kind, but the migration and hot-plug
    // scenarios stream from the LAN this machine sees (LanWatch).
    let local_only = [
        "Whereabouts",
        "PluginExec",
        "NodeFaults",
        "MultusFaults",
        "DevicePluginConfig",
        "Dhcp",
        "LanWatch",
    ];
    for r in rows {
        let needs: Vec<&str> = r["needs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_str().unwrap())
            .collect();
        let local = needs.iter().any(|n| local_only.contains(n));
        assert_eq!(r["runnable"] == true, !local, "{}: {needs:?}", r["name"]);
    }
    // The plan names the capability a skipped scenario lacks.
    let out = secnet(&[
        "conform",
        "--cluster",
        "kind",
        "--components",
        "multus,macvtap",
        "--dry-run",
        "--label",
        "ovs",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plan = String::from_utf8_lossy(&out.stdout);
    assert!(
        plan.contains("skip  ovs/VLAN 100")
            && plan.contains("needs Ovs: Open vSwitch on the nodes"),
        "{plan}"
    );
    let table = secnet(&["conform", "--cluster", "kind", "--list"]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains("runnable on the kind cluster") && text.contains("NEEDS"),
        "{text}"
    );
}

#[test]
fn help_has_examples() {
    let out = secnet(&["conform", "--help"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        text.contains("Examples:") && text.contains("--cni-bin-dir"),
        "{text}"
    );
}

#[test]
fn ctrl_c_stops_the_run_and_removes_everything_it_made() {
    if !secnet::prereq::require_root("conform interrupted by Ctrl-C") {
        return;
    }
    let (mut child, mut stderr_reader, run_id) = spawn_conform(&["conform", "--label", "dhcp"]);
    let fabric = std::path::PathBuf::from(format!("/run/netns/{run_id}-s1-fabric"));
    let started = std::time::Instant::now();
    while !fabric.exists() {
        assert!(
            started.elapsed().as_secs() < 20,
            "the run never created its cluster"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut stderr_reader, &mut stderr).unwrap();
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("interrupted by Ctrl-C"), "{stderr}");
    assert_eq!(
        namespaces_of(&run_id),
        Vec::<String>::new(),
        "namespaces left after Ctrl-C"
    );
    let run_dirs: Vec<_> = std::fs::read_dir("/run/secnet")
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with(&run_id))
                .collect()
        })
        .unwrap_or_default();
    assert!(
        run_dirs.is_empty(),
        "run dirs left after Ctrl-C: {run_dirs:?}"
    );
    let ps = std::process::Command::new("ps")
        .args(["-eo", "args"])
        .output()
        .unwrap();
    let leftover: Vec<String> = String::from_utf8_lossy(&ps.stdout)
        .lines()
        .filter(|l| l.contains(&run_id))
        .map(str::to_string)
        .collect();
    assert!(
        leftover.is_empty(),
        "processes left after Ctrl-C: {leftover:?}"
    );
}

#[test]
fn the_leak_check_finds_and_sweeps_what_a_scenario_left() {
    if !secnet::prereq::require_root("leak check") {
        return;
    }
    let run_id = secnet::lab::new_run_id();
    let prefix = format!("{run_id}-s9");
    let leaked = format!("{prefix}-node1");
    let unrelated = format!("{run_id}-s10-node1");
    for ns in [&leaked, &unrelated] {
        secnet::lab::run(
            "ip",
            &["netns", "add", ns],
            std::time::Duration::from_secs(5),
        )
        .unwrap();
    }
    let found = secnet::clean::leftovers(&prefix).unwrap();
    let described = found.describe();
    let swept = secnet::clean::clean_found(found).unwrap();
    let unrelated_left = namespaces_of(&run_id);
    let _ = secnet::clean::clean(Some(&run_id));
    assert!(described.contains(&leaked), "{described}");
    assert!(
        !described.contains(&unrelated),
        "s10 is not s9's: {described}"
    );
    assert_eq!(swept.namespaces, vec![leaked]);
    assert_eq!(unrelated_left, vec![unrelated]);
}

#[test]
fn after_the_harness_is_killed_clean_removes_its_run_and_nothing_else() {
    if !secnet::prereq::require_root("harness killed mid-run") {
        return;
    }
    let foreign = format!("secnet-suite-keep-{}", std::process::id());
    secnet::lab::run(
        "ip",
        &["netns", "add", &foreign],
        std::time::Duration::from_secs(5),
    )
    .unwrap();
    let bin = secnet::bins::bundled("secnet").unwrap_or_else(|e| panic!("{e}"));
    let (mut child, _stderr, run_id) = spawn_conform(&["conform", "--label", "dhcp"]);
    // Kill it once its cluster is up and its device plugins run.
    let started = std::time::Instant::now();
    while secnet::clean::leftovers(&format!("{run_id}-s1"))
        .map(|f| f.processes.len())
        .unwrap_or(0)
        < 3
    {
        assert!(
            started.elapsed().as_secs() < 20,
            "the run never started its cluster"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let before = secnet::clean::leftovers(&run_id).unwrap();
    let scratch_was_there = !scratch_dirs_of(&run_id).is_empty();
    let cleaned = Command::new(&bin)
        .args(["clean", "--run", &run_id])
        .output()
        .unwrap();
    let after = secnet::clean::leftovers(&run_id).unwrap();
    let foreign_there = std::path::Path::new("/run/netns").join(&foreign).exists();
    let _ = secnet::lab::run(
        "ip",
        &["netns", "del", &foreign],
        std::time::Duration::from_secs(5),
    );
    assert!(
        !before.is_empty(),
        "a killed run leaves its cluster behind (else this test proves nothing)"
    );
    assert!(
        cleaned.status.success(),
        "{}",
        String::from_utf8_lossy(&cleaned.stderr)
    );
    assert!(
        after.is_empty(),
        "left after secnet clean: {}",
        after.describe()
    );
    assert!(scratch_was_there, "a killed run leaves its scratch dir");
    let scratch = scratch_dirs_of(&run_id);
    assert!(
        scratch.is_empty(),
        "the run's scratch dir {scratch:?} is left"
    );
    assert!(
        foreign_there,
        "secnet clean removed a namespace it did not create"
    );
}

#[test]
fn doctor_checks_the_kernel_for_real_and_passes_on_a_prepared_machine() {
    if !secnet::prereq::require_root("secnet doctor") {
        return;
    }
    let out = secnet(&["doctor"]);
    let text = String::from_utf8_lossy(&out.stdout);
    for line in [
        "[ok  ] kernel: macvtap links",
        "[ok  ] kernel: macvlan links",
        "[ok  ] network namespaces",
        "[ok  ] reference CNI plugins",
    ] {
        assert!(text.contains(line), "{line:?} missing:\n{text}");
    }
    assert!(
        out.status.success(),
        "a required check failed on the CI machine:\n{text}"
    );
    let leftover =
        secnet::lab::run("ip", &["netns", "list"], std::time::Duration::from_secs(5)).unwrap();
    assert!(
        !leftover.contains("-doctor"),
        "doctor left its test namespace: {leftover}"
    );
}

#[test]
fn report_html_shows_topology_and_reachability_in_chromium() {
    if !secnet::prereq::require_root("report.html in chromium")
        || !secnet::prereq::require_program("report.html in chromium", "chromium", "chromium")
    {
        return;
    }
    let dir = scratch("html");
    let out = secnet(&[
        "conform",
        "--label",
        "reachability",
        "--backends",
        "macvtap",
        "--report",
        dir.path().to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Re-rendering from report.json gives the same page.
    let first = std::fs::read_to_string(dir.path().join("report.html")).unwrap();
    let again = secnet(&["report", dir.path().to_str().unwrap()]);
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("report.html")).unwrap(),
        first
    );
    let profile = scratch("chromium");
    let dom = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            &format!("--user-data-dir={}", profile.path().display()),
            "--dump-dom",
            &format!("file://{}", dir.path().join("report.html").display()),
        ])
        .output()
        .expect("chromium runs");
    let dom = String::from_utf8_lossy(&dom.stdout);
    assert!(
        dom.contains("<svg class=\"topology\""),
        "no topology picture in the rendered page"
    );
    assert!(
        dom.contains("node node1") && dom.contains("node node2") && dom.contains("pod mvt-a"),
        "the picture lacks nodes or pods"
    );
    assert!(dom.contains("class=\"matrix\""), "no reachability matrix");
    assert!(
        dom.contains("expected isolation") && dom.contains("reached"),
        "the matrix lacks probes"
    );
    assert!(
        !dom.contains("class=\"bad\""),
        "a probe contradicts its expectation"
    );
}

#[test]
fn selection_flags_select_what_they_say_without_root() {
    let list = |args: &[&str]| {
        let mut all = vec!["conform", "--list", "--output", "json"];
        all.extend_from_slice(args);
        let out = secnet(&all);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let rows: Value = serde_json::from_slice(&out.stdout).expect("--output json is JSON");
        rows.as_array().unwrap().clone()
    };
    let seed_not_vm = list(&["--label-filter", "seed && !vm"]);
    assert!(!seed_not_vm.is_empty());
    assert!(seed_not_vm.iter().all(
        |r| r["group"] == "seed" && !r["labels"].as_array().unwrap().iter().any(|l| l == "vm")
    ));
    let vlan = list(&["--focus", "VLAN"]);
    assert!(!vlan.is_empty());
    assert!(
        vlan.iter()
            .all(|r| r["name"].as_str().unwrap().contains("VLAN"))
    );
    // A group is a label too.
    assert_eq!(list(&["--label", "seed"]).len(), seed_not_vm.len());
    let all = list(&[]);
    let not_fault = list(&["--label-filter", "!fault"]);
    assert!(not_fault.len() < all.len());

    let table = secnet(&["conform", "--list", "--label-filter", "ovs || macvlan"]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.starts_with("ID ") && text.contains("  NAME  ") && text.contains("scenario(s)"),
        "{text}"
    );
    // A scenario's short id from --list selects it, and only it.
    let first = &vlan[0];
    let by_id = list(&["--focus", first["id"].as_str().unwrap()]);
    assert_eq!(by_id.len(), 1, "{by_id:?}");
    assert_eq!(by_id[0]["name"], first["name"]);

    let bad = secnet(&["conform", "--list", "--label-filter", "seed & vm"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("write && or ||"));

    let plan = secnet(&["conform", "--dry-run", "--focus", "VLAN"]);
    assert!(
        plan.status.success(),
        "{}",
        String::from_utf8_lossy(&plan.stderr)
    );
    let plan = String::from_utf8_lossy(&plan.stdout);
    assert!(
        plan.contains("nothing was run") && plan.contains("ovs/VLAN 100"),
        "{plan}"
    );
    assert!(!plan.contains("seed/"), "{plan}");
}

#[test]
fn fail_fast_skips_the_rest_after_the_first_failure() {
    if !secnet::prereq::require_root("conform --fail-fast") {
        return;
    }
    let bins = scratch("failfast-bin");
    let plugin = script(bins.path(), "macvtap", &format!("#!/bin/sh\n{BROKEN}"));
    let dir = scratch("failfast");
    let out = secnet(&[
        "conform",
        "--plugin",
        &format!("macvtap={}", plugin.display()),
        "--focus",
        "^macvtap-cni/",
        "--fail-fast",
        "-j",
        "2",
        "-q",
        "--report",
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let r = report(dir.path());
    let statuses: Vec<&str> = r["scenarios"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["status"].as_str().unwrap())
        .collect();
    let first_failure = statuses
        .iter()
        .position(|s| *s == "failed")
        .expect("one fails");
    assert!(statuses.len() > first_failure + 2, "{statuses:?}");
    // With two at a time, the one already running when the first failed finishes;
    // nothing starts after it.
    assert!(
        statuses[first_failure + 2..]
            .iter()
            .all(|s| *s == "skipped"),
        "after the first failure nothing new starts: {statuses:?}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("] PASS "),
        "-q prints no passing lines:\n{stderr}"
    );
}

#[test]
fn a_plugin_that_fails_silently_is_named_with_its_exit_status_and_no_device_plugin_logs() {
    if !secnet::prereq::require_root("conform --plugin macvtap=/bin/false") {
        return;
    }
    let dir = scratch("bin-false");
    let out = secnet(&[
        "conform",
        "--plugin",
        "macvtap=/bin/false",
        "--focus",
        "^seed/macvtap-pod: ",
        "--report",
        dir.path().to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("warning: macvtap=/bin/false: /bin/false VERSION"),
        "a plugin that does not answer VERSION is a warning at start:\n{stderr}"
    );
    let r = report(dir.path());
    let s = scenario(&r, "seed/macvtap-pod: ");
    assert_eq!(s["status"], "failed", "{r:#}");
    let m = s["message"].as_str().unwrap();
    // The run links the binary into its bin dir by its resolved path (/bin/false
    // is /usr/bin/false on merged-/usr).
    let false_bin = std::fs::canonicalize("/bin/false").unwrap();
    let named = format!("CNI plugin {} (linked as ", false_bin.display());
    for needle in [
        named.as_str(),
        ") ADD failed (exit status 1)",
        "no CNI error object on stdout",
        "config given: {",
        "\"type\":\"macvtap\"",
        "stdout: (empty)",
        "stderr: (empty)",
    ] {
        assert!(m.contains(needle), "{needle:?} missing from:\n{m}");
    }
    assert!(
        !m.contains("device plugin log"),
        "a CNI failure carries no device plugin logs:\n{m}"
    );
    let xml = junit(dir.path());
    assert!(xml.contains("exit status 1"), "{xml}");
    // The recap names the failure and the command that reruns it alone.
    let id = s["id"].as_str().unwrap();
    assert!(
        stderr.contains(&format!(
            "rerun: secnet conform --plugin macvtap=/bin/false --focus {id}"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("[ 1/1] FAIL"),
        "[i/N] counts finished:\n{stderr}"
    );
}

#[test]
fn a_failed_set_up_writes_every_report_with_the_failure_as_an_error() {
    let dir = scratch("setup-failed");
    let out = secnet(&[
        "conform",
        "--fixtures",
        "/nonexistent/fixtures",
        "--label",
        "mac",
        "--report",
        dir.path().to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let r = report(dir.path());
    let setup = scenario(&r, "setup/preflight");
    assert_eq!(setup["status"], "error", "{r:#}");
    assert!(
        setup["message"]
            .as_str()
            .unwrap()
            .contains("/nonexistent/fixtures"),
        "{r:#}"
    );
    assert_eq!(r["summary"]["errors"], 1, "{r:#}");
    assert!(r["summary"]["skipped"].as_u64().unwrap() > 0, "{r:#}");
    let xml = junit(dir.path());
    assert!(xml.contains("<error"), "{xml}");
    for file in ["report.md", "report.html"] {
        let text = std::fs::read_to_string(dir.path().join(file)).unwrap();
        assert!(text.contains("/nonexistent/fixtures"), "{file}: {text}");
    }
}

#[test]
fn a_pass_after_a_retry_is_flaky_and_a_run_where_nothing_ran_exits_4() {
    if !secnet::prereq::require_root("conform --retries") {
        return;
    }
    // The bundled macvtap, but its first ADD fails: flaky with --retries 1.
    let bins = scratch("flaky-bin");
    let bundled = secnet::bins::bundled("macvtap").unwrap();
    let marker = bins.path().join("failed-once");
    let plugin = script(
        bins.path(),
        "macvtap",
        &format!(
            "#!/bin/sh\nif [ \"$CNI_COMMAND\" = ADD ] && [ ! -e {m} ]; then\n  touch {m}\n  echo '{{\"cniVersion\":\"1.0.0\",\"code\":11,\"msg\":\"first ADD fails on purpose\"}}'; exit 1\nfi\nexec {b} \"$@\"\n",
            m = marker.display(),
            b = bundled.display()
        ),
    );
    let dir = scratch("flaky");
    let out = secnet(&[
        "conform",
        "--plugin",
        &format!("macvtap={}", plugin.display()),
        "--focus",
        "^seed/macvtap-pod: ",
        "--retries",
        "1",
        "--report",
        dir.path().to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "flaky passes:\n{stderr}");
    let r = report(dir.path());
    let s = scenario(&r, "seed/macvtap-pod: ");
    assert_eq!(s["status"], "flaky", "{r:#}");
    assert_eq!(s["attempts"]["runs"], 2, "{r:#}");
    assert!(
        s["attempts"]["earlier"][0]["message"]
            .as_str()
            .unwrap()
            .contains("first ADD fails on purpose"),
        "{r:#}"
    );
    assert_eq!(r["summary"]["flaky"], 1, "{r:#}");
    assert!(junit(dir.path()).contains("<flakyFailure"));
    assert!(stderr.contains("FLAKY"), "{stderr}");

    // Only a scenario of a CNI version the plugin does not claim: nothing runs.
    let old = script(
        bins.path(),
        "old",
        "#!/bin/sh\necho '{\"cniVersion\":\"0.4.0\",\"supportedVersions\":[\"0.3.1\",\"0.4.0\"]}'\n",
    );
    let out = secnet(&[
        "conform",
        "--plugin",
        &format!("macvtap={}", old.display()),
        "--focus",
        "^macvtap-cni/\\[1\\.1\\.0\\]",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "nothing ran:\n{stderr}");
    assert!(
        stderr.contains("0 passed, 0 failed, 0 error, 0 flaky, 1 skipped"),
        "{stderr}"
    );
}

/// Runs the macvtap live migration with `macvtap` as the CNI under test; its report.
fn migrate_with_cni(tag: &str, cni: &Path) -> (Output, Value) {
    let dir = scratch(tag);
    let out = secnet(&[
        "conform",
        "--plugin",
        &format!("macvtap={}", cni.display()),
        "--focus",
        "migration/macvtap: MAC and address",
        "--report",
        dir.path().to_str().unwrap(),
    ]);
    let r = report(dir.path());
    (out, r)
}

/// A macvtap CNI that brings the pod's macvtap up with IPv6 on (DAD and MLD from the
/// guest's MAC): a migration target then speaks for the guest before the handover.
#[test]
fn a_cni_that_brings_the_target_interface_up_speaking_fails_the_migration() {
    if !secnet::prereq::require_root("migration with an early-announcing CNI") {
        return;
    }
    let bins = scratch("early-announce");
    let real = secnet::bins::bundled("macvtap").unwrap();
    let cni = script(
        bins.path(),
        "macvtap",
        &format!(
            "#!/bin/sh\nout=$({real}); rc=$?\nif [ \"$CNI_COMMAND\" = ADD ] && [ $rc = 0 ]; then\n  nsenter --net=\"$CNI_NETNS\" sh -c \"ip link set $CNI_IFNAME addrgenmode eui64 && ip link set $CNI_IFNAME down && ip link set $CNI_IFNAME up\" >&2\nfi\nprintf '%s' \"$out\"\nexit $rc\n",
            real = real.display()
        ),
    );
    let (out, r) = migrate_with_cni("early-announce-report", &cni);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let s = scenario(&r, "migration/macvtap: MAC");
    assert_eq!(s["status"], "failed", "{r:#}");
    assert!(
        s["message"]
            .as_str()
            .unwrap()
            .contains("took over the VM's MAC"),
        "{r:#}"
    );
    let run_id = r["implementation"]["run_id"].as_str().unwrap();
    assert_eq!(namespaces_of(run_id), Vec::<String>::new());
}

/// A macvtap CNI whose DEL hands the macvtap back to the node instead of freeing it:
/// the source node keeps a link after the migration.
#[test]
fn a_cni_that_never_frees_the_source_macvtap_fails_the_migration() {
    if !secnet::prereq::require_root("migration with a CNI that keeps the source's macvtap") {
        return;
    }
    let bins = scratch("keeps-macvtap");
    let real = secnet::bins::bundled("macvtap").unwrap();
    let cni = script(
        bins.path(),
        "macvtap",
        &format!(
            "#!/bin/sh\nif [ \"$CNI_COMMAND\" = DEL ] && [ -e \"$CNI_NETNS\" ]; then\n  nsenter --net=\"$CNI_NETNS\" ip link set \"$CNI_IFNAME\" netns $$ 2>/dev/null\nfi\nexec {real}\n",
            real = real.display()
        ),
    );
    let (out, r) = migrate_with_cni("keeps-macvtap-report", &cni);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let s = scenario(&r, "migration/macvtap: MAC");
    assert_eq!(s["status"], "failed", "{r:#}");
    assert!(
        s["message"].as_str().unwrap().contains("still has link"),
        "{r:#}"
    );
}

/// A macvtap CNI whose DEL of a hot-plugged interface (`net2`) hands the macvtap
/// back to the node instead of deleting it: the unplug leaves the host link, and
/// the hot-plug scenario must say so.
#[test]
fn an_unplug_that_leaves_the_host_link_fails_the_hotplug() {
    if !secnet::prereq::require_root("hot-unplug with a CNI that keeps the macvtap") {
        return;
    }
    let bins = scratch("unplug-keeps-link");
    let real = secnet::bins::bundled("macvtap").unwrap();
    let cni = script(
        bins.path(),
        "macvtap",
        &format!(
            "#!/bin/sh\nif [ \"$CNI_COMMAND\" = DEL ] && [ \"$CNI_IFNAME\" = net2 ] && [ -e \"$CNI_NETNS\" ]; then\n  nsenter --net=\"$CNI_NETNS\" ip link set \"$CNI_IFNAME\" netns $$ 2>/dev/null\nfi\nexec {real}\n",
            real = real.display()
        ),
    );
    let dir = scratch("unplug-keeps-link-report");
    let out = secnet(&[
        "conform",
        "--plugin",
        &format!("macvtap={}", cni.display()),
        "--focus",
        "hotplug/macvtap",
        "--report",
        dir.path().to_str().unwrap(),
    ]);
    let r = report(dir.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let s = scenario(&r, "hotplug/macvtap");
    assert_eq!(s["status"], "failed", "{r:#}");
    assert!(
        s["message"]
            .as_str()
            .unwrap()
            .contains("the unplug left the host link"),
        "{r:#}"
    );
    let run_id = r["implementation"]["run_id"].as_str().unwrap();
    assert_eq!(namespaces_of(run_id), Vec::<String>::new());
}

/// The bundled device plugin with its deliberate `never-free` defect (every device
/// once allocated stays Unhealthy): the migration's source device and the
/// unplugged NIC's device never come back, and both scenarios say so.
#[test]
fn a_device_plugin_that_never_frees_fails_the_migration_and_the_unplug() {
    if !secnet::prereq::require_root("migration and hot-plug with a never-freeing device plugin") {
        return;
    }
    let real = secnet::bins::bundled("macvtap-deviceplugin").unwrap();
    let dir = scratch("never-free-report");
    let out = secnet(&[
        "conform",
        "--device-plugin",
        &format!(
            "env {}=never-free {}",
            macvtap_deviceplugin::service::DEFECT_ENV,
            real.display()
        ),
        "--focus",
        "migration/macvtap: MAC|hotplug/macvtap",
        "--report",
        dir.path().to_str().unwrap(),
    ]);
    let r = report(dir.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    for (name, says) in [
        (
            "migration/macvtap: MAC",
            "the device plugin did not get the source's device back",
        ),
        ("hotplug/macvtap", "the unplug did not free the device"),
    ] {
        let s = scenario(&r, name);
        assert_eq!(s["status"], "failed", "{r:#}");
        assert!(s["message"].as_str().unwrap().contains(says), "{r:#}");
    }
    let run_id = r["implementation"]["run_id"].as_str().unwrap();
    assert_eq!(namespaces_of(run_id), Vec::<String>::new());
}

/// A macvtap CNI that drops the attachment silently: ADD succeeds and returns the
/// real plugin's result, but the pod's interface is gone. Every degradation
/// scenario must fail, naming the pod and the network it runs without.
#[test]
fn a_cni_that_drops_its_attachment_silently_fails_every_degradation_scenario() {
    if !secnet::prereq::require_root("degradation with a CNI that drops its interface") {
        return;
    }
    let bins = scratch("drops-attachment");
    let real = secnet::bins::bundled("macvtap").unwrap();
    let cni = script(
        bins.path(),
        "macvtap",
        &format!(
            "#!/bin/sh\nout=$({real}); rc=$?\nif [ \"$CNI_COMMAND\" = ADD ] && [ $rc = 0 ]; then\n  nsenter --net=\"$CNI_NETNS\" ip link del \"$CNI_IFNAME\" >&2\nfi\nprintf '%s' \"$out\"\nexit $rc\n",
            real = real.display()
        ),
    );
    let dir = scratch("drops-attachment-report");
    let out = secnet(&[
        "conform",
        "--plugin",
        &format!("macvtap={}", cni.display()),
        "--label",
        "degradation",
        "--report",
        dir.path().to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let r = report(dir.path());
    let scenarios = r["scenarios"].as_array().unwrap();
    assert_eq!(scenarios.len(), 3, "{r:#}");
    for s in scenarios {
        assert_eq!(s["status"], "failed", "{s:#}");
        let m = s["message"].as_str().unwrap();
        assert!(
            m.contains("degradation invariant: pod ")
                && m.contains(" runs without net1 (default/dataplane): no such link in the pod"),
            "{m}"
        );
    }
    let run_id = r["implementation"]["run_id"].as_str().unwrap();
    assert_eq!(namespaces_of(run_id), Vec::<String>::new());
}

/// Runs the seed's macvlan scenario (three pods on one host-local network, two
/// nodes) with `reference` as the reference plugins' directory; its report.
fn macvlan_with_reference_plugins(
    tag: &str,
    reference: &Path,
) -> (Output, Value, secnet::lab::ScratchDir) {
    let dir = scratch(tag);
    let out = secnet(&[
        "conform",
        "--reference-bin-dir",
        reference.to_str().unwrap(),
        "--focus",
        "seed/macvlan-test NAD with host-local",
        "--report",
        dir.path().to_str().unwrap(),
    ]);
    let r = report(dir.path());
    (out, r, dir)
}

/// An IPAM plugin that hands every pod the same address (a host-local that
/// ignores its leases): the runner's uniqueness check after the scenario must
/// fail it, naming the pods, the network and the address, in every report
/// format. The real host-local passes the same scenario with the check run.
#[test]
fn an_ipam_that_hands_out_a_fixed_address_fails_the_uniqueness_check() {
    if !secnet::prereq::require_root("uniqueness with a fixed-address IPAM") {
        return;
    }
    let real_dir = Path::new("/usr/lib/cni");
    let (out, r, _) = macvlan_with_reference_plugins("fixed-ip-bundled", real_dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let s = scenario(&r, "seed/macvlan-test");
    assert_eq!(s["status"], "passed", "{s:#}");
    assert!(
        s["uniqueness"]["attachments"].as_u64().unwrap() >= 6,
        "{s:#}"
    );
    assert_eq!(
        s["uniqueness"]["duplicates"],
        serde_json::json!([]),
        "{s:#}"
    );

    let bins = scratch("fixed-ip-bin");
    for entry in std::fs::read_dir(real_dir).unwrap().map(Result::unwrap) {
        if entry.file_name() != "host-local" {
            std::os::unix::fs::symlink(entry.path(), bins.path().join(entry.file_name())).unwrap();
        }
    }
    script(
        bins.path(),
        "host-local",
        "#!/bin/sh\nif [ \"$CNI_COMMAND\" != ADD ]; then exec /usr/lib/cni/host-local; fi\nver=$(tr -d '\\n' | sed -n 's/.*\"cniVersion\" *: *\"\\([^\"]*\\)\".*/\\1/p')\nprintf '{\"cniVersion\":\"%s\",\"ips\":[{\"version\":\"4\",\"address\":\"10.250.250.7/24\"}]}' \"$ver\"\n",
    );
    let (out, r, dir) = macvlan_with_reference_plugins("fixed-ip-report", bins.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let s = scenario(&r, "seed/macvlan-test");
    assert_eq!(s["status"], "failed", "{s:#}");
    let m = s["message"].as_str().unwrap();
    assert!(
        m.contains("uniqueness: IP 10.250.250.7 on network default/macvlan-test is used by ")
            && m.contains("/mvl-a net1 and ")
            && m.contains("/mvl-b net1"),
        "{m}"
    );
    let dup = &s["uniqueness"]["duplicates"][0];
    assert_eq!(dup["kind"], "ip", "{s:#}");
    assert_eq!(dup["value"], "10.250.250.7", "{s:#}");
    assert_eq!(dup["network"], "default/macvlan-test", "{s:#}");
    assert!(dup["holders"].as_array().unwrap().len() >= 2, "{s:#}");
    let said = "IP 10.250.250.7 on network default/macvlan-test is used by";
    assert!(junit(dir.path()).contains(&format!("duplicate: {said}")));
    let md = std::fs::read_to_string(dir.path().join("report.md")).unwrap();
    assert!(md.contains(&format!("- **duplicate**: {said}")), "{md}");
    let html = std::fs::read_to_string(dir.path().join("report.html")).unwrap();
    assert!(html.contains("class=\"duplicate\""));
    let run_id = r["implementation"]["run_id"].as_str().unwrap();
    assert_eq!(namespaces_of(run_id), Vec::<String>::new());
}
