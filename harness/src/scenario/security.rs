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

mod allocate_refusals;
mod hand_run;
mod initial_namespace;
mod ipam_error;
mod policy_keys;
mod races;
mod tap_numbering;

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
        "socket_file a second name (hard link) of the node's ovsdb-server",
        OvsAttack {
            socket: SocketChoice::HardLink,
            config: json!({"vlan": 100}),
            why: "the plugin may connect only to the sockets the node's policy lists, by the name it lists",
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
    list.push(
        Scenario::on_node_lab(
            "ovs/IPAM: a delegate's error passed on with its code; CNI_IFNAME taken while it ran",
            "ovs",
            "pod",
            &["cni", "ipam"],
            |ctx, nl| Box::pin(ipam_error::ipam_error_code(ctx, nl)),
        )
        .needs(&[Capability::Program("ovsdb-server")]),
    );
    list.extend(round_two());
    list.extend(ovs_round_two());
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
            Some(id) => cni_kit::naming::hashed_link_name(id),
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
    /// A hard link to it: a socket file itself, outside /proc, served by root, so
    /// only the policy's allow-list stops it.
    HardLink,
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
        SocketChoice::HardLink => {
            let link = scratch.path().join("db-alias.sock");
            std::fs::hard_link(&ovs.socket, &link)
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
        // Judged by effect (the victim's net1 below), not by wording: an
        // implementation may refuse for another reason (upstream finds the link
        // already in the victim's pod); what it said is reported.
        Err(e) => ctx
            .observed
            .note(&format!("the attacker's pod was refused: {e}")),
    }
    let after = pod_link(cluster, &victim, "net1").await?;
    ensure(
        after.index == before.index && after.mac == before.mac,
        || format!("the victim's net1 changed: before {before}, after {after}"),
    )
}

// ---- round two: the device number, fail-closed ownership checks, the policy file ----

/// The macvtap attacks of the second review (issue 28), each as played by hand on
/// the release binaries; see each function for the attack.
fn round_two() -> Vec<Scenario> {
    let mut list = vec![
        lab(
            "/dev/tapN held by a pod's own macvtap of the same ifindex",
            |ctx, nl| Box::pin(tap_number_in_cni(ctx, nl)),
        ),
        lab(
            "pod-resources answering ResourceExhausted (rate limit)",
            |ctx, nl| Box::pin(kubelet_fails_open(ctx, nl, FakeAnswer::RateLimited)),
        ),
        lab("pod-resources answering after 3 s", |ctx, nl| {
            Box::pin(kubelet_fails_open(
                ctx,
                nl,
                FakeAnswer::Late(Duration::from_secs(3)),
            ))
        }),
        lab(
            "a link the pod made under the device plugin's name and mark",
            |ctx, nl| Box::pin(adopted_link_stays_in_the_pod(ctx, nl)),
        ),
        lab("CNI_NETNS the node's own namespace (ADD)", |ctx, nl| {
            Box::pin(own_netns(ctx, nl, "ADD"))
        }),
        lab("CNI_NETNS the node's own namespace (DEL)", |ctx, nl| {
            Box::pin(own_netns(ctx, nl, "DEL"))
        }),
        lab("CNI_IFNAME net%d (the kernel's template)", |ctx, nl| {
            Box::pin(ifname_template(ctx, nl))
        }),
        lab(
            "an MTU error that would name the lower device and its MTU",
            |ctx, nl| Box::pin(mtu_error_names_nothing(ctx, nl)),
        ),
        lab("the LAN gateway's MAC with [mac] forbidden", |ctx, nl| {
            Box::pin(gateway_mac(ctx, nl))
        }),
    ];
    for file in [
        PolicyFile::Fifo,
        PolicyFile::Relative,
        PolicyFile::Symlink,
        PolicyFile::DirOwnedByUser,
        PolicyFile::Huge,
    ] {
        list.push(lab(file.attack(), move |ctx, nl| {
            Box::pin(untrusted_policy_file(ctx, nl, file))
        }));
    }
    list.push(
        Scenario::on_node_lab(
            "security/macvtap: the device plugin numbers taps the kernel's way in the machine's network namespace, out of reach in a node's",
            "macvtap",
            "pod",
            &["security", "deviceplugin"],
            |ctx, nl| Box::pin(initial_namespace::numbering_by_namespace(ctx, nl)),
        ),
    );
    list.push(Scenario::on_node_lab(
        "security/macvtap: the node has a link at the device plugin's first-choice index (the kernel refuses it)",
        "macvtap",
        "pod",
        &["security", "deviceplugin"],
        |ctx, nl| Box::pin(allocate_refusals::index_taken_in_node(ctx, nl)),
    ));
    list.push(Scenario::on_node_lab(
        "security/macvtap: the device plugin's lower device is a bridge port (the kernel refuses every macvtap)",
        "macvtap",
        "pod",
        &["security", "deviceplugin"],
        |ctx, nl| Box::pin(allocate_refusals::lower_is_bridge_port(ctx, nl)),
    ));
    list.push(Scenario::on_node_lab(
        "security/macvtap: /dev/tapN held at every index the device plugin tries (Allocate must answer)",
        "macvtap",
        "pod",
        &["security", "deviceplugin"],
        |ctx, nl| Box::pin(allocate_refusals::every_choice_squatted(ctx, nl)),
    ));
    list.push(lab(
        "a DEL whose macvtap vanishes between its lookup and its delete (window held open under strace)",
        |ctx, nl| Box::pin(races::del_link_gone_mid_delete(ctx, nl)),
    ));
    list.push(
        Scenario::on_cluster(
            "security/macvtap: /dev/tapN at the node's next ifindexes held by a pod (device plugin)",
            "macvtap",
            "pod",
            &["security", "cni", "deviceplugin"],
            |ctx, c| Box::pin(tap_number_at_allocate(ctx, c)),
        )
        .needs(&[Capability::NodeAccess, Capability::PluginExec])
        .deploy_macvtap_seed(),
    );
    list.push(
        Scenario::on_cluster(
            "security/macvtap: a neighbour namespace's kernel-numbered macvtap at the victim's ifindex (device plugin)",
            "macvtap",
            "pod",
            &["security", "deviceplugin"],
            |ctx, c| Box::pin(tap_numbering::neighbour_kernel_numbering(ctx, c)),
        )
        .needs(&[
            Capability::NodeAccess,
            Capability::PluginExec,
            Capability::DevicePluginConfig,
        ])
        .deploy_macvtap_seed(),
    );
    list.push(
        Scenario::on_cluster(
            "security/macvtap: /dev/tapN at the device plugin's first-choice indexes held by a pod",
            "macvtap",
            "pod",
            &["security", "deviceplugin"],
            |ctx, c| Box::pin(tap_numbering::first_choices_held(ctx, c)),
        )
        .needs(&[
            Capability::NodeAccess,
            Capability::PluginExec,
            Capability::DevicePluginConfig,
        ])
        .deploy_macvtap_seed(),
    );
    list.push(
        Scenario::on_cluster(
            format!(
                "security/macvtap: {} ListAndWatch streams on {FLOOD_CONNECTIONS} connections to the device plugin's socket",
                FLOOD_CONNECTIONS * FLOOD_STREAMS
            ),
            "macvtap",
            "pod",
            &["security", "deviceplugin"],
            |ctx, c| Box::pin(device_plugin_flood(ctx, c)),
        )
        .needs(&[Capability::DevicePluginConfig])
        .deploy_macvtap_seed(),
    );
    list
}

/// The flood: enough streams that a server without limits grows far past
/// [`FLOOD_RSS_BOUND`] (an uncapped tonic server measured ~2.4 KiB per held stream:
/// 100,000 streams took it from 10 to 243 MiB), few enough to take seconds.
const FLOOD_CONNECTIONS: u32 = 200;
const FLOOD_STREAMS: u32 = 200;
/// How long the flood is held while the plugin's memory is sampled.
const FLOOD_HOLD: Duration = Duration::from_secs(4);
/// How much the plugin's RSS may grow above its baseline under the flood.
const FLOOD_RSS_BOUND_MIB: f64 = 48.0;
/// How long a fresh client may take to be served after the flood let go.
const FLOOD_RECOVERY: Duration = Duration::from_secs(10);

