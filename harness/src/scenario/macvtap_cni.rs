//! The macvtap CNI contract, checked against whichever `macvtap` binary is under
//! test: the device-plugin flow of the seed (a macvtap allocated on the node, moved
//! into the pod), requested MAC and MTU, DEL after the netns is gone, and the
//! bundled plugin's standalone mode.

use cni_kit::SpecVersion;
use serde_json::{Value, json};

use super::kit::{DEL_NETNS_GONE, lab_failure, node_policy, scratch_dir};
use super::{Ctx, Failure, Outcome, Scenario, ensure};
use crate::cni::{Call, Reply, exec};
use crate::lab::Ns;
use crate::lab::node::{NodeLab, tap_owner};

/// Versions both the bundled plugin and upstream's answer to (upstream stops at 0.4.0).
const COMMON_VERSION: SpecVersion = SpecVersion::V0_4_0;

pub fn scenarios() -> Vec<Scenario> {
    let mut list = Vec::new();
    for v in SpecVersion::RESULT_CAPABLE {
        let mut labels = vec!["cni", "mac", "spec"];
        if v > COMMON_VERSION {
            labels.push("spec-1.x");
        }
        list.push(
            Scenario::on_node_lab(
                format!("macvtap-cni/[{v}] device attach, check, delete"),
                "macvtap",
                "pod",
                &labels,
                move |ctx, nl| Box::pin(attach_check_delete(ctx, nl, v)),
            )
            .needs_cni_version("macvtap", v.as_str()),
        );
    }
    list.push(Scenario::on_node_lab(
        "macvtap-cni/CNI_ARGS: an unknown key refused unless IgnoreUnknown",
        "macvtap",
        "pod",
        &["cni", "spec", "mac"],
        |ctx, nl| Box::pin(cni_args(ctx, nl)),
    ));
    for (plugin, backend) in [("macvtap", "macvtap"), ("ovs", "ovs")] {
        let group = if plugin == "ovs" {
            "ovs"
        } else {
            "macvtap-cni"
        };
        list.push(Scenario::on_node_lab(
            format!("{group}/VERSION for every cniVersion, STATUS where claimed: answers per spec"),
            backend,
            "node",
            &["cni", "spec"],
            move |ctx, nl| Box::pin(version_and_status(ctx, nl, plugin)),
        ));
    }
    list.push(Scenario::on_node_lab(
        "macvtap-cni/requested MAC, MTU and promisc",
        "macvtap",
        "pod",
        &["cni", "mac", "mtu"],
        |ctx, nl| Box::pin(requested_mac_mtu(ctx, nl)),
    ));
    list.push(
        Scenario::on_node_lab(
            "macvtap-cni/DEL after the pod netns is gone",
            "macvtap",
            "pod",
            &["cni", "fault"],
            |ctx, nl| Box::pin(del_after_netns_gone(ctx, nl)),
        )
        .beyond_reference(DEL_NETNS_GONE),
    );
    list.push(
        Scenario::on_node_lab(
            "macvtap-cni/ADD killed half-way: DEL and the next ADD converge",
            "macvtap",
            "pod",
            &["cni", "fault"],
            |ctx, nl| Box::pin(killed_add(ctx, nl)),
        )
        .beyond_reference(
            "converging after an interrupted ADD is beyond kubevirt/macvtap-cni, whose DEL deletes only CNI_IFNAME in the netns: a link moved but not yet renamed stays behind",
        ),
    );
    list.push(
        Scenario::on_node_lab(
            "macvtap-cni/standalone mode on master",
            "macvtap",
            "pod",
            &["cni", "extension"],
            |ctx, nl| Box::pin(standalone(ctx, nl)),
        )
        .beyond_reference(
            "standalone mode (master, no deviceID) is the bundled plugin's extension; kubevirt/macvtap-cni requires deviceID",
        ),
    );
    list
}

/// The device ID the device plugin gives its `n`th macvtap on the node's uplink.
fn device_id(nl: &NodeLab, n: u32) -> String {
    format!("{}Mvp{n}", nl.uplink())
}

fn config(v: SpecVersion, extra: Value) -> Value {
    let mut c = json!({"cniVersion": v.as_str(), "name": "macvtap-net", "type": "macvtap"});
    for (k, val) in extra.as_object().cloned().unwrap_or_default() {
        c[k] = val;
    }
    c
}

async fn call(
    ctx: &Ctx,
    nl: &NodeLab,
    cmd: &str,
    cfg: Value,
    pod: &Ns,
    args: &str,
) -> Result<Reply, Failure> {
    call_with_env(ctx, nl, cmd, cfg, pod, args, &[]).await
}

