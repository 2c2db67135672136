//! The in-cluster manifests users copy (`ci/users/in-cluster/`): every document is a
//! Kubernetes object whose every field the API knows (a typed round trip loses
//! nothing), the Job's inventory is one secnet accepts, its command line is one
//! secnet parses, and the service account gets no more than it needs. With real
//! Kubernetes binaries (`SECNET_K8S_BIN_DIR`, ignored otherwise) the API server
//! itself takes them: applied for real, the Sonobuoy plugin's pod as a server-side
//! dry run.

use std::path::{Path, PathBuf};

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Container, Namespace, PodSpec, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule};
use serde_json::Value;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../ci/users/in-cluster")
}

fn documents(file: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(dir().join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
    serde_saphyr::from_multiple(&text).unwrap_or_else(|e| panic!("{file}: {e}"))
}

/// `doc` read as `T` and written back is `doc`: no field the API does not know.
fn round_trips<T: serde::de::DeserializeOwned + serde::Serialize>(doc: &Value, what: &str) -> T {
    let typed: T = serde_json::from_value(doc.clone()).unwrap_or_else(|e| panic!("{what}: {e}"));
    let back = serde_json::to_value(&typed).unwrap();
    assert_eq!(
        &back, doc,
        "{what}: a field the Kubernetes API does not know (or a wrong type)"
    );
    typed
}

fn check_object(doc: &Value, file: &str) -> String {
    let kind = doc["kind"].as_str().unwrap_or_default().to_string();
    let what = format!("{file}: {kind} {}", doc["metadata"]["name"]);
    match kind.as_str() {
        "Namespace" => drop(round_trips::<Namespace>(doc, &what)),
        "ServiceAccount" => drop(round_trips::<ServiceAccount>(doc, &what)),
        "ClusterRole" => drop(round_trips::<ClusterRole>(doc, &what)),
        "ClusterRoleBinding" => drop(round_trips::<ClusterRoleBinding>(doc, &what)),
        "ConfigMap" => drop(round_trips::<ConfigMap>(doc, &what)),
        "Job" => drop(round_trips::<Job>(doc, &what)),
        other => panic!("{what}: unexpected kind {other:?}"),
    }
    kind
}

#[test]
fn every_manifest_is_a_kubernetes_object_with_known_fields_only() {
    let mut kinds = Vec::new();
    for file in ["rbac.yaml", "job.yaml", "sonobuoy-rbac.yaml"] {
        for doc in documents(file) {
            kinds.push(check_object(&doc, file));
        }
    }
    for kind in [
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "ConfigMap",
        "Job",
    ] {
        assert!(kinds.iter().any(|k| k == kind), "no {kind} in {kinds:?}");
    }
}

#[test]
fn the_sonobuoy_plugin_is_a_job_plugin_whose_pod_is_valid() {
    let plugin = documents("sonobuoy-plugin.yaml").remove(0);
    let config = &plugin["sonobuoy-config"];
    assert_eq!(config["driver"], "Job");
    assert_eq!(config["plugin-name"], "secnet");
    assert_eq!(
        config["result-format"], "junit",
        "Sonobuoy reads secnet's junit.xml"
    );
    let pod: PodSpec = round_trips(&plugin["podSpec"], "sonobuoy-plugin.yaml: podSpec");
    assert_eq!(pod.service_account_name.as_deref(), Some("secnet-conform"));
    let container: Container = round_trips(&plugin["spec"], "sonobuoy-plugin.yaml: spec");
    let script = container.args.unwrap_or_default().join("\n");
    assert!(
        script.contains("--report \"$RESULTS_DIR/secnet\"") && script.contains("/done"),
        "the plugin writes its reports and Sonobuoy's done file: {script}"
    );
}

fn job() -> Job {
    let doc = documents("job.yaml")
        .into_iter()
        .find(|d| d["kind"] == "Job")
        .expect("job.yaml has a Job");
    serde_json::from_value(doc).unwrap()
}

#[test]
fn the_job_runs_as_the_least_privileged_account_with_an_inventory_secnet_accepts() {
    let job = job();
    let pod = job.spec.unwrap().template.spec.unwrap();
    assert_eq!(pod.service_account_name.as_deref(), Some("secnet-conform"));
    let container = &pod.containers[0];
    let sc = container.security_context.clone().unwrap();
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(
        sc.capabilities.unwrap().drop.unwrap(),
        vec!["ALL".to_string()]
    );
    assert_eq!(pod.security_context.unwrap().run_as_non_root, Some(true));

    // The inventory from the ConfigMap, as the Job mounts it.
    let cm = documents("job.yaml")
        .into_iter()
        .find(|d| d["kind"] == "ConfigMap")
        .unwrap();
    let scratch = std::env::temp_dir().join(format!("secnet-in-cluster-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).unwrap();
    let inventory = scratch.join("inventory.yaml");
    std::fs::write(&inventory, cm["data"]["inventory.yaml"].as_str().unwrap()).unwrap();
    secnet::conform::inventory::Inventory::load(&inventory)
        .unwrap_or_else(|e| panic!("job.yaml's inventory: {e}"));

    // The Job's secnet command line, with the mounted paths replaced, is one secnet
    // parses (--list: what would run, no cluster contacted).
    let script = container.args.clone().unwrap_or_default().join("\n");
    let line = script
        .lines()
        .find(|l| l.trim_start().starts_with("secnet "))
        .expect("the Job runs secnet");
    let args: Vec<String> = line
        .split_whitespace()
        .skip(1)
        .map(|a| {
            a.replace(
                "/etc/secnet/inventory.yaml",
                &inventory.display().to_string(),
            )
        })
        .filter(|a| a != "--report" && a != "/reports")
        .collect();
    let secnet = secnet::bins::bundled("secnet").unwrap_or_else(|e| panic!("{e}"));
    let out = std::process::Command::new(secnet)
        .args(&args)
        .arg("--list")
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&scratch);
    assert!(
        out.status.success(),
        "secnet {args:?} --list: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The rules of rbac.yaml's ClusterRole.
fn rules() -> Vec<PolicyRule> {
    let doc = documents("rbac.yaml")
        .into_iter()
        .find(|d| d["kind"] == "ClusterRole")
        .unwrap();
    let role: ClusterRole = serde_json::from_value(doc).unwrap();
    role.rules.unwrap_or_default()
}

#[test]
fn the_role_grants_no_wildcards_secrets_rbac_or_node_writes() {
    for rule in rules() {
        let groups = rule.api_groups.clone().unwrap_or_default();
        let resources = rule.resources.clone().unwrap_or_default();
        for word in groups.iter().chain(&resources).chain(&rule.verbs) {
            assert_ne!(word, "*", "wildcard in {rule:?}");
        }
        assert!(
            !groups.iter().any(|g| g == "rbac.authorization.k8s.io"),
            "{rule:?}"
        );
        for forbidden in [
            "secrets",
            "serviceaccounts/token",
            "daemonsets",
            "customresourcedefinitions",
        ] {
            assert!(
                !resources.iter().any(|r| r == forbidden),
                "{forbidden} in {rule:?}"
            );
        }
        if resources.iter().any(|r| r == "nodes") {
            assert!(
                rule.verbs
                    .iter()
                    .all(|v| ["get", "list", "watch"].contains(&v.as_str())),
                "nodes are only read: {rule:?}"
            );
        }
        assert!(
            !rule
                .verbs
                .iter()
                .any(|v| ["escalate", "bind", "impersonate"].contains(&v.as_str()))
        );
    }
}

/// The real API server takes the manifests: rbac.yaml, sonobuoy-rbac.yaml and
/// job.yaml applied server-side for real on a bare cluster (Kubernetes from
/// `SECNET_K8S_BIN_DIR`), the Sonobuoy plugin's pod as a server-side dry run, and the
/// service account can do what a run does and no more (`kubectl auth can-i`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs real Kubernetes binaries: SECNET_K8S_BIN_DIR=DIR, --run-ignored all"]
async fn the_api_server_accepts_the_manifests_and_the_account_is_least_privileged() {
    use secnet::cluster::bare::{BareCluster, BareOptions};
    if !secnet::prereq::require_root("in-cluster manifests on a real API server") {
        return;
    }
    let bin = PathBuf::from(std::env::var_os("SECNET_K8S_BIN_DIR").expect(
        "set SECNET_K8S_BIN_DIR to a directory with kube-apiserver, kube-controller-manager, kube-scheduler, kubelet and kubectl",
    ));
    let opts = BareOptions {
        run_id: secnet::lab::new_run_id(),
        topology: secnet::cluster::netns::topology::Topology::builtin(),
        k8s_bin_dir: bin.clone(),
        images: Vec::new(),
        pause_image: "secnet.local/pause:none".into(),
        timeout: std::time::Duration::from_secs(120),
        addons: Vec::new(),
        wait_capacity: None,
        ovs: false,
    };
    let cluster = BareCluster::up(&opts).await.unwrap();
    let kubeconfig = format!("--kubeconfig={}", cluster.kubeconfig.display());
    // Right after start-up the server may not answer yet ("currently unable to
    // handle the request"): asked again, for up to a minute. kubectl's client-side
    // validation is off (it reads the server's OpenAPI, which this bare server did
    // not serve); unknown fields are the round-trip test's job.
    let kubectl = |args: &[&str]| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let out = std::process::Command::new(bin.join("kubectl"))
                .arg(&kubeconfig)
                .args(args)
                .output()
                .unwrap();
            let starting =
                String::from_utf8_lossy(&out.stderr).contains("currently unable to handle");
            if !starting || std::time::Instant::now() >= deadline {
                return out;
            }
            std::thread::sleep(std::time::Duration::from_secs(2));
        }
    };
    let mut failures = Vec::new();
    let mut check = |what: &str, out: std::process::Output, want_ok: bool| {
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!("{what}: {}", text.trim());
        if out.status.success() != want_ok {
            failures.push(format!("{what}: {text}"));
        }
    };
    // The NAD and KubeVirt kinds the role names need not be served for RBAC.
    for file in ["rbac.yaml", "sonobuoy-rbac.yaml", "job.yaml"] {
        let path = dir().join(file).display().to_string();
        check(
            file,
            kubectl(&[
                "apply",
                "--server-side",
                "--validate=false",
                "--field-manager=secnet-test",
                "-f",
                &path,
            ]),
            true,
        );
    }
    // The Sonobuoy plugin's pod: its podSpec with spec as the container.
    let plugin = documents("sonobuoy-plugin.yaml").remove(0);
    let mut pod_spec = plugin["podSpec"].clone();
    pod_spec["containers"] = serde_json::json!([plugin["spec"].clone()]);
    pod_spec["volumes"] = serde_json::json!([{"name": "results", "emptyDir": {}}]);
    let pod = serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "secnet-plugin", "namespace": "sonobuoy"},
        "spec": pod_spec,
    });
    let pod_file = std::env::temp_dir().join(format!("secnet-{}-plugin-pod.json", opts.run_id));
    std::fs::write(&pod_file, pod.to_string()).unwrap();
    check(
        "sonobuoy plugin pod (dry run)",
        kubectl(&[
            "apply",
            "--dry-run=server",
            "--validate=false",
            "-f",
            &pod_file.display().to_string(),
        ]),
        true,
    );
    let _ = std::fs::remove_file(&pod_file);
    // (NADs are not asked: kubectl resolves the kind, and this cluster has no CRD.)
    let sa = "--as=system:serviceaccount:secnet-system:secnet-conform";
    for (verb, resource, ns, allowed) in [
        ("create", "namespaces", None, true),
        ("create", "pods", Some("secnet-sn000001"), true),
        ("create", "pods/exec", Some("secnet-sn000001"), true),
        ("get", "pods/log", Some("kube-system"), true),
        ("list", "nodes", None, true),
        ("create", "configmaps", Some("secnet-sn000001"), true),
        ("get", "secrets", Some("kube-system"), false),
        ("patch", "nodes", None, false),
        ("create", "daemonsets.apps", Some("kube-system"), false),
        (
            "create",
            "clusterrolebindings.rbac.authorization.k8s.io",
            None,
            false,
        ),
        (
            "create",
            "customresourcedefinitions.apiextensions.k8s.io",
            None,
            false,
        ),
    ] {
        let mut args = vec!["auth", "can-i", verb, resource, sa];
        if let Some(ns) = ns {
            args.extend(["-n", ns]);
        }
        check(&format!("can-i {verb} {resource}"), kubectl(&args), allowed);
    }
    cluster.down().unwrap();
    assert!(failures.is_empty(), "{failures:#?}");
}