/// LOW. A pod with the device plugin's socket (or a process on the node) opens
/// thousands of ListAndWatch streams on hundreds of connections and holds them:
/// the plugin must stay up, its memory bounded, and once the flood lets go a new
/// client (the kubelet after a restart) must get its devices listed.
async fn device_plugin_flood(ctx: &Ctx, cluster: &AnyCluster) -> Outcome {
    use crate::kubelet::stream_flood::{Flood, rss_mib};
    let node = cluster.nodes()[0].clone();
    let plugin = cluster.device_plugin_process(&node).await?;
    let socket = resource_socket(&plugin.socket_dir, DATAPLANE)?;
    let baseline = rss_mib(plugin.pid);
    let flood = Flood::open(&socket, FLOOD_CONNECTIONS, FLOOD_STREAMS).await;
    let mut peak = rss_mib(plugin.pid);
    let until = tokio::time::Instant::now() + FLOOD_HOLD;
    while tokio::time::Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(250)).await;
        peak = peak.max(rss_mib(plugin.pid));
    }
    let alive = process_alive(plugin.pid as i32);
    let held = format!(
        "{} streams asked on {} connections ({} refused at connect), {} answered",
        flood.asked(),
        flood.connections,
        flood.refused_connections,
        flood.served()
    );
    drop(flood);
    ctx.observed.note(&format!(
        "device plugin RSS {baseline:.1} MiB before, {peak:.1} MiB at the peak of the flood; {held}"
    ));
    ensure(alive, || {
        format!(
            "the device plugin (pid {}) died under the flood: {held}",
            plugin.pid
        )
    })?;
    ensure(peak - baseline <= FLOOD_RSS_BOUND_MIB, || {
        format!(
            "the device plugin's RSS grew from {baseline:.1} to {peak:.1} MiB under the flood (bound: {FLOOD_RSS_BOUND_MIB} MiB above its baseline; the gRPC server needs stream and connection limits): {held}"
        )
    })?;
    let devices = list_devices_again(&socket).await?;
    ctx.observed.note(&format!(
        "after the flood a new client got {devices} devices from ListAndWatch"
    ));
    Ok(())
}

/// The socket in `dir` serving `resource` (`<prefix>/<name>`): the one whose file
/// name ends with `_<name>`, with or without `.sock`.
fn resource_socket(dir: &Path, resource: &str) -> Result<std::path::PathBuf, Failure> {
    let name = resource.rsplit('/').next().unwrap_or(resource);
    let entries = std::fs::read_dir(dir)
        .map_err(|e| Failure::caused(format!("failed to list {}", dir.display()), e))?;
    entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|f| f.to_str())
                .map(|f| f.trim_end_matches(".sock"))
                .is_some_and(|f| f.ends_with(&format!("_{name}")))
        })
        .ok_or_else(|| {
            Failure::msg(format!(
                "no socket for {resource} in the device plugin directory {}",
                dir.display()
            ))
        })
}

/// A new client, as the kubelet would connect: the first ListAndWatch answer's
/// device count, retried within [`FLOOD_RECOVERY`] (the plugin may still be closing
/// the flood's connections).
async fn list_devices_again(socket: &Path) -> Result<usize, Failure> {
    use deviceplugin_api::uds;
    use deviceplugin_api::v1beta1::Empty;
    use deviceplugin_api::v1beta1::device_plugin_client::DevicePluginClient;
    let until = tokio::time::Instant::now() + FLOOD_RECOVERY;
    let mut last = String::new();
    while tokio::time::Instant::now() < until {
        let attempt = async {
            let channel = uds::connect(socket, Duration::from_secs(2))
                .await
                .map_err(|e| e.to_string())?;
            let mut stream = DevicePluginClient::new(channel)
                .list_and_watch(Empty {})
                .await
                .map_err(|e| e.to_string())?
                .into_inner();
            let answer: Result<usize, String> = match stream.message().await {
                Ok(Some(list)) if !list.devices.is_empty() => Ok(list.devices.len()),
                Ok(Some(_)) => Err("an empty device list".to_string()),
                Ok(None) => Err("the stream ended without a device list".to_string()),
                Err(e) => Err(e.to_string()),
            };
            answer
        };
        match tokio::time::timeout(Duration::from_secs(3), attempt).await {
            Ok(Ok(n)) => return Ok(n),
            Ok(Err(e)) => last = e,
            Err(_) => last = "no answer within 3 s".into(),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    fail(format!(
        "after the flood let go, a new client got no device list from {} within {FLOOD_RECOVERY:?}: {last}",
        socket.display()
    ))
}

/// A macvtap attack the scenario plays on a node lab itself.
fn lab<F>(name: &str, run: F) -> Scenario
where
    F: for<'a> Fn(&'a Ctx, &'a mut NodeLab) -> futures::future::BoxFuture<'a, Outcome>
        + Send
        + Sync
        + 'static,
{
    Scenario::on_node_lab(
        format!("security/macvtap: {name}"),
        "macvtap",
        "pod",
        &["security", "cni"],
        run,
    )
}

/// What `/dev/tap<index>` is on this machine: device number, owner, group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct TapNode {
    rdev: u64,
    uid: u32,
    gid: u32,
}

impl std::fmt::Display for TapNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "char {}:{} owned by {}:{}",
            nix::sys::stat::major(self.rdev),
            nix::sys::stat::minor(self.rdev),
            self.uid,
            self.gid
        )
    }
}

fn tap_node(index: u32) -> Option<TapNode> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::symlink_metadata(format!("/dev/tap{index}")).ok()?;
    Some(TapNode {
        rdev: m.rdev(),
        uid: m.uid(),
        gid: m.gid(),
    })
}

/// `/dev/tap<index>` once devtmpfs made it (it does so asynchronously).
async fn wait_tap_node(index: u32) -> Result<TapNode, Failure> {
    use crate::cluster::wait::{Pace, Seen, until};
    let what = format!("/dev/tap{index} to appear (is devtmpfs mounted on /dev?)");
    let node = until(
        what,
        Duration::from_secs(2),
        Pace::every(Duration::from_millis(10)),
        || async {
            Ok(match tap_node(index) {
                Some(node) => Seen::Ready(node),
                None => Seen::NotYet("absent".into()),
            })
        },
    )
    .await?;
    Ok(node)
}

/// An ifindex no namespace of this machine uses and whose `/dev/tapN` is free,
/// derived from the scenario (so parallel scenarios pick different ones).
fn free_tap_index(ctx: &Ctx) -> u32 {
    let key = format!("{}/{}", ctx.run_id, ctx.scope);
    let start = (xxhash_rust::xxh64::xxh64(key.as_bytes(), 28) % (1 << 24)) as u32;
    (0..4096)
        .map(|i| 300_000_000 + (start + i * 613) % (1 << 24))
        .find(|i| tap_node(*i).is_none())
        .unwrap_or(300_000_000 + start)
}

/// The attacker's side, in a namespace of its own (a pod with NET_ADMIN): a dummy
/// lower device and a macvtap on it at `index`, whose `/dev/tap<index>` it now holds.
async fn attacker_macvtap(
    ip: impl Fn(&[&str]) -> Result<String, Failure>,
    lower: &str,
    index: u32,
) -> Result<TapNode, Failure> {
    let idx = index.to_string();
    let name = format!("atk{index}");
    let name = &name[..name.len().min(15)];
    ip(&[
        "link", "add", name, "index", &idx, "link", lower, "type", "macvtap", "mode", "bridge",
    ])?;
    wait_tap_node(index).await
}

/// The device plugin's part, played by hand: its macvtap for `id` on the uplink at
/// `index`, under the hashed name, marked, up.
fn device_link_at(nl: &NodeLab, id: &str, index: u32) -> Result<String, Failure> {
    let name = cni_kit::naming::hashed_link_name(id);
    let idx = index.to_string();
    let uplink = nl.uplink().to_string();
    let mark = format!("{}{id}", cni_kit::policy::DEVICE_PLUGIN_ALIAS_PREFIX);
    for args in [
        vec![
            "link", "add", &name, "index", &idx, "link", &uplink, "type", "macvtap", "mode",
            "bridge",
        ],
        vec!["link", "set", &name, "alias", &mark],
        vec!["link", "set", &name, "up"],
    ] {
        nl.lab.ip(&nl.node, &args).map_err(lab_failure)?;
    }
    Ok(name)
}

