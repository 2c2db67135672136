//! Bad input refused clearly (label `bad-input`): each case is applied to a netns
//! cluster and must fail with an error that names the file/field and the fix, and
//! leave nothing behind (no device held, no pod namespace).

use serde_json::json;

use super::legacy::{DATAPLANE, fixture, fixture_pod, named, with_cluster, with_cluster_seeded};
use super::{Ctx, Outcome, Scenario, ensure, fail};
use crate::cluster::Cluster;
use crate::cluster::netns::NetnsCluster;
use crate::objects::{ConfigMap, Meta, Object, load_str};

pub fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario::new(
            "bad-input/device plugin ConfigMaps: the seed's, unknown mode, capacity 0",
            "macvtap",
            "node",
            &["bad-input", "deviceplugin"],
            |ctx| with_cluster_seeded(ctx, false, false, device_plugin_configs),
        )
        .beyond_reference(
            "kubevirt/macvtap-cni's device plugin reports invalid JSON without a position, advertises an unknown mode (Allocate fails later) and turns capacity <= 0 into 100",
        ),
        Scenario::new(
            "bad-input/pods: missing NAD, malformed annotation, bad MAC, MTU above the lower's",
            "macvtap",
            "pod",
            &["bad-input"],
            |ctx| with_cluster(ctx, false, pod_inputs),
        )
        .beyond_reference(
            "kubevirt/macvtap-cni's errors pass on the kernel's words without naming the field or value at fault (e.g. `invalid argument` for an MTU above the lower device's)",
        ),
        Scenario::new(
            "bad-input/fixtures: typos named by file, document and field",
            "macvtap",
            "node",
            &["bad-input"],
            |ctx| async move { fixture_typos(&ctx) },
        ),
    ]
}

fn config_map(conf: &str) -> Object {
    let mut data = std::collections::BTreeMap::new();
    data.insert("DP_MACVTAP_CONF".to_string(), conf.to_string());
    Object::ConfigMap(ConfigMap {
        metadata: Meta {
            name: "macvtap-deviceplugin-config".into(),
            namespace: "default".into(),
            ..Default::default()
        },
        data,
    })
}

/// Applies `config` then the seed's DaemonSet; the device plugin must not come up,
/// and the cluster must say why, naming `needles`.
async fn daemonset_refused(
    ctx: &Ctx,
    cluster: &NetnsCluster,
    what: &str,
    config: Object,
    needles: &[&str],
) -> Outcome {
    cluster
        .apply(vec![config])
        .await
        .map_err(|e| e.to_string())?;
    cluster
        .apply(fixture(ctx, "seed/macvtap-daemonset.yaml")?)
        .await
        .map_err(|e| e.to_string())?;
    let Some(err) = cluster.device_plugin_failure().await else {
        return fail(format!(
            "{what}: the device plugin started although its config is broken"
        ));
    };
    for needle in needles {
        ensure(err.contains(needle), || {
            format!("{what}: the error does not mention {needle:?}:\n{err}")
        })?;
    }
    for node in cluster.nodes() {
        let r = cluster
            .node_resources(&node)
            .await
            .map_err(|e| e.to_string())?;
        ensure(r.capacity.values().all(|c| *c == 0), || {
            format!("{what}: node {node} advertises {:?}", r.capacity)
        })?;
    }
    Ok(())
}

