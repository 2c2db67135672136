//! The hostile NAD author (label `security`): configurations a tenant can write in
//! a NetworkAttachmentDefinition (and a runtime can pass through), played against
//! the implementation under test on a netns node. Each attack must be refused and
//! leave the node as it was: its links, the pod's links, `/dev/tapN` owners, the
//! OVS bridge's ports and Port rows, files.
//!
//! The node's administrator speaks through the policy file (`SECNET_PLUGIN_POLICY`,
//! see docs/threat-model.md); each scenario says which policy the node has. Upstream's plugins
//! have no such policy: the messages say so when an attack gets through.

use std::path::Path;
use std::time::Duration;

use cni_kit::policy::POLICY_ENV;
use serde_json::{Value, json};

use super::kit::{
    DATAPLANE, LabOvs, fixture_pod, lab_failure, lab_ovs, named, node_policy, pod_link, scratch_dir,
};
use super::{Capability, Ctx, Failure, Outcome, Scenario, ensure, fail};
use crate::cluster::Cluster;
use crate::cluster::any::AnyCluster;
use crate::cni::{Call, Reply, exec};
use crate::lab::node::NodeLab;
use crate::lab::{Ns, ScratchDir};
use crate::objects::{Meta, NadSpec, NetworkAttachmentDefinition, Object, Pod};

const NO_POLICY: &str = "upstream has no such policy";

/// Stands for the node's uplink in an attack's config, policy and links; replaced
/// with the node lab's uplink when the attack is played.
const UPLINK: &str = "<uplink>";

pub fn scenarios() -> Vec<Scenario> {
    let mut list = Vec::new();
    let mut macvtap = |name: &str, attack: MacvtapAttack| {
        list.push(Scenario::on_node_lab(
            format!("security/macvtap: {name}"),
            "macvtap",
            "pod",
            &["security", "cni"],
            move |ctx, nl| Box::pin(macvtap_attack(ctx, nl, attack.clone())),
        ));
    };
    macvtap(
        "standalone master on the node's uplink, no node policy",
        MacvtapAttack {
            policy: None,
            config: json!({"master": UPLINK, "mode": "bridge"}),
            why: "standalone mode must be off unless the node's policy lists the master",
            ..MacvtapAttack::default()
        },
    );
    macvtap(
        "standalone master on a host bridge the policy does not list",
        MacvtapAttack {
            policy: Some("[macvtap]\nstandalone_masters = <uplink>\n"),
            host_bridge: true,
            config: json!({"master": "br0", "mode": "bridge"}),
            why: "only the masters the node's policy lists may carry standalone macvtaps",
            ..MacvtapAttack::default()
        },
    );
    macvtap(
        "passthru with promiscMode on the uplink",
        MacvtapAttack {
            policy: Some("[macvtap]\nstandalone_masters = <uplink>\n"),
            config: json!({"master": UPLINK, "mode": "passthru", "promiscMode": true}),
            why: "passthru takes the uplink's own MAC; the node's policy must list it explicitly",
            ..MacvtapAttack::default()
        },
    );
    macvtap(
        "a deviceID naming a VM's macvtap0",
        MacvtapAttack {
            device_links: &["macvtap0"],
            config: json!({"deviceID": "macvtap0"}),
            why: "device mode may take only links the device plugin made (hashed names, or marked ones)",
            ..MacvtapAttack::default()
        },
    );
    macvtap(
        "a deviceID naming the node's uplink",
        MacvtapAttack {
            config: json!({"deviceID": UPLINK}),
            why: "device mode may take only macvtaps the device plugin made",
            ..MacvtapAttack::default()
        },
    );
    macvtap(
        "owner/group of /dev/tapN set to root",
        MacvtapAttack {
            device_links: &["mvt-hashed:<uplink>Mvp0"],
            config: json!({"deviceID": "<uplink>Mvp0", "owner": 0, "group": 0}),
            why: "the tap's owner and group must be ones the node's policy allows (default 107:107)",
            ..MacvtapAttack::default()
        },
    );
    let mut ovs = |name: &str, attack: OvsAttack| {
        list.push(
            Scenario::on_node_lab(
                format!("security/ovs: {name}"),
                "ovs",
                "pod",
                &["security", "cni"],
                move |ctx, nl| Box::pin(ovs_attack(ctx, nl, attack.clone())),
            )
            .needs(&[Capability::Program("ovsdb-server")]),
        );
    };
    ovs(
        "socket_file through /proc/<pid>/root",
        OvsAttack {
            socket: SocketChoice::ViaProc,
            config: json!({"vlan": 100}),
            why: "the plugin may connect only to the sockets the node's policy lists",
            ..OvsAttack::default()
        },
    );
    ovs(
        "socket_file a symlink to the node's ovsdb-server",
        OvsAttack {
            socket: SocketChoice::Symlink,
            config: json!({"vlan": 100}),
            why: "the plugin may connect only to the sockets the node's policy lists, never through a symlink",
            ..OvsAttack::default()
        },
    );
    ovs(
        "trunk of every VLAN (no vlan) without the policy allowing trunks",
        OvsAttack {
            config: json!({}),
            why: "a port without vlan carries every VLAN of the bridge; trunks need the node's consent",
            ..OvsAttack::default()
        },
    );
    ovs(
        "trunk list without the policy allowing trunks",
        OvsAttack {
            config: json!({"trunk": [{"minID": 1, "maxID": 4094}]}),
            why: "trunks need the node's consent",
            ..OvsAttack::default()
        },
    );
    ovs(
        "ipam type naming the plugin itself",
        OvsAttack {
            ipam_self: true,
            config: json!({"vlan": 100}),
            why: "the plugin must not run itself (or another main plugin) as IPAM",
            ..OvsAttack::default()
        },
    );
    ovs(
        "absolute and ../ container ids on DEL",
        OvsAttack {
            hostile_container_id: true,
            config: json!({"vlan": 100}),
            why: "container ids must be checked before a cache path is built from them",
            ..OvsAttack::default()
        },
    );
    list.push(
        Scenario::on_cluster(
            "security/macvtap: a deviceID of another pod's allocation",
            "macvtap",
            "pod",
            &["security", "cni", "deviceplugin"],
            |ctx, c| Box::pin(other_pods_device(ctx, c)),
        )
        .needs(&[Capability::NodeAccess])
        .deploy_macvtap_seed(),
    );
    list
}