/// HIGH. devtmpfs names a macvtap's device after its ifindex, which is per
/// namespace: the attacker makes a macvtap at the ifindex the device plugin's link
/// has (or will get) on the node, so `/dev/tapN` is the attacker's device. ADD for
/// the victim must not hand that node to the VM's user (107): frames the VM wrote
/// would leave through the attacker's link.
async fn tap_number_in_cni(ctx: &Ctx, nl: &mut NodeLab) -> Outcome {
    let scratch = scratch_dir(ctx, "sec")?;
    let attacker = nl.pod("attacker").map_err(lab_failure)?;
    let victim = nl.pod("pod").map_err(lab_failure)?;
    let index = free_tap_index(ctx);
    nl.lab
        .ip(
            &attacker,
            &[
                "link", "add", "lower0", "type", "veth", "peer", "name", "lower1",
            ],
        )
        .map_err(lab_failure)?;
    let held = attacker_macvtap(
        |a| nl.lab.ip(&attacker, a).map_err(lab_failure),
        "lower0",
        index,
    )
    .await?;
    let id = format!("{}Mvp0", nl.uplink());
    device_link_at(nl, &id, index)?;
    let policy = node_policy(&scratch, None)?;
    let config = json!({"cniVersion": "0.4.0", "name": "tenant-net", "type": "macvtap",
        "deviceID": id, "owner": 107, "group": 107});
    let call = Call::new(ctx.plugin("macvtap"), "ADD", config)
        .container(
            &format!("{}-cid", victim.name),
            Some(&victim.path_str()),
            "net1",
        )
        .env(POLICY_ENV, &policy);
    let reply = exec(&call, Some(&nl.node_ns)).await?;
    let after = tap_node(index);
    if after != Some(held) {
        return fail(format!(
            "ADD handed the attacker's /dev/tap{index} ({held}, a macvtap in the attacker's own namespace) to the VM's user: now {} (upstream does no device-number check): {}",
            after.map_or("gone".into(), |n| n.to_string()),
            described(&reply)
        ));
    }
    if reply.success {
        let mut del = call.clone();
        del.command = "DEL".into();
        let _ = exec(&del, Some(&nl.node_ns)).await;
        return fail(format!(
            "ADD succeeded although /dev/tap{index} is the attacker's device ({held}): {}",
            described(&reply)
        ));
    }
    ctx.observed
        .note(&format!("refused: {}", described(&reply)));
    Ok(())
}

/// HIGH, at Allocate. The attacker reads the node's ifindex counter (a pod sees it
/// in its `eth0@ifNN`; here: a probe link on the node) and makes macvtaps in its own
/// namespace at the next indexes. A device plugin numbering its macvtaps the
/// kernel's way then returns `/dev/tapN` because the path exists, and the victim's
/// CNI chowns it: the attacker's nodes must keep their owner, and the victim's
/// interface must not be one of the attacker's devices.
async fn tap_number_at_allocate(ctx: &Ctx, cluster: &AnyCluster) -> Outcome {
    const AHEAD: u32 = 12;
    let node = cluster.nodes()[0].clone();
    let attacker = {
        let mut pod = Pod::plain("attacker", &node, "");
        pod.metadata.annotations.clear();
        cluster.create_pod(pod).await?
    };
    let attacker_ns = cluster.pod_namespace(&attacker).await?;
    let probe = format!("snp{}", &ctx.scope);
    cluster
        .node_ip(
            &node,
            &[
                "link",
                "add",
                &probe,
                "type",
                "veth",
                "peer",
                "name",
                &format!("{probe}p"),
            ],
        )
        .await?;
    let shown = cluster
        .node_ip(&node, &["-j", "link", "show", &probe])
        .await;
    cluster.node_ip(&node, &["link", "del", &probe]).await?;
    let counter = crate::probe::ip::links(&shown?)?
        .first()
        .map(|l| l.index)
        .ok_or_else(|| Failure::msg("the probe link on the node has no ifindex"))?;
    cluster
        .ns_ip(
            &attacker_ns,
            &[
                "link", "add", "lower0", "type", "veth", "peer", "name", "lower1",
            ],
        )
        .await?;
    let mut held = Vec::new();
    for index in counter + 1..=counter + AHEAD {
        if tap_node(index).is_some() {
            continue;
        }
        let (idx, name) = (index.to_string(), format!("atk{index}"));
        cluster
            .ns_ip(
                &attacker_ns,
                &[
                    "link", "add", &name, "index", &idx, "link", "lower0", "type", "macvtap",
                ],
            )
            .await?;
        held.push((index, wait_tap_node(index).await?));
    }
    ctx.observed.note(&format!(
        "node ifindex counter at {counter}; the attacker holds /dev/tapN for {:?}",
        held.iter().map(|(i, _)| i).collect::<Vec<_>>()
    ));
    let victim = cluster
        .create_pod(named(
            fixture_pod(ctx, "seed/macvtap-pod.yaml")?,
            "victim",
            Some(&node),
        ))
        .await;
    let taken: Vec<String> = held
        .iter()
        .filter_map(|(index, before)| {
            let now = tap_node(*index);
            (now != Some(*before)).then(|| {
                format!(
                    "/dev/tap{index} ({before} in the attacker's namespace) is now {}",
                    now.map_or("gone".into(), |n| n.to_string())
                )
            })
        })
        .collect();
    if !taken.is_empty() {
        return fail(format!(
            "the victim's macvtap was handed out as the attacker's device (upstream numbers macvtaps the kernel's way and checks no device number): {}",
            taken.join("; ")
        ));
    }
    match victim {
        Ok(v) => {
            let net1 = pod_link(cluster, &v, "net1").await?;
            let index = net1.index;
            ensure(!held.iter().any(|(i, _)| *i == index), || {
                format!(
                    "the victim's net1 has ifindex {index}, whose /dev/tap{index} is the attacker's"
                )
            })?;
            ctx.observed.note(&format!(
                "the victim's net1 got ifindex {index}, outside the attacker's range"
            ));
            Ok(())
        }
        // Refusing the victim is safe too (the attacker only denied service).
        Err(e) => {
            ctx.observed.note(&format!(
                "the victim's pod was refused: {}",
                short(&e.to_string())
            ));
            Ok(())
        }
    }
}

/// How the fake kubelet answers `List`.
#[derive(Debug, Clone, Copy)]
pub enum FakeAnswer {
    /// `ResourceExhausted "rejected by rate limit"`, as the real kubelet answers
    /// beyond 100 calls a second (bursts of 10).
    RateLimited,
    /// `n` rate-limited answers, then the pods the fake was given.
    RateLimitedThenList(u32),
    /// The list, after this long.
    Late(Duration),
}

/// A kubelet pod-resources server on a Unix socket that answers `List` as told
/// (and lists the pods it was given): the real gRPC socket, the kubelet's answers
/// when it is busy or slow. Stopped (socket removed) on drop.
pub struct FakeKubelet {
    socket: std::path::PathBuf,
    calls: std::sync::Arc<std::sync::atomic::AtomicU32>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeKubelet {
    /// Serves on `socket`; `pods` are `(namespace, name, resource, device IDs)`.
    pub fn start(
        socket: &Path,
        answer: FakeAnswer,
        pods: Vec<(String, String, String, Vec<String>)>,
    ) -> Result<FakeKubelet, Failure> {
        use deviceplugin_api::podresources::v1 as pr;
        let listener = deviceplugin_api::uds::bind(socket)
            .map_err(|e| Failure::caused("failed to serve the fake kubelet", e))?;
        let calls = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        let list = pr::ListPodResourcesResponse {
            pod_resources: pods
                .into_iter()
                .map(|(namespace, name, resource, ids)| pr::PodResources {
                    name,
                    namespace,
                    containers: vec![pr::ContainerResources {
                        name: "compute".into(),
                        devices: vec![pr::ContainerDevices {
                            resource_name: resource,
                            device_ids: ids,
                            topology: None,
                        }],
                    }],
                })
                .collect(),
        };
        let service = pr::pod_resources_lister_server::PodResourcesListerServer::new(FakeLister {
            answer,
            list,
            calls: calls.clone(),
        });
        let task = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .serve_with_incoming(service, deviceplugin_api::uds::incoming(listener))
                .await;
        });
        Ok(FakeKubelet {
            socket: socket.to_path_buf(),
            calls,
            task,
        })
    }

    /// How many `List` calls it answered.
    pub fn calls(&self) -> u32 {
        self.calls.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Drop for FakeKubelet {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.socket);
    }
}

struct FakeLister {
    answer: FakeAnswer,
    list: deviceplugin_api::podresources::v1::ListPodResourcesResponse,
    calls: std::sync::Arc<std::sync::atomic::AtomicU32>,
}

#[tonic::async_trait]
impl deviceplugin_api::podresources::v1::pod_resources_lister_server::PodResourcesLister
    for FakeLister
{
    async fn list(
        &self,
        _: tonic::Request<deviceplugin_api::podresources::v1::ListPodResourcesRequest>,
    ) -> Result<
        tonic::Response<deviceplugin_api::podresources::v1::ListPodResourcesResponse>,
        tonic::Status,
    > {
        let n = self
            .calls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        let limited = || tonic::Status::resource_exhausted("rejected by rate limit");
        match self.answer {
            FakeAnswer::RateLimited => Err(limited()),
            FakeAnswer::RateLimitedThenList(k) if n <= k => Err(limited()),
            FakeAnswer::RateLimitedThenList(_) => Ok(tonic::Response::new(self.list.clone())),
            FakeAnswer::Late(after) => {
                tokio::time::sleep(after).await;
                Ok(tonic::Response::new(self.list.clone()))
            }
        }
    }

    async fn get(
        &self,
        _: tonic::Request<deviceplugin_api::podresources::v1::GetPodResourcesRequest>,
    ) -> Result<
        tonic::Response<deviceplugin_api::podresources::v1::GetPodResourcesResponse>,
        tonic::Status,
    > {
        Err(tonic::Status::unimplemented(
            "the fake kubelet answers List only",
        ))
    }
}