async fn device_plugin_configs(ctx: &Ctx, cluster: &NetnsCluster) -> Outcome {
    let seed = fixture(ctx, "bad/seed-macvtap-config-master-trailing-comma.yaml")?.remove(0);
    daemonset_refused(
        ctx,
        cluster,
        "the seed's ConfigMap",
        seed,
        &["trailing comma", "line 7"],
    )
    .await?;
    daemonset_refused(
        ctx,
        cluster,
        "unknown mode",
        config_map(
            r#"[{"name": "dataplane", "lowerDevice": "ens33", "mode": "bridgee", "capacity": 5}]"#,
        ),
        &["bridgee", "mode"],
    )
    .await?;
    daemonset_refused(
        ctx,
        cluster,
        "capacity 0",
        config_map(r#"[{"name": "dataplane", "lowerDevice": "ens33", "capacity": 0}]"#),
        &["capacity"],
    )
    .await
}

async fn pod_inputs(ctx: &Ctx, cluster: &NetnsCluster) -> Outcome {
    let node = cluster.nodes()[0].clone();
    let base = fixture_pod(ctx, "seed/macvtap-pod.yaml")?;
    let with_networks = |name: &str, networks: &str| {
        let mut p = named(base.clone(), name, Some(&node));
        p.metadata
            .annotations
            .insert(crate::multus::NETWORKS_ANNOTATION.into(), networks.into());
        p
    };
    let mut mtu_nad = match fixture(ctx, "seed/macvtap-nad.yaml")?.remove(0) {
        Object::Nad(n) => n,
        other => return fail(format!("not a NAD: {other:?}")),
    };
    mtu_nad.metadata.name = "jumbo".into();
    mtu_nad.spec.config =
        json!({"cniVersion": "0.3.1", "name": "jumbo", "type": "macvtap", "mtu": 9000}).to_string();
    cluster
        .apply(vec![Object::Nad(mtu_nad)])
        .await
        .map_err(|e| e.to_string())?;
    let cases = [
        (
            with_networks("missing-nad", "dataplan"),
            vec!["default/dataplan", "does not exist"],
        ),
        (
            with_networks("bad-json", r#"[{"name": "dataplane", }]"#),
            vec!["k8s.v1.cni.cncf.io/networks"],
        ),
        (
            with_networks("no-name", r#"[{"interface": "net1"}]"#),
            vec!["name"],
        ),
        (
            with_networks(
                "bad-mac",
                r#"[{"name": "dataplane", "mac": "02:23:45:67:89"}]"#,
            ),
            vec!["02:23:45:67:89"],
        ),
        (
            with_networks("jumbo", "jumbo"),
            vec!["mtu 9000", "lower device ens33"],
        ),
    ];
    for (pod, needles) in cases {
        let name = pod.metadata.name.clone();
        let err = match cluster.create_pod(pod).await {
            Ok(_) => return fail(format!("pod {name} started although its input is bad")),
            Err(e) => e.to_string(),
        };
        for needle in needles {
            ensure(err.contains(needle), || {
                format!("pod {name}: the error does not mention {needle:?}:\n{err}")
            })?;
        }
        let r = cluster
            .node_resources(&node)
            .await
            .map_err(|e| e.to_string())?;
        ensure(r.allocated.get(DATAPLANE) == Some(&0), || {
            format!("pod {name}: a device is still held after the failed start: {r:?}")
        })?;
        ensure(cluster.pod_netns("default", &name).await.is_none(), || {
            format!("pod {name}: its sandbox is still there")
        })?;
    }
    Ok(())
}

fn fixture_typos(_ctx: &Ctx) -> Outcome {
    let cases = [
        (
            "kind: Pod\napiVersion: v1\nmetadata: {name: p}\nspec: {containers: [{name: c, resources: {limits: 1}}]}\n",
            vec![
                "typo.yaml",
                "document 1",
                "spec.containers[0].resources.limits",
            ],
        ),
        (
            "kind: NetworkAttachmentDefinition\napiVersion: k8s.cni.cncf.io/v1\nmetadata: {name: nad1}\nspec: {config: '{\"type\": macvtap}'}\n",
            vec!["spec.config is not JSON"],
        ),
        (
            "kind: ConfigMap\napiVersion: v1\nmetadta: {name: x}\n",
            vec!["metadata"],
        ),
        (
            "kind: Nad\napiVersion: v1\nmetadata: {name: x}\n",
            vec!["NetworkAttachmentDefinition"],
        ),
    ];
    for (text, needles) in cases {
        let err = match load_str(text, "typo.yaml") {
            Ok(o) => return fail(format!("loaded although broken: {o:?}")),
            Err(e) => e.to_string(),
        };
        for needle in needles {
            ensure(err.contains(needle), || {
                format!("the error does not mention {needle:?}: {err}")
            })?;
        }
    }
    let bad_topology = crate::cluster::netns::topology::DEFAULT.replace("uplink:", "uplnk:");
    let err = crate::cluster::netns::topology::Topology::parse(&bad_topology, "clusters/typo.yaml")
        .map(|_| ())
        .unwrap_err()
        .to_string();
    ensure(
        err.contains("clusters/typo.yaml") && err.contains("uplnk"),
        || format!("topology typo not named: {err}"),
    )
}