/// `text` with the node's uplink in place of `UPLINK`.
fn on_node(text: &str, uplink: &str) -> String {
    text.replace(UPLINK, uplink)
}

/// `config` with the node's uplink in place of `UPLINK`.
fn config_on_node(config: &Value, uplink: &str) -> Result<Value, Failure> {
    Ok(serde_json::from_str(&on_node(&config.to_string(), uplink))?)
}

/// The plugin's answer, cut short (upstream's errors carry its whole log).
fn described(r: &Reply) -> String {
    let text = if r.success {
        format!("it succeeded: {}", r.stdout.trim())
    } else {
        format!("refused: {}", r.error_text())
    };
    short(&text)
}

fn short(text: &str) -> String {
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match flat.char_indices().nth(300) {
        Some((i, _)) => format!("{}…", &flat[..i]),
        None => flat,
    }
}

// ---- macvtap ----

#[derive(Clone, Default)]
struct MacvtapAttack {
    /// The node's policy; `None`: no policy file.
    policy: Option<&'static str>,
    /// Links made as a device plugin (or a VM) would: a name, or
    /// `mvt-hashed:<deviceID>` for the device plugin's hashed name.
    device_links: &'static [&'static str],
    /// A Linux bridge `br0` on the node.
    host_bridge: bool,
    config: Value,
    why: &'static str,
}

/// What must not change: the node's and the pod's links, and the owner of every
/// device link's `/dev/tapN`.
fn macvtap_state(nl: &NodeLab, pod: &Ns) -> Result<Vec<String>, Failure> {
    let mut state = nl.links(&nl.node).map_err(lab_failure)?;
    state.push("--pod--".into());
    state.extend(nl.links(pod).map_err(lab_failure)?);
    for name in nl.links(&nl.node).map_err(lab_failure)? {
        if let Some(link) = nl.link(&nl.node, &name)
            && let Ok(owner) = crate::lab::node::tap_owner(&link)
        {
            state.push(format!("{name} tap {owner:?}"));
        }
    }
    Ok(state)
}