/// MEDIUM. Another pod holds the device; the attacker's NAD names its deviceID.
/// The kubelet's socket is there but answers as a busy kubelet does (rate limited)
/// or late: the check must refuse, not let the NAD through.
async fn kubelet_fails_open(ctx: &Ctx, nl: &mut NodeLab, answer: FakeAnswer) -> Outcome {
    let scratch = scratch_dir(ctx, "sec")?;
    let pod = nl.pod("pod").map_err(lab_failure)?;
    let id = format!("{}Mvp0", nl.uplink());
    nl.device_link(&cni_kit::naming::hashed_link_name(&id))
        .map_err(lab_failure)?;
    let socket = scratch.path().join("pod-resources.sock");
    let kubelet = FakeKubelet::start(
        &socket,
        answer,
        vec![(
            "tenant".into(),
            "victim".into(),
            DATAPLANE.into(),
            vec![id.clone()],
        )],
    )?;
    let policy = node_policy(
        &scratch,
        Some(&format!(
            "[macvtap]\npod_resources_socket = {}\n",
            socket.display()
        )),
    )?;
    let config = json!({"deviceID": id});
    let before = macvtap_state(nl, &pod)?;
    let cfg = json!({"cniVersion": "0.4.0", "name": "stolen", "type": "macvtap", "deviceID": id});
    let mut call = Call::new(ctx.plugin("macvtap"), "ADD", cfg)
        .container(&format!("{}-cid", pod.name), Some(&pod.path_str()), "net1")
        .args("IgnoreUnknown=1;K8S_POD_NAMESPACE=tenant;K8S_POD_NAME=attacker;K8S_POD_INFRA_CONTAINER_ID=c")
        .env(POLICY_ENV, &policy);
    call.timeout = Duration::from_secs(30);
    let reply = exec(&call, Some(&nl.node_ns)).await?;
    let after = macvtap_state(nl, &pod)?;
    ctx.observed.note(&format!(
        "the fake kubelet ({answer:?}) answered {} List calls in {:?}",
        kubelet.calls(),
        reply.elapsed
    ));
    verdict(
        nl,
        &call,
        &reply,
        format!("the victim's deviceID {id} attached to another pod while the kubelet answered {answer:?}"),
        "where the kubelet's socket exists the pod-resources check must fail closed",
        &config,
        before,
        after,
    )
    .await
}

/// LOW. A link under the device plugin's name and mark found in the pod (made by
/// the pod itself with NET_ADMIN, on its own lower device) is taken as left over
/// from an interrupted ADD; when ADD then fails it must not be moved into the host
/// namespace, where it would pass for the device plugin's link.
async fn adopted_link_stays_in_the_pod(ctx: &Ctx, nl: &mut NodeLab) -> Outcome {
    let scratch = scratch_dir(ctx, "sec")?;
    let pod = nl.pod("pod").map_err(lab_failure)?;
    let id = format!("{}Mvp0", nl.uplink());
    let name = cni_kit::naming::hashed_link_name(&id);
    let mark = format!("{}{id}", cni_kit::policy::DEVICE_PLUGIN_ALIAS_PREFIX);
    for args in [
        vec![
            "link", "add", "lower0", "type", "veth", "peer", "name", "lower1",
        ],
        vec!["link", "add", &name, "link", "lower0", "type", "macvtap"],
        vec!["link", "set", &name, "alias", &mark],
        // CNI_IFNAME taken already: ADD fails after finding the link.
        vec![
            "link", "add", "net1", "type", "veth", "peer", "name", "net1p",
        ],
    ] {
        nl.lab.ip(&pod, &args).map_err(lab_failure)?;
    }
    let policy = node_policy(&scratch, None)?;
    let cfg =
        json!({"cniVersion": "0.4.0", "name": "tenant-net", "type": "macvtap", "deviceID": id});
    let call = Call::new(ctx.plugin("macvtap"), "ADD", cfg)
        .container(&format!("{}-cid", pod.name), Some(&pod.path_str()), "net1")
        .env(POLICY_ENV, &policy);
    let reply = exec(&call, Some(&nl.node_ns)).await?;
    if nl.link(&nl.node, &name).is_some() {
        return fail(format!(
            "the pod's own macvtap {name} is now in the node's namespace under the device plugin's name ({})",
            described(&reply)
        ));
    }
    ctx.observed.note(&described(&reply));
    Ok(())
}

/// LOW. The runtime's CNI_NETNS is the node's own namespace: ADD would rename a
/// host macvtap, DEL delete one. Both must be refused and the host link stay.
async fn own_netns(ctx: &Ctx, nl: &mut NodeLab, command: &str) -> Outcome {
    let scratch = scratch_dir(ctx, "sec")?;
    let pod = nl.pod("pod").map_err(lab_failure)?;
    let id = format!("{}Mvp0", nl.uplink());
    let name = cni_kit::naming::hashed_link_name(&id);
    nl.device_link(&name).map_err(lab_failure)?;
    let policy = node_policy(&scratch, None)?;
    let cfg =
        json!({"cniVersion": "0.4.0", "name": "tenant-net", "type": "macvtap", "deviceID": id});
    // ADD as net1; DEL of the host macvtap by its own name.
    let ifname = if command == "DEL" {
        name.as_str()
    } else {
        "net1"
    };
    let mut call = Call::new(ctx.plugin("macvtap"), command, cfg.clone())
        .container(
            &format!("{}-cid", pod.name),
            Some(&nl.node.path_str()),
            ifname,
        )
        .env(POLICY_ENV, &policy);
    call.command = command.into();
    let before = macvtap_state(nl, &pod)?;
    let reply = exec(&call, Some(&nl.node_ns)).await?;
    let after = macvtap_state(nl, &pod)?;
    if command == "DEL" {
        return ensure(before == after, || {
            format!(
                "DEL with CNI_NETNS the node's own namespace changed the node (upstream deletes any link named CNI_IFNAME there):\n  before {before:?}\n  after  {after:?}"
            )
        });
    }
    verdict(
        nl,
        &call,
        &reply,
        "ADD into the node's own namespace was accepted".into(),
        "CNI_NETNS must be a container's namespace, never the node's",
        &cfg,
        before,
        after,
    )
    .await
}

/// LOW. `CNI_IFNAME=net%d`: the kernel takes `%d` as a template and names the link
/// `net0` (or the next free one), a name nobody asked for and the runtime does not
/// know about. Must be refused.
async fn ifname_template(ctx: &Ctx, nl: &mut NodeLab) -> Outcome {
    let scratch = scratch_dir(ctx, "sec")?;
    let pod = nl.pod("pod").map_err(lab_failure)?;
    let id = format!("{}Mvp0", nl.uplink());
    nl.device_link(&cni_kit::naming::hashed_link_name(&id))
        .map_err(lab_failure)?;
    let policy = node_policy(&scratch, None)?;
    let config = json!({"deviceID": id});
    let cfg =
        json!({"cniVersion": "0.4.0", "name": "tenant-net", "type": "macvtap", "deviceID": id});
    let call = Call::new(ctx.plugin("macvtap"), "ADD", cfg)
        .container(&format!("{}-cid", pod.name), Some(&pod.path_str()), "net%d")
        .env(POLICY_ENV, &policy);
    let before = macvtap_state(nl, &pod)?;
    let reply = exec(&call, Some(&nl.node_ns)).await?;
    let after = macvtap_state(nl, &pod)?;
    verdict(
        nl,
        &call,
        &reply,
        "CNI_IFNAME net%d was accepted".into(),
        "`%` in an interface name is the kernel's template",
        &config,
        before,
        after,
    )
    .await
}