async fn call_with_env(
    ctx: &Ctx,
    nl: &NodeLab,
    cmd: &str,
    cfg: Value,
    pod: &Ns,
    args: &str,
    env: &[(&str, &str)],
) -> Result<Reply, Failure> {
    let mut call = Call::new(ctx.plugin("macvtap"), cmd, cfg)
        .container(&format!("{}-cid", pod.name), Some(&pod.path_str()), "net1")
        .args(args);
    for (k, v) in env {
        call = call.env(k, v);
    }
    Ok(exec(&call, Some(&nl.node_ns)).await?)
}

fn succeeded(step: &str, r: &Reply) -> Outcome {
    ensure(r.success, || format!("{step} failed: {}", r.error_text()))
}

async fn attach_check_delete(ctx: &Ctx, nl: &mut NodeLab, v: SpecVersion) -> Outcome {
    let pod = nl.pod("pod").map_err(lab_failure)?;
    let device_id = device_id(nl, 0);
    let host_name = cni_kit::naming::hashed_link_name(&device_id);
    nl.device_link(&host_name).map_err(lab_failure)?;
    let cfg = config(v, json!({"deviceID": device_id}));
    let add = call(ctx, nl, "ADD", cfg.clone(), &pod, "").await?;
    succeeded("ADD", &add)?;
    let result = add.json().ok_or("ADD printed no JSON result")?;
    ensure(result["cniVersion"] == v.as_str(), || {
        format!(
            "result cniVersion is {}, asked for {v}",
            result["cniVersion"]
        )
    })?;
    let iface = result["interfaces"]
        .as_array()
        .and_then(|a| a.iter().find(|i| i["name"] == "net1"))
        .ok_or_else(|| format!("result has no interface net1: {result}"))?;
    ensure(iface["sandbox"] == pod.path_str(), || {
        format!(
            "interface sandbox is {}, expected {}",
            iface["sandbox"],
            pod.path_str()
        )
    })?;
    let link = nl
        .link(&pod, "net1")
        .ok_or("net1 is not in the pod namespace")?;
    ensure(link.kind == "macvtap", || {
        format!("net1 is a {}, not a macvtap", link.kind)
    })?;
    ensure(iface["mac"].as_str() == link.mac.as_deref(), || {
        format!(
            "result MAC {} differs from the kernel's {}",
            iface["mac"],
            link.shown_mac()
        )
    })?;
    ensure(link.has_flag("UP"), || "net1 is down".into())?;
    ensure(nl.link(&nl.node, &host_name).is_none(), || {
        format!("{host_name} is still on the node")
    })?;
    let owner = tap_owner(&link)
        .map_err(|e| Failure::caused(format!("/dev/tap{} is missing", link.index), e))?;
    ensure(owner == (107, 107), || {
        format!(
            "/dev/tap{} is owned by {owner:?}, expected 107:107 (qemu)",
            link.index
        )
    })?;
    if v.has_check() {
        let mut check_cfg = cfg.clone();
        check_cfg["prevResult"] = result.clone();
        succeeded("CHECK", &call(ctx, nl, "CHECK", check_cfg, &pod, "").await?)?;
    }
    for round in ["DEL", "repeated DEL"] {
        succeeded(round, &call(ctx, nl, "DEL", cfg.clone(), &pod, "").await?)?;
    }
    let left = nl.links(&pod).map_err(lab_failure)?;
    ensure(left == ["lo"], || {
        format!("after DEL the pod still has {left:?}")
    })
}

/// The spec's CNI_ARGS rule: an unknown key is an error unless `IgnoreUnknown=1`
/// passes it through; a known one (`MAC`) still applies. The refusal's wording is
/// reported, not judged.
async fn cni_args(ctx: &Ctx, nl: &mut NodeLab) -> Outcome {
    let pod = nl.pod("pod").map_err(lab_failure)?;
    let device_id = device_id(nl, 4);
    nl.device_link(&cni_kit::naming::hashed_link_name(&device_id))
        .map_err(lab_failure)?;
    let cfg = config(COMMON_VERSION, json!({"deviceID": device_id}));
    let refused = call(ctx, nl, "ADD", cfg.clone(), &pod, "SECNET_UNKNOWN=1").await?;
    ensure(!refused.success, || {
        "ADD with CNI_ARGS SECNET_UNKNOWN=1 (unknown, no IgnoreUnknown) succeeded; the spec wants an error".into()
    })?;
    ctx.observed.note(&format!(
        "unknown CNI_ARGS key refused: {}",
        refused.error_text()
    ));
    let left = nl.links(&pod).map_err(lab_failure)?;
    ensure(left == ["lo"], || {
        format!("a refused ADD left {left:?} in the pod")
    })?;
    let mac = "02:5e:c0:00:00:04";
    let add = call(
        ctx,
        nl,
        "ADD",
        cfg.clone(),
        &pod,
        "IgnoreUnknown=1;SECNET_UNKNOWN=1;MAC=02:5e:c0:00:00:04",
    )
    .await?;
    succeeded("ADD with IgnoreUnknown=1 and an unknown key", &add)?;
    let link = nl
        .link(&pod, "net1")
        .ok_or("net1 is not in the pod namespace")?;
    ensure(link.mac.as_deref() == Some(mac), || {
        format!("MAC is {}, CNI_ARGS asked for {mac}", link.shown_mac())
    })?;
    succeeded("DEL", &call(ctx, nl, "DEL", cfg, &pod, "").await?)
}