async fn macvtap_attack(ctx: &Ctx, nl: &mut NodeLab, attack: MacvtapAttack) -> Outcome {
    let scratch = scratch_dir(ctx, "sec")?;
    let uplink = nl.uplink().to_string();
    let pod = nl.pod("pod").map_err(lab_failure)?;
    for link in attack.device_links {
        let link = on_node(link, &uplink);
        let name = match link.strip_prefix("mvt-hashed:") {
            Some(id) => macvtap_cni::naming::hashed_link_name(id),
            None => link,
        };
        nl.device_link(&name).map_err(lab_failure)?;
    }
    if attack.host_bridge {
        nl.lab
            .ip(&nl.node, &["link", "add", "br0", "type", "bridge"])
            .map_err(lab_failure)?;
        nl.lab
            .ip(&nl.node, &["link", "set", "br0", "up"])
            .map_err(lab_failure)?;
    }
    let policy = node_policy(
        &scratch,
        attack.policy.map(|p| on_node(p, &uplink)).as_deref(),
    )?;
    let config = config_on_node(&attack.config, &uplink)?;
    let before = macvtap_state(nl, &pod)?;
    let mut cfg = json!({"cniVersion": "0.4.0", "name": "tenant-net", "type": "macvtap"});
    for (k, v) in config.as_object().cloned().unwrap_or_default() {
        cfg[k] = v;
    }
    let call = Call::new(ctx.plugin("macvtap"), "ADD", cfg.clone())
        .container(&format!("{}-cid", pod.name), Some(&pod.path_str()), "net1")
        .env(POLICY_ENV, &policy);
    let reply = exec(&call, Some(&nl.node_ns)).await?;
    let after = macvtap_state(nl, &pod)?;
    let accepted = format!("the NAD {config} was accepted");
    verdict(
        nl, &call, &reply, accepted, attack.why, &config, before, after,
    )
    .await
}

// ---- OVS ----

#[derive(Clone, Copy, Default, PartialEq, Eq)]
enum SocketChoice {
    /// The node's own socket, listed in the policy.
    #[default]
    Allowed,
    /// The same socket reached as `/proc/<pid of ovsdb-server's peer>/root/...`.
    ViaProc,
    /// A symlink to it.
    Symlink,
}

#[derive(Clone, Default)]
struct OvsAttack {
    socket: SocketChoice,
    /// `ipam.type` names the plugin itself (found in CNI_PATH as a depth-limited
    /// wrapper, so that a plugin that recurses stops after two levels).
    ipam_self: bool,
    /// DEL with CNI_CONTAINERID an absolute path and a `../` path to a victim file.
    hostile_container_id: bool,
    config: Value,
    why: &'static str,
}

async fn ovs_attack(ctx: &Ctx, nl: &mut NodeLab, attack: OvsAttack) -> Outcome {
    let scratch = scratch_dir(ctx, "sec")?;
    // Stopped when dropped, before the runner tears the lab down.
    let ovs = lab_ovs(nl, &scratch.path().join("ovs"))?;
    ovs.add_bridge("br1")?;
    ovs_attack_in(ctx, nl, &ovs, &scratch, &attack).await
}

fn ovs_state(nl: &NodeLab, pod: &Ns, ovs: &LabOvs) -> Result<Vec<String>, Failure> {
    let mut state = nl.links(&nl.node).map_err(lab_failure)?;
    state.push("--pod--".into());
    state.extend(nl.links(pod).map_err(lab_failure)?);
    state.push("--ports--".into());
    state.extend(ovs.ports("br1")?);
    state.push(ovs.vsctl(&["--columns=name", "list", "Port"])?);
    Ok(state)
}