/// LOW. A refusal must say what was refused, not what the node has: asking for
/// an MTU far above the lower device's must not reveal the lower device's name or
/// its MTU (a tenant could map the node's links by bisection).
async fn mtu_error_names_nothing(ctx: &Ctx, nl: &mut NodeLab) -> Outcome {
    let scratch = scratch_dir(ctx, "sec")?;
    let pod = nl.pod("pod").map_err(lab_failure)?;
    let uplink = nl.uplink().to_string();
    // A plain device ID (no lower device in it) and an MTU the uplink lacks.
    let id = "dataplaneMvp0";
    nl.device_link(&cni_kit::naming::hashed_link_name(id))
        .map_err(lab_failure)?;
    let mtu = nl
        .link(&nl.node, &uplink)
        .map(|l| l.mtu)
        .ok_or_else(|| Failure::msg(format!("no MTU for the node's {uplink}")))?;
    let policy = node_policy(&scratch, None)?;
    let cfg = json!({"cniVersion": "0.4.0", "name": "tenant-net", "type": "macvtap",
        "deviceID": id, "mtu": 65000});
    let call = Call::new(ctx.plugin("macvtap"), "ADD", cfg)
        .container(&format!("{}-cid", pod.name), Some(&pod.path_str()), "net1")
        .env(POLICY_ENV, &policy);
    let reply = exec(&call, Some(&nl.node_ns)).await?;
    if reply.success {
        let mut del = call.clone();
        del.command = "DEL".into();
        let _ = exec(&del, Some(&nl.node_ns)).await;
        return fail(format!(
            "mtu 65000 above the lower device's was accepted: {}",
            described(&reply)
        ));
    }
    let text = format!("{} {}", reply.stdout, reply.stderr);
    let told: Vec<String> = [uplink.clone(), format!("MTU {mtu}"), format!("mtu {mtu}")]
        .into_iter()
        .filter(|fact| text.contains(fact.as_str()))
        .collect();
    ctx.observed.note(&described(&reply));
    ensure(told.is_empty(), || {
        format!(
            "the refusal tells the tenant node facts {told:?}: {}",
            described(&reply)
        )
    })
}

/// LOW. The LAN gateway's MAC (here: the fabric's side of the node's uplink),
/// asked for through CNI_ARGS `MAC=`, with the node's policy forbidding it.
async fn gateway_mac(ctx: &Ctx, nl: &mut NodeLab) -> Outcome {
    let scratch = scratch_dir(ctx, "sec")?;
    let pod = nl.pod("pod").map_err(lab_failure)?;
    let id = format!("{}Mvp0", nl.uplink());
    nl.device_link(&cni_kit::naming::hashed_link_name(&id))
        .map_err(lab_failure)?;
    let gateway = nl
        .link(&nl.fabric, "port0")
        .and_then(|l| l.mac)
        .ok_or_else(|| Failure::msg("the fabric's port0 has no MAC"))?;
    let policy = node_policy(&scratch, Some(&format!("[mac]\nforbidden = {gateway}\n")))?;
    let config = json!({"deviceID": id, "CNI_ARGS MAC": gateway});
    let cfg =
        json!({"cniVersion": "0.4.0", "name": "tenant-net", "type": "macvtap", "deviceID": id});
    let call = Call::new(ctx.plugin("macvtap"), "ADD", cfg)
        .container(&format!("{}-cid", pod.name), Some(&pod.path_str()), "net1")
        .args(&format!("IgnoreUnknown=1;MAC={gateway}"))
        .env(POLICY_ENV, &policy);
    let before = macvtap_state(nl, &pod)?;
    let reply = exec(&call, Some(&nl.node_ns)).await?;
    let after = macvtap_state(nl, &pod)?;
    verdict(
        nl,
        &call,
        &reply,
        format!("the gateway's MAC {gateway} was taken"),
        "[mac] forbidden lists the MACs no pod may take",
        &config,
        before,
        after,
    )
    .await
}

/// How the node's policy file is not to be trusted.
#[derive(Debug, Clone, Copy)]
enum PolicyFile {
    /// A root-owned FIFO: reading it would block every ADD.
    Fifo,
    /// SECNET_PLUGIN_POLICY relative: resolved against whatever the runtime's cwd is.
    Relative,
    /// A symlink to the real policy (whoever can change the link chooses the policy).
    Symlink,
    /// A root-owned file in a directory a user owns: the user swaps the file.
    DirOwnedByUser,
    /// Far larger than a policy: not one.
    Huge,
}

impl PolicyFile {
    fn attack(self) -> &'static str {
        match self {
            PolicyFile::Fifo => "node policy a FIFO (ADD must not hang)",
            PolicyFile::Relative => "SECNET_PLUGIN_POLICY a relative path",
            PolicyFile::Symlink => "node policy a symlink",
            PolicyFile::DirOwnedByUser => "node policy in a directory a user owns (swap race)",
            PolicyFile::Huge => "node policy of 1 MiB",
        }
    }
}

/// LOW. The policy file itself is the attack: what it says (here: tap owner 0
/// allowed) must not count when the file could be someone else's, and reading it
/// must not hang. A NAD asking for owner 0 must be refused, quickly.
async fn untrusted_policy_file(ctx: &Ctx, nl: &mut NodeLab, file: PolicyFile) -> Outcome {
    let scratch = scratch_dir(ctx, "sec")?;
    let pod = nl.pod("pod").map_err(lab_failure)?;
    let id = format!("{}Mvp0", nl.uplink());
    nl.device_link(&cni_kit::naming::hashed_link_name(&id))
        .map_err(lab_failure)?;
    let permissive = "[macvtap]\ntap_owners = 0, 107\ntap_groups = 0, 107\n";
    let io = |what: &str, e: std::io::Error| Failure::caused(format!("failed to {what}"), e);
    let dir = scratch.path();
    let path = match file {
        PolicyFile::Fifo => {
            let p = dir.join("plugins.conf");
            nix::unistd::mkfifo(&p, nix::sys::stat::Mode::from_bits_truncate(0o644))
                .map_err(|e| io("make the FIFO", e.into()))?;
            p.display().to_string()
        }
        PolicyFile::Relative => {
            node_policy(&scratch, Some(permissive))?;
            // Relative to the plugin's cwd (the harness's): as many `..` as it takes.
            let cwd = std::env::current_dir().map_err(|e| io("read the cwd", e))?;
            let up = "../".repeat(cwd.components().count());
            format!(
                "{up}{}",
                dir.join("plugins.conf")
                    .display()
                    .to_string()
                    .trim_start_matches('/')
            )
        }
        PolicyFile::Symlink => {
            let real = node_policy(&scratch, Some(permissive))?;
            let link = dir.join("link.conf");
            std::os::unix::fs::symlink(&real, &link).map_err(|e| io("make the symlink", e))?;
            link.display().to_string()
        }
        PolicyFile::DirOwnedByUser => {
            let theirs = dir.join("theirs");
            std::fs::create_dir(&theirs).map_err(|e| io("make the directory", e))?;
            let p = theirs.join("plugins.conf");
            std::fs::write(&p, permissive).map_err(|e| io("write the policy", e))?;
            nix::unistd::chown(&theirs, Some(nix::unistd::Uid::from_raw(65534)), None)
                .map_err(|e| io("chown the directory", e.into()))?;
            p.display().to_string()
        }
        PolicyFile::Huge => {
            let text = format!("{permissive}{}", "# padding\n".repeat(100_000));
            node_policy(&scratch, Some(&text))?
        }
    };
    let config = json!({"deviceID": id, "owner": 0, "group": 0});
    let cfg = json!({"cniVersion": "0.4.0", "name": "tenant-net", "type": "macvtap",
        "deviceID": id, "owner": 0, "group": 0});
    let mut call = Call::new(ctx.plugin("macvtap"), "ADD", cfg)
        .container(&format!("{}-cid", pod.name), Some(&pod.path_str()), "net1")
        .env(POLICY_ENV, &path);
    call.timeout = Duration::from_secs(10);
    let before = macvtap_state(nl, &pod)?;
    let reply = match exec(&call, Some(&nl.node_ns)).await {
        Ok(r) => r,
        Err(e) => {
            return fail(format!(
                "ADD with the policy {} did not return: {e}",
                file.attack()
            ));
        }
    };
    let after = macvtap_state(nl, &pod)?;
    verdict(
        nl,
        &call,
        &reply,
        format!("owner 0 was granted by an untrusted policy ({})", file.attack()),
        "only a root-owned regular file in root-owned directories, named by an absolute path, is the node's policy",
        &config,
        before,
        after,
    )
    .await
}

// ---- OVS, round two: the node's bridges, MTU, trunk size, IPAM deadline, GC, DEL ----

