//! `secnet compare --a-cluster netns --b-cluster bare` end to end: the seed's two
//! macvtap pods on the netns cluster and on a real Kubernetes brought up from
//! `SECNET_K8S_BIN_DIR` with real thin multus from `SECNET_MULTUS_DIR`; what both
//! observed agrees after normalising, or the difference is an explained one.
//! Ignored without the binaries (CI has no Kubernetes binaries).

use std::process::Command;

use serde_json::Value;

#[test]
#[ignore = "needs real Kubernetes and multus binaries: SECNET_K8S_BIN_DIR=DIR SECNET_MULTUS_DIR=DIR, --run-ignored all"]
fn netns_and_a_real_cluster_observe_the_same_for_the_seed_pods() {
    if !secnet::prereq::require_root("secnet compare --b-cluster bare") {
        return;
    }
    let var = |name: &str| {
        std::env::var(name).unwrap_or_else(|_| {
            panic!("set {name}: SECNET_K8S_BIN_DIR (kube-apiserver, …, kubelet) and SECNET_MULTUS_DIR (multus, thin_entrypoint)")
        })
    };
    let (k8s, multus) = (var("SECNET_K8S_BIN_DIR"), var("SECNET_MULTUS_DIR"));
    let dir = secnet::lab::ScratchDir::new("secnet-suite-compare-clusters").unwrap();
    let bin = secnet::bins::bundled("secnet").unwrap_or_else(|e| panic!("{e}"));
    let out = Command::new(bin)
        .args([
            "compare",
            "--a-cluster",
            "netns",
            "--b-cluster",
            "bare",
            "--k8s-bin-dir",
            &k8s,
            "--component-bin",
            &format!("multus={multus}"),
            "--focus",
            "^seed/macvtap-pod",
            "--report",
            dir.path().to_str().unwrap(),
        ])
        .output()
        .expect("secnet runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let text = std::fs::read_to_string(dir.path().join("compare-clusters.json")).unwrap();
    let c: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        (c["a"].as_str(), c["b"].as_str()),
        (Some("netns"), Some("bare"))
    );
    assert_eq!(c["unexplained"], 0, "{c:#}");
    let rows = c["scenarios"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{c:#}");
    for r in rows {
        for side in ["a", "b"] {
            assert_eq!(r[side]["status"], "passed", "{c:#}");
            let observed = &r[format!("{side}_observed")];
            // The pod with its network-status, and the macvtap CNI's ADD and DEL
            // as its recording wrapper saw them, on both clusters.
            let pod = &observed["pods"][0];
            assert!(
                pod["network_status"].as_str().unwrap().contains("net1"),
                "{c:#}"
            );
            assert_eq!(
                pod["devices"]["macvtap.network.kubevirt.io/dataplane"]
                    .as_array()
                    .map(Vec::len),
                Some(1),
                "{c:#}"
            );
            let commands: Vec<&str> = observed["cni_calls"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|c| c["plugin"] == "macvtap")
                .map(|c| c["command"].as_str().unwrap())
                .collect();
            assert_eq!(commands.first(), Some(&"ADD"), "{c:#}");
            assert!(commands.contains(&"DEL"), "{c:#}");
        }
    }
    let md = std::fs::read_to_string(dir.path().join("compare-clusters.md")).unwrap();
    assert!(md.contains("0 unexplained"), "{md}");
    // Nothing of the run left: its netns namespaces and bare cluster are gone.
    let run_id = c["run_id"].as_str().unwrap();
    let left = secnet::lab::run("ip", &["netns", "list"], std::time::Duration::from_secs(5))
        .unwrap()
        .lines()
        .filter(|l| l.starts_with(&format!("{run_id}-")))
        .count();
    assert_eq!(left, 0, "namespaces of {run_id} left");
    assert!(!std::path::Path::new(&format!("/run/secnet/{run_id}")).exists());
}