async fn ovs_attack_in(
    ctx: &Ctx,
    nl: &mut NodeLab,
    ovs: &LabOvs,
    scratch: &ScratchDir,
    attack: &OvsAttack,
) -> Outcome {
    let pod = nl.pod("pod").map_err(lab_failure)?;
    let real = ovs.socket.display().to_string();
    let socket = match attack.socket {
        SocketChoice::Allowed => real.clone(),
        SocketChoice::ViaProc => format!("/proc/{}/root{real}", std::process::id()),
        SocketChoice::Symlink => {
            let link = scratch.path().join("db.sock");
            std::os::unix::fs::symlink(&ovs.socket, &link)
                .map_err(|e| Failure::caused(format!("failed to create {}", link.display()), e))?;
            link.display().to_string()
        }
    };
    // The node's admin allows this node's own socket only, access ports only.
    let policy = node_policy(scratch, Some(&format!("[ovs]\nsockets = {real}\n")))?;
    let mut cfg = json!({"cniVersion": "0.4.0", "name": "tenant-net", "type": "ovs",
        "bridge": "br1", "socket_file": format!("unix:{socket}")});
    for (k, v) in attack.config.as_object().cloned().unwrap_or_default() {
        cfg[k] = v;
    }
    let mut call = Call::new(ctx.plugin("ovs"), "ADD", cfg.clone())
        .container(&format!("{}-cid", pod.name), Some(&pod.path_str()), "net1")
        .env(POLICY_ENV, &policy);
    call.timeout = Duration::from_secs(30);
    let marker = scratch.path().join("recursed");
    if attack.ipam_self {
        call = with_self_as_ipam(ctx, call, scratch, &marker)?;
    }
    let before = ovs_state(nl, &pod, ovs)?;
    if attack.hostile_container_id {
        return hostile_container_ids(nl, scratch, call).await;
    }
    let reply = exec(&call, Some(&nl.node_ns)).await?;
    let after = ovs_state(nl, &pod, ovs)?;
    if attack.ipam_self && marker.exists() {
        return fail(format!(
            "the plugin ran itself as its own IPAM plugin ({}; {NO_POLICY}, upstream recurses until a pids limit stops it): {}",
            attack.why,
            described(&reply)
        ));
    }
    let accepted = format!(
        "the NAD {} with socket_file {socket} was accepted",
        attack.config
    );
    verdict(
        nl,
        &call,
        &reply,
        accepted,
        attack.why,
        &attack.config,
        before,
        after,
    )
    .await
}

/// The verdict on an attack: accepted (undone with a DEL before it is reported; the
/// pod namespace goes with the lab anyway), or refused with the node unchanged.
#[allow(clippy::too_many_arguments)]
async fn verdict<S: PartialEq + std::fmt::Debug>(
    nl: &NodeLab,
    call: &Call,
    reply: &Reply,
    accepted: String,
    why: &str,
    config: &Value,
    before: S,
    after: S,
) -> Outcome {
    if reply.success {
        let mut del = call.clone();
        del.command = "DEL".into();
        let _ = exec(&del, Some(&nl.node_ns)).await;
        return fail(format!(
            "{accepted} ({why}; {NO_POLICY}): {}",
            short(&reply.stdout)
        ));
    }
    ensure(before == after, || {
        format!(
            "the NAD {config} was refused but the node changed ({}):\n  before {before:?}\n  after  {after:?}",
            described(reply)
        )
    })
}

/// Puts a wrapper named like the plugin first in CNI_PATH: it runs the real plugin
/// once more (so a plugin that delegates to itself is caught), marks that it did,
/// and stops a second level with an error instead of recursing further.
fn with_self_as_ipam(
    ctx: &Ctx,
    mut call: Call,
    scratch: &ScratchDir,
    marker: &Path,
) -> Result<Call, Failure> {
    let bin = scratch.path().join("bin");
    std::fs::create_dir_all(&bin)
        .map_err(|e| Failure::caused(format!("failed to create {}", bin.display()), e))?;
    let wrapper = bin.join("ovs");
    let script = format!(
        "#!/bin/sh\n: > '{marker}'\nif [ -n \"$SECNET_SECURITY_DEPTH\" ]; then echo '{{\"code\":100,\"msg\":\"recursion stopped by secnet\"}}'; exit 1; fi\nexport SECNET_SECURITY_DEPTH=1\nexec '{plugin}' \"$@\"\n",
        marker = marker.display(),
        plugin = ctx.plugin("ovs").display()
    );
    let written = std::fs::write(&wrapper, script).and_then(|()| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755))
    });
    written.map_err(|e| Failure::caused(format!("failed to write {}", wrapper.display()), e))?;
    call.path = format!("{}:{}", bin.display(), call.path);
    call.config["ipam"] = json!({"type": "ovs"});
    Ok(call)
}