/// The second review's OVS attacks (issue 28) and DEL without ovsdb-server (issue 27).
fn ovs_round_two() -> Vec<Scenario> {
    let plays: [(&str, &[&'static str], OvsPlay); 10] = [
        (
            "a NAD on the node's external bridge (br-ex with the node's address), no bridges in the node policy",
            &["security", "cni"],
            OvsPlay::AddressBridge,
        ),
        (
            "a NAD on a bridge whose port is the node's default-route device",
            &["security", "cni"],
            OvsPlay::DefaultRouteBridge,
        ),
        (
            "mtu 68 on a node bridge the node policy lists",
            &["security", "cni", "mtu"],
            OvsPlay::MtuBelowBridge,
        ),
        (
            "mtu below the node policy's min_mtu",
            &["security", "cni", "mtu"],
            OvsPlay::BelowMinMtu,
        ),
        (
            "a 1.5 MB trunk list",
            &["security", "cni"],
            OvsPlay::HugeTrunk,
        ),
        (
            "an IPAM plugin whose child holds ADD past the deadline",
            &["security", "cni"],
            OvsPlay::IpamChildren,
        ),
        (
            "GC of another network with an empty valid-attachments list",
            &["security", "cni"],
            OvsPlay::GcOtherNetwork,
        ),
        (
            "DEL while ovsdb-server is down, without and with a cached attachment",
            &["security", "cni", "fault"],
            OvsPlay::DelWithoutOvsdb,
        ),
        (
            "the LAN gateway's MAC with [mac] forbidden",
            &["security", "cni"],
            OvsPlay::GatewayMac,
        ),
        (
            "every [ovs] policy key, allowed and refused",
            &["security", "cni"],
            OvsPlay::PolicyKeys,
        ),
    ];
    plays
        .into_iter()
        .map(|(name, labels, play)| {
            Scenario::on_node_lab(
                format!("security/ovs: {name}"),
                "ovs",
                "pod",
                labels,
                move |ctx, nl| Box::pin(ovs_play(ctx, nl, play)),
            )
            .needs(&[Capability::Program("ovsdb-server")])
        })
        .collect()
}

#[derive(Clone, Copy)]
enum OvsPlay {
    AddressBridge,
    DefaultRouteBridge,
    MtuBelowBridge,
    BelowMinMtu,
    HugeTrunk,
    IpamChildren,
    GcOtherNetwork,
    DelWithoutOvsdb,
    GatewayMac,
    PolicyKeys,
}

/// The node's external bridge in these attacks, with an address of the node.
const BR_EX: &str = "br-ex";
/// A documentation address (RFC 5737) standing for the node's own.
const NODE_ADDRESS: &str = "192.0.2.10/24";

/// One attack's stage: the node's OVS with `br1` (the secondary bridge pods may
/// use), a pod namespace, and the node policy allowing the node's socket plus
/// `policy_extra`.
struct OvsStage {
    scratch: ScratchDir,
    ovs: LabOvs,
    pod: Ns,
    policy: String,
}

impl OvsStage {
    fn new(ctx: &Ctx, nl: &mut NodeLab, policy_extra: &str) -> Result<OvsStage, Failure> {
        let scratch = scratch_dir(ctx, "sec")?;
        let ovs = lab_ovs(nl, &scratch.path().join("ovs"))?;
        ovs.add_bridge("br1")?;
        let pod = nl.pod("pod").map_err(lab_failure)?;
        let mut stage = OvsStage {
            scratch,
            ovs,
            pod,
            policy: String::new(),
        };
        stage.set_policy(policy_extra)?;
        Ok(stage)
    }

    /// The node policy: this node's socket, and `extra` lines of `[ovs]`.
    fn set_policy(&mut self, extra: &str) -> Outcome {
        let text = format!("[ovs]\nsockets = {}\n{extra}", self.ovs.socket.display());
        self.policy = node_policy(&self.scratch, Some(&text))?;
        Ok(())
    }

    /// ADD of the tenant's network `config` (over a VLAN-100 port on br1) as
    /// container `cid`, net1.
    fn call(&self, ctx: &Ctx, cid: &str, config: Value) -> Call {
        let mut cfg = json!({"cniVersion": "1.0.0", "name": "tenant-net", "type": "ovs",
            "bridge": "br1", "vlan": 100, "socket_file": format!("unix:{}", self.ovs.socket.display())});
        for (k, v) in config.as_object().cloned().unwrap_or_default() {
            cfg[k] = v;
        }
        let mut call = Call::new(ctx.plugin("ovs"), "ADD", cfg)
            .container(
                &format!("{}-{cid}", self.pod.name),
                Some(&self.pod.path_str()),
                "net1",
            )
            .env(POLICY_ENV, &self.policy);
        call.timeout = Duration::from_secs(30);
        call
    }
}

/// What an attack on `bridge` must leave as it was: the node's links, the pod's,
/// the bridge's ports and its own MTU.
fn bridge_state(nl: &NodeLab, stage: &OvsStage, bridge: &str) -> Result<Vec<String>, Failure> {
    let mut state = nl.links(&nl.node).map_err(lab_failure)?;
    state.push("--pod--".into());
    state.extend(nl.links(&stage.pod).map_err(lab_failure)?);
    state.push(format!("--{bridge} ports--"));
    state.extend(stage.ovs.ports(bridge)?);
    state.push(format!("{bridge} mtu {}", link_mtu(nl, bridge)));
    Ok(state)
}

fn link_mtu(nl: &NodeLab, name: &str) -> String {
    nl.link(&nl.node, name)
        .map(|l| l.mtu.to_string())
        .unwrap_or_else(|| "(no such link)".into())
}

fn with_command(call: &Call, command: &str) -> Call {
    let mut c = call.clone();
    command.clone_into(&mut c.command);
    c
}

/// A positive control: the same plugin, policy and pod, with a configuration the
/// node allows, must attach (and detach), so that a refusal above means something.
async fn control(nl: &NodeLab, call: &Call, what: &str) -> Outcome {
    let reply = exec(call, Some(&nl.node_ns)).await?;
    let del = exec(&with_command(call, "DEL"), Some(&nl.node_ns)).await?;
    ensure(reply.success, || {
        format!(
            "control: {what} ({}) must be accepted: {}",
            call.config,
            described(&reply)
        )
    })?;
    ensure(del.success, || {
        format!("control: DEL of {what} failed: {}", described(&del))
    })
}

/// A node bridge: `name` with the node's address on its own port.
fn address_bridge(nl: &NodeLab, stage: &OvsStage, name: &str) -> Outcome {
    stage.ovs.add_bridge(name)?;
    nl.lab
        .ip(&nl.node, &["addr", "add", NODE_ADDRESS, "dev", name])
        .map_err(lab_failure)?;
    nl.lab
        .ip(&nl.node, &["link", "set", name, "up"])
        .map_err(lab_failure)?;
    Ok(())
}

/// The CNI error's `msg` (or the whole output).
fn error_msg(reply: &Reply) -> String {
    reply
        .json()
        .and_then(|v| v["msg"].as_str().map(str::to_string))
        .unwrap_or_else(|| reply.stdout.trim().to_string())
}

async fn ovs_play(ctx: &Ctx, nl: &mut NodeLab, play: OvsPlay) -> Outcome {
    match play {
        OvsPlay::AddressBridge => address_bridge_attack(ctx, nl).await,
        OvsPlay::DefaultRouteBridge => default_route_bridge_attack(ctx, nl).await,
        OvsPlay::MtuBelowBridge => mtu_below_bridge(ctx, nl).await,
        OvsPlay::BelowMinMtu => below_min_mtu(ctx, nl).await,
        OvsPlay::HugeTrunk => huge_trunk(ctx, nl).await,
        OvsPlay::IpamChildren => ipam_children(ctx, nl).await,
        OvsPlay::GcOtherNetwork => gc_other_network(ctx, nl).await,
        OvsPlay::DelWithoutOvsdb => del_without_ovsdb(ctx, nl).await,
        OvsPlay::GatewayMac => ovs_gateway_mac(ctx, nl).await,
        OvsPlay::PolicyKeys => policy_keys::ovs_policy_keys(ctx, nl).await,
    }
}

/// `{"bridge":"br-ex","vlan":42,"mtu":68}` with no `bridges` in the policy: the
/// bridge holds the node's address, so it is refused and left as it was; the
/// refusal reads the same as for a bridge that does not exist (a tenant learns
/// neither), and the same NAD on br1 attaches.
async fn address_bridge_attack(ctx: &Ctx, nl: &mut NodeLab) -> Outcome {
    let stage = OvsStage::new(ctx, nl, "")?;
    address_bridge(nl, &stage, BR_EX)?;
    let attack = json!({"bridge": BR_EX, "vlan": 42, "mtu": 68});
    let call = stage.call(ctx, "brex", attack.clone());
    let before = bridge_state(nl, &stage, BR_EX)?;
    let reply = exec(&call, Some(&nl.node_ns)).await?;
    let after = bridge_state(nl, &stage, BR_EX)?;
    verdict(
        nl,
        &call,
        &reply,
        format!("the NAD {attack} on the node's external bridge was accepted"),
        "a bridge that carries the node's own address must be refused unless the node's policy lists it",
        &attack,
        before,
        after,
    )
    .await?;
    let missing = stage.call(
        ctx,
        "nobr",
        json!({"bridge": "br-none", "vlan": 42, "mtu": 68}),
    );
    let missing_reply = exec(&missing, Some(&nl.node_ns)).await?;
    let (ex, none) = (
        error_msg(&reply).replace(BR_EX, "<bridge>"),
        error_msg(&missing_reply).replace("br-none", "<bridge>"),
    );
    ensure(!missing_reply.success && ex == none, || {
        format!(
            "the refusals tell a tenant which bridges exist: for {BR_EX} {ex:?}, for a missing bridge {none:?}"
        )
    })?;
    control(
        nl,
        &stage.call(ctx, "br1", json!({"vlan": 42})),
        "vlan 42 on br1",
    )
    .await
}

/// A bridge with the node's default-route device as a port (no address on it):
/// refused by default, left as it was.
async fn default_route_bridge_attack(ctx: &Ctx, nl: &mut NodeLab) -> Outcome {
    let stage = OvsStage::new(ctx, nl, "")?;
    let (uplink, peer) = ("ens35", "ens35p");
    let ip = |args: &[&str]| nl.lab.ip(&nl.node, args).map_err(lab_failure);
    ip(&["link", "add", uplink, "type", "veth", "peer", "name", peer])?;
    ip(&["link", "set", uplink, "up"])?;
    ip(&["link", "set", peer, "up"])?;
    ip(&["route", "add", "default", "dev", uplink])?;
    stage.ovs.add_bridge("br-up")?;
    stage.ovs.vsctl(&["add-port", "br-up", uplink])?;
    let attack = json!({"bridge": "br-up", "vlan": 42});
    let call = stage.call(ctx, "brup", attack.clone());
    let before = bridge_state(nl, &stage, "br-up")?;
    let reply = exec(&call, Some(&nl.node_ns)).await?;
    let after = bridge_state(nl, &stage, "br-up")?;
    verdict(
        nl,
        &call,
        &reply,
        format!("the NAD {attack} on the bridge of the node's default route was accepted"),
        "a bridge that carries the node's uplink must be refused unless the node's policy lists it",
        &attack,
        before,
        after,
    )
    .await
}

/// The node's policy lists br-ex (pods may use it), but `mtu: 68` would lower the
/// bridge's own port, the node's: refused, the bridge's MTU unchanged, and the
/// refusal does not tell the bridge's MTU. The bridge's own MTU attaches.
async fn mtu_below_bridge(ctx: &Ctx, nl: &mut NodeLab) -> Outcome {
    let stage = OvsStage::new(ctx, nl, &format!("bridges = br1, {BR_EX}\n"))?;
    address_bridge(nl, &stage, BR_EX)?;
    let mtu = link_mtu(nl, BR_EX);
    let attack = json!({"bridge": BR_EX, "vlan": 42, "mtu": 68});
    let call = stage.call(ctx, "mtu", attack.clone());
    let before = bridge_state(nl, &stage, BR_EX)?;
    let reply = exec(&call, Some(&nl.node_ns)).await?;
    let after = bridge_state(nl, &stage, BR_EX)?;
    verdict(
        nl,
        &call,
        &reply,
        format!("the NAD {attack} was accepted"),
        "a port below the bridge's MTU lowers the bridge's own port, the node's",
        &attack,
        before,
        after,
    )
    .await?;
    let text = error_msg(&reply);
    ensure(!text.contains(&mtu), || {
        format!("the refusal tells the bridge's MTU {mtu}: {text:?}")
    })?;
    control(
        nl,
        &stage.call(
            ctx,
            "mtuok",
            json!({"bridge": BR_EX, "vlan": 42, "mtu": mtu.parse::<u32>().unwrap_or(1500)}),
        ),
        "the bridge's own MTU on br-ex",
    )
    .await
}

/// `[ovs] min_mtu = 1500`: `mtu: 1400` on br1 is refused, 1500 attaches.
async fn below_min_mtu(ctx: &Ctx, nl: &mut NodeLab) -> Outcome {
    let stage = OvsStage::new(ctx, nl, "min_mtu = 1500\n")?;
    let attack = json!({"mtu": 1400});
    let call = stage.call(ctx, "minmtu", attack.clone());
    let before = bridge_state(nl, &stage, "br1")?;
    let reply = exec(&call, Some(&nl.node_ns)).await?;
    let after = bridge_state(nl, &stage, "br1")?;
    verdict(
        nl,
        &call,
        &reply,
        format!("the NAD {attack} was accepted"),
        "the node's policy sets min_mtu = 1500",
        &attack,
        before,
        after,
    )
    .await?;
    control(
        nl,
        &stage.call(ctx, "minok", json!({"mtu": 1500})),
        "mtu 1500",
    )
    .await
}

/// The LAN gateway's MAC (the fabric's side of the node's uplink), asked for
/// through CNI_ARGS `MAC=` and through runtimeConfig `mac`, with the node's policy
/// forbidding it: refused, the node unchanged, the refusal naming the MAC and the
/// policy key. Control: another MAC attaches.
async fn ovs_gateway_mac(ctx: &Ctx, nl: &mut NodeLab) -> Outcome {
    let gateway = nl
        .link(&nl.fabric, "port0")
        .and_then(|l| l.mac)
        .ok_or_else(|| Failure::msg("the fabric's port0 has no MAC"))?;
    let stage = OvsStage::new(ctx, nl, &format!("[mac]\nforbidden = {gateway}\n"))?;
    let attacks = [
        (
            json!({"CNI_ARGS MAC": gateway}),
            stage
                .call(ctx, "gwargs", json!({}))
                .args(&format!("IgnoreUnknown=1;MAC={gateway}")),
        ),
        (
            json!({"runtimeConfig": {"mac": gateway}}),
            stage.call(ctx, "gwrc", json!({"runtimeConfig": {"mac": gateway}})),
        ),
    ];
    for (shown, call) in attacks {
        let before = bridge_state(nl, &stage, "br1")?;
        let reply = exec(&call, Some(&nl.node_ns)).await?;
        let after = bridge_state(nl, &stage, "br1")?;
        verdict(
            nl,
            &call,
            &reply,
            format!("the gateway's MAC {gateway} was taken"),
            "[mac] forbidden lists the MACs no pod may take",
            &shown,
            before,
            after,
        )
        .await?;
        // The MAC, the range of the policy that holds it, and the key: what the
        // admin looks up.
        let text = error_msg(&reply).to_lowercase();
        let gw = gateway.to_lowercase();
        ensure(
            text.contains(&gw)
                && text.contains(&format!("range {gw}"))
                && text.contains("[mac] forbidden"),
            || {
                format!(
                    "the refusal must name the MAC refused, the forbidden range holding it and the policy key: {}",
                    described(&reply)
                )
            },
        )?;
    }
    control(
        nl,
        &stage
            .call(ctx, "gwok", json!({}))
            .args("IgnoreUnknown=1;MAC=02:00:00:5e:00:42"),
        "another MAC, 02:00:00:5e:00:42",
    )
    .await
}

/// How long a refusal of a huge configuration may take. Expanding the ranges before
/// refusing took 36 s of wall time per ADD (3.4 s of CPU); a refusal before
/// expansion takes ~0.5 s idle and was seen at 3 s on a loaded 2-core machine, so
/// the bound sits far from both: it catches the expansion, not a busy machine.
const HUGE_NAD_BUDGET: Duration = Duration::from_secs(12);

/// 60,000 trunk ranges of 1-4094 (1.5 MB): refused within [`HUGE_NAD_BUDGET`] both
/// where trunks are not allowed and where they are (the entry cap), node unchanged;
/// a three-entry trunk attaches where trunks are allowed.
async fn huge_trunk(ctx: &Ctx, nl: &mut NodeLab) -> Outcome {
    let entries: Vec<Value> = (0..60_000)
        .map(|_| json!({"minID": 1, "maxID": 4094}))
        .collect();
    let attack = json!({"trunk": entries});
    let size = attack.to_string().len();
    let mut timings = Vec::new();
    let mut stage = OvsStage::new(ctx, nl, "")?;
    for (policy, why) in [
        (
            "",
            "trunks are not allowed: the policy must refuse before expanding ranges",
        ),
        (
            "trunk = true\n",
            "trunk lists are capped ([ovs] max_trunk_entries)",
        ),
    ] {
        stage.set_policy(policy)?;
        let call = without_vlan(stage.call(ctx, "trunk", attack.clone()));
        let before = bridge_state(nl, &stage, "br1")?;
        let reply = exec(&call, Some(&nl.node_ns)).await?;
        let after = bridge_state(nl, &stage, "br1")?;
        let shown = json!({"trunk": format!("[60000 × 1-4094, {size} bytes]")});
        verdict(
            nl,
            &call,
            &reply,
            format!("a {size}-byte trunk list was accepted with policy {policy:?}"),
            why,
            &shown,
            before,
            after,
        )
        .await?;
        ensure(reply.elapsed <= HUGE_NAD_BUDGET, || {
            format!(
                "refusing a {size}-byte trunk list took {:?} (budget {HUGE_NAD_BUDGET:?}, policy {policy:?})",
                reply.elapsed
            )
        })?;
        timings.push(format!("{:?}", reply.elapsed));
        if !policy.is_empty() {
            let ok = without_vlan(stage.call(
                ctx,
                "trunkok",
                json!({"trunk": [{"id": 10}, {"minID": 20, "maxID": 22}, {"id": 30}]}),
            ));
            control(nl, &ok, "a three-entry trunk with trunks allowed").await?;
        }
    }
    ctx.observed.note(&format!(
        "{size}-byte trunk list refused in {} (no trunks; trunks with the entry cap)",
        timings.join(" and ")
    ));
    Ok(())
}

/// A trunk port only (no access VLAN).
fn without_vlan(mut call: Call) -> Call {
    if let Some(o) = call.config.as_object_mut() {
        o.remove("vlan");
    }
    call
}

/// How long ADD may take with an IPAM plugin that never answers: the plugin's 30 s
/// deadline plus slack for a loaded machine.
const IPAM_BUDGET: Duration = Duration::from_secs(40);

/// An IPAM plugin (a shell script) whose child sleeps 100 s holding its output
/// open while the script waits for it: ADD must fail by the deadline, the child
/// must be gone, and no veth left behind.
async fn ipam_children(ctx: &Ctx, nl: &mut NodeLab) -> Outcome {
    let stage = OvsStage::new(ctx, nl, "")?;
    let bin = stage.scratch.path().join("bin");
    let pid_file = stage.scratch.path().join("child.pid");
    std::fs::create_dir_all(&bin)
        .map_err(|e| Failure::caused(format!("failed to create {}", bin.display()), e))?;
    let script = bin.join("slow-ipam");
    let text = format!(
        "#!/bin/sh\nsleep 100 &\necho $! > '{}'\nwait\n",
        pid_file.display()
    );
    std::fs::write(&script, text)
        .and_then(|()| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))
        })
        .map_err(|e| Failure::caused(format!("failed to write {}", script.display()), e))?;
    let mut call = stage.call(ctx, "ipam", json!({"ipam": {"type": "slow-ipam"}}));
    call.path = format!("{}:{}", bin.display(), call.path);
    call.timeout = IPAM_BUDGET + Duration::from_secs(70);
    let before = bridge_state(nl, &stage, "br1")?;
    let started = std::time::Instant::now();
    let reply = exec(&call, Some(&nl.node_ns)).await;
    let took = started.elapsed();
    let child = std::fs::read_to_string(&pid_file)
        .ok()
        .and_then(|p| p.trim().parse::<i32>().ok());
    // Polled: a killed child is reaped by whoever inherits it.
    let mut alive = child.is_some_and(process_alive);
    for _ in 0..20 {
        if !alive {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        alive = child.is_some_and(process_alive);
    }
    if let Some(pid) = child.filter(|_| alive) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    let reply = reply?;
    if reply.success {
        let _ = exec(&with_command(&call, "DEL"), Some(&nl.node_ns)).await;
    }
    ensure(took <= IPAM_BUDGET, || {
        format!(
            "ADD with an IPAM plugin whose child holds it took {took:?} (the deadline is 30 s): {}",
            described(&reply)
        )
    })?;
    ensure(!alive, || {
        format!("the IPAM plugin's child (pid {child:?}) outlived the deadline")
    })?;
    ensure(!reply.success, || {
        "ADD succeeded without an IPAM result".to_string()
    })?;
    let after = bridge_state(nl, &stage, "br1")?;
    ensure(before == after, || {
        format!("the failed ADD left the node changed:\n  before {before:?}\n  after  {after:?}")
    })?;
    ctx.observed.note(&format!(
        "ADD gave up on the IPAM plugin after {took:?}: {}",
        described(&reply)
    ));
    Ok(())
}

