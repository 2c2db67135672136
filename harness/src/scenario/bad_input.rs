//! Bad input refused clearly (label `bad-input`): each case is applied to a cluster
//! and must fail with an error that names the file/field and the fix, and leave
//! nothing behind (no device held, no pod namespace).

use serde_json::json;

use super::kit::{DATAPLANE, MACVTAP_PODS, fixture, fixture_nad, fixture_pod, named};
use super::{Capability, Ctx, Failure, Outcome, Scenario, ensure, fail};
use crate::cluster::any::AnyCluster;
use crate::cluster::{Cluster, ClusterError};
use crate::objects::{ConfigMap, Meta, Object, load_str};

pub fn scenarios() -> Vec<Scenario> {
    vec![
        // No seed deployed: each case applies its own ConfigMap, then the DaemonSet.
        Scenario::on_cluster(
            "bad-input/device plugin ConfigMaps: the seed's, unknown mode, capacity 0",
            "macvtap",
            "node",
            &["bad-input", "deviceplugin"],
            |ctx, c| Box::pin(device_plugin_configs(ctx, c)),
        )
        .needs(&[Capability::DevicePluginConfig])
        .beyond_reference(
            "kubevirt/macvtap-cni's device plugin reports invalid JSON without a position, advertises an unknown mode (Allocate fails later) and turns capacity <= 0 into 100",
        ),
        Scenario::on_cluster(
            "bad-input/pods: missing NAD, malformed annotation, bad MAC, MTU above the lower's",
            "macvtap",
            "pod",
            &["bad-input"],
            |ctx, c| Box::pin(pod_inputs(ctx, c)),
        )
        .deploy_macvtap_seed()
        .shares_nodes_but_not_within(MACVTAP_PODS)
        .beyond_reference(
            "kubevirt/macvtap-cni's errors pass on the kernel's words without naming the field or value at fault (e.g. `invalid argument` for an MTU above the lower device's)",
        ),
        Scenario::plain(
            "bad-input/fixtures: typos named by file, document and field",
            "macvtap",
            "node",
            &["bad-input"],
            |ctx| Box::pin(async move { fixture_typos(ctx) }),
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
    cluster: &AnyCluster,
    what: &str,
    config: Object,
    needles: &[&str],
) -> Outcome {
    cluster.apply(vec![config]).await?;
    cluster
        .apply(fixture(ctx, "seed/macvtap-daemonset.yaml")?)
        .await?;
    let Some(err) = cluster.device_plugin_failure().await? else {
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
        let r = cluster.node_resources(&node).await?;
        ensure(r.capacity.values().all(|c| *c == 0), || {
            format!("{what}: node {node} advertises {:?}", r.capacity)
        })?;
    }
    Ok(())
}

async fn device_plugin_configs(ctx: &Ctx, cluster: &AnyCluster) -> Outcome {
    let seed = fixture(ctx, "bad/seed-macvtap-config-master-trailing-comma.yaml")?.remove(0);
    daemonset_refused(
        ctx,
        cluster,
        "the seed's ConfigMap",
        seed,
        // The position is the comma's own, and the line is shown with a caret under it.
        &[
            "trailing comma",
            "line 7 column 6",
            "    7 |     },",
            "\n      |      ^",
        ],
    )
    .await?;
    let lower = cluster.lower_device();
    // All on one line, as `kubectl create configmap --from-literal` writes it.
    let one_line =
        format!(r#"[{{"name": "dataplane", "lowerDevice": "{lower}", "capacity": 5}},]"#);
    let comma = one_line.rfind(',').unwrap_or(0) + 1;
    daemonset_refused(
        ctx,
        cluster,
        "a one-line ConfigMap with a trailing comma",
        config_map(&one_line),
        &[
            "trailing comma",
            &format!("line 1 column {comma}"),
            &format!("    1 | {one_line}"),
            &format!("\n      | {}^", " ".repeat(comma - 1)),
        ],
    )
    .await?;
    let unknown_mode = json!([
        {"name": "dataplane", "lowerDevice": lower, "mode": "bridgee", "capacity": 5}
    ]);
    daemonset_refused(
        ctx,
        cluster,
        "unknown mode",
        config_map(&unknown_mode.to_string()),
        &["bridgee", "mode"],
    )
    .await?;
    // One character over the kubelet's 63 (a 63-character name is valid).
    let long_name = "d".repeat(64);
    let too_long = json!([{"name": long_name, "lowerDevice": lower, "capacity": 5}]);
    daemonset_refused(
        ctx,
        cluster,
        "a 64-character resource name",
        config_map(&too_long.to_string()),
        &["has 64 characters"],
    )
    .await?;
    // Letters at both ends, a '/' inside: the socket file name would leave the
    // device-plugin directory, and the kubelet refuses such a resource.
    let slashed = json!([{"name": "data/../plane", "lowerDevice": lower, "capacity": 5}]);
    daemonset_refused(
        ctx,
        cluster,
        "a resource name with '/' inside",
        config_map(&slashed.to_string()),
        // Refused as a config error on the field, not later as a socket it
        // could not bind.
        &["data/../plane", "resource name"],
    )
    .await?;
    let no_capacity = json!([{"name": "dataplane", "lowerDevice": lower, "capacity": 0}]);
    daemonset_refused(
        ctx,
        cluster,
        "capacity 0",
        config_map(&no_capacity.to_string()),
        &["capacity"],
    )
    .await
}

async fn pod_inputs(ctx: &Ctx, cluster: &AnyCluster) -> Outcome {
    let node = cluster.nodes()[0].clone();
    let base = fixture_pod(ctx, "seed/macvtap-pod.yaml")?;
    let with_networks = |name: &str, networks: &str| {
        let mut p = named(base.clone(), name, Some(&node));
        p.metadata
            .annotations
            .insert(crate::multus::NETWORKS_ANNOTATION.into(), networks.into());
        p
    };
    let mut mtu_nad = fixture_nad(ctx, "seed/macvtap-nad.yaml")?;
    mtu_nad.metadata.name = "jumbo".into();
    mtu_nad.spec.config =
        json!({"cniVersion": "0.3.1", "name": "jumbo", "type": "macvtap", "mtu": 9000}).to_string();
    cluster.apply(vec![Object::Nad(mtu_nad)]).await?;
    let cases = [
        (
            with_networks("missing-nad", "dataplan"),
            // Names the missing NAD; the wording is multus's own (real multus:
            // "cannot find … (dataplan) in namespace (…)").
            vec!["dataplan"],
        ),
        (
            with_networks("bad-json", r#"[{"name": "dataplane", }]"#),
            // The annotation by its key, or by its name in the multus spec (real
            // multus: "… Network Attachment Selection Annotation JSON format …").
            vec!["k8s.v1.cni.cncf.io/networks|Network Attachment Selection Annotation"],
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
            // Says what was refused, not the node's lower device or its MTU (issue 28).
            vec!["mtu 9000", "lower device"],
        ),
    ];
    // On a real cluster a pod whose sandbox fails stays and its kubelet retries,
    // holding its device: deleted, it must leave nothing behind. Where secnet is the
    // runtime the failed start itself leaves nothing (there is no pod to delete).
    // All at once: each refusal takes a real kubelet a second or more.
    let node_side = cluster.offers(Capability::NodeAccess);
    let names: Vec<(String, String)> = cases
        .iter()
        .map(|(p, _)| (p.metadata.namespace.clone(), p.metadata.name.clone()))
        .collect();
    let (pods, needles): (Vec<crate::objects::Pod>, Vec<Vec<&str>>) = cases.into_iter().unzip();
    let answers = futures::future::join_all(pods.into_iter().map(|p| cluster.create_pod(p))).await;
    for (((_, name), answer), needles) in names.iter().zip(answers).zip(needles) {
        let err = match answer {
            Ok(_) => return fail(format!("pod {name} started although its input is bad")),
            Err(e) => e.to_string(),
        };
        // A needle `a|b` is met by either wording.
        for needle in needles {
            ensure(needle.split('|').any(|n| err.contains(n)), || {
                format!("pod {name}: the error does not mention {needle:?}:\n{err}")
            })?;
        }
    }
    if node_side {
        let deleted = futures::future::join_all(
            names
                .iter()
                .map(|(_, name)| cluster.delete_pod("default", name)),
        )
        .await;
        for ((_, name), r) in names.iter().zip(deleted) {
            match r {
                Ok(()) | Err(ClusterError::NoSuchPod(_)) => {}
                Err(e) => {
                    return Err(Failure::caused(
                        format!("deleting the refused pod {name}"),
                        e,
                    ));
                }
            }
        }
        let r = cluster.node_resources(&node).await?;
        ensure(r.allocated.get(DATAPLANE) == Some(&0), || {
            format!("a device is still held after the refused pods were deleted: {r:?}")
        })?;
        for (namespace, name) in &names {
            ensure(!cluster.pod_sandbox_exists(namespace, name).await?, || {
                format!("pod {name}: its sandbox is still there")
            })?;
        }
    }
    if !node_side {
        ctx.observed.note(
            "devices and sandboxes of the refused pods not checked: no node access on this provider",
        );
    }
    Ok(())
}

fn fixture_typos(ctx: &Ctx) -> Outcome {
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
    // The run's own topology, written out again, parses; with the typo it must not.
    let file = "clusters/typo.yaml";
    super::Topology::parse(&topology_text(ctx, "uplink"), file)
        .map_err(|e| Failure::caused("the run's topology, written out again", e))?;
    let err = match super::Topology::parse(&topology_text(ctx, "uplnk"), file) {
        Ok(_) => return fail("a topology with `uplnk:` for `uplink:` was accepted"),
        Err(e) => e.to_string(),
    };
    ensure(err.contains(file) && err.contains("uplnk"), || {
        format!("topology typo not named: {err}")
    })
}

/// The run's topology (`Ctx` holds its type) as YAML, every node's uplink under
/// `uplink_key`.
fn topology_text(ctx: &Ctx, uplink_key: &str) -> String {
    let t = &ctx.topology;
    let mut text = format!(
        "name: {}\nfabric:\n  subnet: {}\n  gateway: {}\npodNetwork: {}\nnodes:\n",
        t.name, t.fabric.subnet, t.fabric.gateway, t.pod_network
    );
    for n in &t.nodes {
        text.push_str(&format!(
            "  - name: {}\n    {uplink_key}: {}\n    address: {}\n",
            n.name, n.uplink, n.address
        ));
    }
    text
}