/// VERSION asked with every spec version, and STATUS where the plugin claims 1.1.0:
/// `exec` holds each answer to the spec (see `cni::spec_check`); here, that the
/// answer lists what the plugin must run.
async fn version_and_status(ctx: &Ctx, nl: &mut NodeLab, plugin: &str) -> Outcome {
    let mut claimed: Vec<String> = Vec::new();
    for v in SpecVersion::ALL {
        let cfg = json!({"cniVersion": v.as_str()});
        let reply = exec(
            &Call::new(ctx.plugin(plugin), "VERSION", cfg),
            Some(&nl.node_ns),
        )
        .await?;
        succeeded(&format!("VERSION with cniVersion {v}"), &reply)?;
        let answer = reply.json().unwrap_or_default();
        let list: Vec<String> = answer["supportedVersions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().map(str::to_string))
            .collect();
        ensure(claimed.is_empty() || claimed == list, || {
            format!(
                "VERSION answers differ by the asked version: {claimed:?}, then {list:?} for {v}"
            )
        })?;
        claimed = list;
    }
    ensure(claimed.iter().any(|v| v == COMMON_VERSION.as_str()), || {
        format!("{plugin} does not claim CNI {COMMON_VERSION}: {claimed:?}")
    })?;
    if claimed.iter().any(|v| v == "1.1.0") {
        let cfg = json!({"cniVersion": "1.1.0", "name": "status", "type": plugin});
        // Ready or not, the answer must be spec-shaped: exec checks it.
        let status = exec(
            &Call::new(ctx.plugin(plugin), "STATUS", cfg),
            Some(&nl.node_ns),
        )
        .await?;
        ctx.observed.note(&format!(
            "STATUS: {}",
            if status.success {
                "ready".to_string()
            } else {
                status.error_text()
            }
        ));
    }
    Ok(())
}

async fn requested_mac_mtu(ctx: &Ctx, nl: &mut NodeLab) -> Outcome {
    let pod = nl.pod("pod").map_err(lab_failure)?;
    let device_id = device_id(nl, 1);
    nl.device_link(&cni_kit::naming::hashed_link_name(&device_id))
        .map_err(lab_failure)?;
    let cfg = config(
        COMMON_VERSION,
        json!({"deviceID": device_id, "mtu": 1400, "promiscMode": true}),
    );
    let add = call(
        ctx,
        nl,
        "ADD",
        cfg,
        &pod,
        "IgnoreUnknown=1;MAC=02:5e:c0:00:00:01;K8S_POD_NAME=p",
    )
    .await?;
    succeeded("ADD", &add)?;
    let link = nl
        .link(&pod, "net1")
        .ok_or("net1 is not in the pod namespace")?;
    ensure(link.mac.as_deref() == Some("02:5e:c0:00:00:01"), || {
        format!("MAC is {}, requested 02:5e:c0:00:00:01", link.shown_mac())
    })?;
    ensure(link.mtu == 1400, || {
        format!("MTU is {}, requested 1400", link.mtu)
    })?;
    ensure(link.has_flag("PROMISC"), || {
        "promiscuous mode is off".into()
    })
}

async fn del_after_netns_gone(ctx: &Ctx, nl: &mut NodeLab) -> Outcome {
    let pod = nl.pod("gone").map_err(lab_failure)?;
    let device_id = device_id(nl, 2);
    nl.device_link(&cni_kit::naming::hashed_link_name(&device_id))
        .map_err(lab_failure)?;
    let cfg = config(COMMON_VERSION, json!({"deviceID": device_id}));
    succeeded("ADD", &call(ctx, nl, "ADD", cfg.clone(), &pod, "").await?)?;
    nl.lab.delete_netns(&pod).map_err(lab_failure)?;
    succeeded(
        "DEL with the netns gone",
        &call(ctx, nl, "DEL", cfg, &pod, "").await?,
    )
}

/// Standalone mode is the node admin's choice: the node's policy lists the uplink as
/// a master (`SECNET_PLUGIN_POLICY`; without it the bundled plugin refuses, see the
/// `security` scenarios).
async fn standalone(ctx: &Ctx, nl: &mut NodeLab) -> Outcome {
    let uplink = nl.uplink().to_string();
    let scratch = scratch_dir(ctx, "policy")?;
    let policy = node_policy(
        &scratch,
        Some(&format!("[macvtap]\nstandalone_masters = {uplink} lo\n")),
    )?;
    let env = [(cni_kit::policy::POLICY_ENV, policy.as_str())];
    let pod = nl.pod("pod").map_err(lab_failure)?;
    let nl = &*nl;
    // The master's own MTU, the largest a macvtap on it may have: allowed.
    let mtu = nl
        .link(&nl.node, &uplink)
        .map(|l| l.mtu)
        .ok_or("the uplink has no MTU")?;
    let cfg = config(
        COMMON_VERSION,
        json!({"master": uplink, "mode": "bridge", "mtu": mtu}),
    );
    let call = |cmd: &'static str, cfg: Value, args: &'static str| {
        call_with_env(ctx, nl, cmd, cfg, &pod, args, &env)
    };
    let add = call("ADD", cfg.clone(), "MAC=02:5e:c0:00:00:02").await?;
    succeeded("ADD", &add)?;
    let link = nl
        .link(&pod, "net1")
        .ok_or("net1 is not in the pod namespace")?;
    ensure(link.kind == "macvtap", || {
        format!("net1 is a {}", link.kind)
    })?;
    ensure(link.mac.as_deref() == Some("02:5e:c0:00:00:02"), || {
        format!("MAC is {}", link.shown_mac())
    })?;
    ensure(link.mtu == mtu, || {
        format!("MTU is {}, requested {mtu} (the master's)", link.mtu)
    })?;
    succeeded("DEL", &call("DEL", cfg, "").await?)?;
    let left = nl.links(&pod).map_err(lab_failure)?;
    ensure(left == ["lo"], || {
        format!("after DEL the pod still has {left:?}")
    })?;
    // A master the policy lists but the kernel cannot carry macvtaps on (loopback):
    // a permanent failure, never "try again later" (the runtime would retry the
    // pod forever), and the pod as it was.
    let on_lo = config(COMMON_VERSION, json!({"master": "lo", "mode": "bridge"}));
    let refused = call("ADD", on_lo, "").await?;
    let left = nl.links(&pod).map_err(lab_failure)?;
    ensure(!refused.success && refused.error_code() != Some(11), || {
        format!(
            "ADD on master lo must fail as a permanent error, not {}",
            if refused.success {
                "succeed".to_string()
            } else {
                format!("code 11 (try again later): {}", refused.error_text())
            }
        )
    })?;
    ensure(left == ["lo"], || {
        format!("after the refused ADD on lo the pod has {left:?}")
    })
}

/// SIGKILLs ADD at several points (the exec timeout kills the plugin); each time DEL
/// must succeed and leave the pod empty, and the next ADD must work.
async fn killed_add(ctx: &Ctx, nl: &mut NodeLab) -> Outcome {
    let pod = nl.pod("pod").map_err(lab_failure)?;
    let device_id = device_id(nl, 3);
    let host = cni_kit::naming::hashed_link_name(&device_id);
    let cfg = config(COMMON_VERSION, json!({"deviceID": device_id}));
    for delay_ms in [0u64, 2, 5, 10, 20, 40] {
        if nl.link(&nl.node, &host).is_none() {
            nl.device_link(&host).map_err(lab_failure)?;
        }
        let mut add = Call::new(ctx.plugin("macvtap"), "ADD", cfg.clone()).container(
            &format!("{}-cid", pod.name),
            Some(&pod.path_str()),
            "net1",
        );
        add.timeout = std::time::Duration::from_millis(delay_ms);
        // Killed on purpose: the outcome of this ADD is not the point.
        let _ = exec(&add, Some(&nl.node_ns)).await;
        succeeded(
            &format!("DEL after a kill at {delay_ms} ms"),
            &call(ctx, nl, "DEL", cfg.clone(), &pod, "").await?,
        )?;
        let left = nl.links(&pod).map_err(lab_failure)?;
        ensure(left == ["lo"], || {
            format!("after a kill at {delay_ms} ms and DEL the pod still has {left:?}")
        })?;
    }
    if nl.link(&nl.node, &host).is_none() {
        nl.device_link(&host).map_err(lab_failure)?;
    }
    succeeded(
        "ADD after the kills",
        &call(ctx, nl, "ADD", cfg.clone(), &pod, "").await?,
    )?;
    succeeded("final DEL", &call(ctx, nl, "DEL", cfg, &pod, "").await?)
}