/// Whether `pid` is a live process (a zombie is not).
fn process_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// GC (CNI 1.1.0) of the tenant's network with `cni.dev/valid-attachments: []`
/// (its pods are gone) while another network's pod is attached to the same bridge:
/// the victim's port stays. Control: GC of the victim's own network removes it.
async fn gc_other_network(ctx: &Ctx, nl: &mut NodeLab) -> Outcome {
    let stage = OvsStage::new(ctx, nl, "")?;
    let mut victim = stage.call(
        ctx,
        "victim",
        json!({"cniVersion": "1.1.0", "name": "victim-net"}),
    );
    victim.config["cniVersion"] = json!("1.1.0");
    let added = exec(&victim, Some(&nl.node_ns)).await?;
    let outcome: Outcome = async {
        ensure(added.success, || {
            format!("the victim's ADD failed: {}", described(&added))
        })?;
        let before = stage.ovs.ports("br1")?;
        let mut gc = stage.call(ctx, "gc", json!({"cniVersion": "1.1.0"}));
        gc.command = "GC".into();
        gc.netns = None;
        gc.container_id = String::new();
        gc.ifname = String::new();
        gc.config["cni.dev/valid-attachments"] = json!([]);
        let reply = exec(&gc, Some(&nl.node_ns)).await?;
        let after = stage.ovs.ports("br1")?;
        ensure(before == after, || {
            format!(
                "GC of network tenant-net with an empty list removed another network's ports ({}): before {before:?}, after {after:?}",
                described(&reply)
            )
        })?;
        let mut own = gc.clone();
        own.config["name"] = json!("victim-net");
        let reply = exec(&own, Some(&nl.node_ns)).await?;
        let left = stage.ovs.ports("br1")?;
        ctx.observed.note(&format!(
            "control: GC of the victim's own network with an empty list: {}; br1's ports {left:?} (before {before:?})",
            described(&reply)
        ));
        Ok(())
    }
    .await;
    let del = exec(&with_command(&victim, "DEL"), Some(&nl.node_ns)).await?;
    outcome?;
    ensure(del.success, || {
        format!("the victim's DEL failed: {}", described(&del))
    })
}

