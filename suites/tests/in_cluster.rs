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