/// DEL with CNI_CONTAINERID an absolute path and a `../` path whose cache file would
/// be a victim file; the victim must survive.
async fn hostile_container_ids(nl: &NodeLab, scratch: &ScratchDir, call: Call) -> Outcome {
    let victim_dir = scratch.path().join("victims");
    std::fs::create_dir_all(&victim_dir)
        .map_err(|e| Failure::caused(format!("failed to create {}", victim_dir.display()), e))?;
    let absolute = victim_dir.join("abs");
    let dotted = victim_dir.join("dot");
    let up = "../".repeat(8);
    let ids = [
        absolute.display().to_string(),
        format!(
            "{up}{}",
            dotted.display().to_string().trim_start_matches('/')
        ),
    ];
    let mut accepted = Vec::new();
    for (id, victim) in ids.iter().zip([&absolute, &dotted]) {
        let file = victim.with_file_name(format!(
            "{}-net1",
            victim.file_name().unwrap_or_default().to_string_lossy()
        ));
        std::fs::write(&file, "{}")
            .map_err(|e| Failure::caused(format!("failed to write {}", file.display()), e))?;
        let mut del = call.clone();
        del.command = "DEL".into();
        del.container_id = id.clone();
        let reply = exec(&del, Some(&nl.node_ns)).await?;
        if !file.exists() {
            return fail(format!(
                "DEL with CNI_CONTAINERID {id:?} deleted {} ({}): {}",
                file.display(),
                NO_POLICY.replace("policy", "check"),
                described(&reply)
            ));
        }
        if reply.success {
            accepted.push(id.clone());
        }
    }
    ensure(accepted.is_empty(), || {
        format!(
            "DEL accepted container ids that are paths {accepted:?} (nothing was deleted, but the id was not checked)"
        )
    })
}

/// A tenant's NAD that writes in the deviceID another pod was allocated: with the
/// kubelet's pod-resources API on the node, device mode must refuse it (the device
/// is not the attacker's) and the victim's interface stays as it was.
async fn other_pods_device(ctx: &Ctx, cluster: &AnyCluster) -> Outcome {
    let node = cluster.nodes()[0].clone();
    let victim = cluster
        .create_pod(named(
            fixture_pod(ctx, "seed/macvtap-pod.yaml")?,
            "victim",
            Some(&node),
        ))
        .await?;
    // Read on the victim's node: the kubelet's allocation (its checkpoint on a real
    // cluster); the victim's net1 is read from the node too (`pod_link`).
    let device = cluster
        .pod_devices(&victim)
        .await?
        .get(DATAPLANE)
        .and_then(|d| d.first())
        .cloned()
        .ok_or_else(|| Failure::msg(format!("the victim holds no {DATAPLANE} device")))?;
    let before = pod_link(cluster, &victim, "net1").await?;
    // No resourceName: the attacker's pod gets no device of its own, only the text.
    let stolen = NetworkAttachmentDefinition {
        metadata: Meta {
            name: "stolen".into(),
            namespace: victim.namespace.clone(),
            ..Default::default()
        },
        spec: NadSpec {
            config: json!({
                "cniVersion": "0.3.1",
                "name": "stolen",
                "type": "macvtap",
                "deviceID": device,
            })
            .to_string(),
        },
    };
    cluster.apply(vec![Object::Nad(stolen)]).await?;
    match cluster
        .create_pod(Pod::plain("attacker", &node, "stolen"))
        .await
    {
        Ok(p) => {
            cluster.delete_pod(&p.namespace, &p.name).await?;
            return fail(format!(
                "the attacker's pod started with the victim's device {device} (deviceID written in its NAD); the CNI must check the allocation with the kubelet's pod-resources API ({NO_POLICY})"
            ));
        }
        Err(e) => {
            let text = e.to_string();
            ensure(text.contains("not allocated to pod"), || {
                format!("the attacker's pod failed, but not for the device's owner: {text}")
            })?;
        }
    }
    let after = pod_link(cluster, &victim, "net1").await?;
    ensure(
        after["ifindex"] == before["ifindex"] && after["address"] == before["address"],
        || format!("the victim's net1 changed: before {before}, after {after}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attacks_name_the_node_lab_uplink() {
        let config = json!({"master": UPLINK, "deviceID": "<uplink>Mvp0", "mode": "bridge"});
        assert_eq!(
            config_on_node(&config, "eth7").unwrap(),
            json!({"master": "eth7", "deviceID": "eth7Mvp0", "mode": "bridge"})
        );
        assert_eq!(
            on_node("[macvtap]\nstandalone_masters = <uplink>\n", "eth7"),
            "[macvtap]\nstandalone_masters = eth7\n"
        );
    }
}