/// DEL with no cached attachment while ovsdb-server is not up (a rebooting node)
/// succeeds; with one, it fails naming the port it could not remove, and succeeds
/// once Open vSwitch is back.
async fn del_without_ovsdb(ctx: &Ctx, nl: &mut NodeLab) -> Outcome {
    let mut stage = OvsStage::new(ctx, nl, "")?;
    let attach = stage.call(ctx, "cached", json!({}));
    let added = exec(&attach, Some(&nl.node_ns)).await?;
    ensure(added.success, || {
        format!("ADD failed: {}", described(&added))
    })?;
    let host_iface = added
        .json()
        .and_then(|r| {
            r["interfaces"]
                .as_array()?
                .iter()
                .find(|i| i.get("sandbox").is_none())
                .and_then(|i| i["name"].as_str().map(str::to_string))
        })
        .unwrap_or_default();
    stage.ovs.stop();
    let never = with_command(&stage.call(ctx, "never", json!({})), "DEL");
    let uncached = exec(&never, Some(&nl.node_ns)).await?;
    let cached = exec(&with_command(&attach, "DEL"), Some(&nl.node_ns)).await?;
    // Open vSwitch back (an empty database, as after a reboot), and DEL again.
    stage.ovs = lab_ovs(nl, &stage.scratch.path().join("ovs"))?;
    let retried = exec(&with_command(&attach, "DEL"), Some(&nl.node_ns)).await?;
    ctx.observed.note(&format!(
        "ovsdb-server down: DEL without a cached attachment {}; with one {}",
        described(&uncached),
        described(&cached)
    ));
    ensure(uncached.success, || {
        format!(
            "DEL of an attachment never made failed while ovsdb-server was down (pods stick in Terminating; upstream ovs-cni returns 0): {}",
            described(&uncached)
        )
    })?;
    ensure(
        !cached.success && !host_iface.is_empty() && error_msg(&cached).contains(&host_iface),
        || {
            format!(
                "DEL of a cached attachment while ovsdb-server was down must fail naming the port {host_iface} it could not remove: {}",
                described(&cached)
            )
        },
    )?;
    ensure(cached.error_code() == Some(11), || {
        format!(
            "that DEL must say \"try again later\" (code 11): {}",
            described(&cached)
        )
    })?;
    ensure(retried.success, || {
        format!(
            "DEL retried with Open vSwitch back failed: {}",
            described(&retried)
        )
    })
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
