//! The macvtap CNI contract, checked against whichever `macvtap` binary is under
//! test: the device-plugin flow of the seed (a macvtap allocated on the node, moved
//! into the pod), requested MAC and MTU, DEL after the netns is gone, and the
//! bundled plugin's standalone mode.

use cni_kit::SpecVersion;
use serde_json::{Value, json};

use super::{Ctx, Failure, Outcome, Scenario, ensure};
use crate::cni::{Call, Reply, exec};
use crate::lab::Ns;
use crate::lab::node::{NodeLab, link_flags, link_kind, tap_owner};

/// Versions both the bundled plugin and upstream's answer to (upstream stops at 0.4.0).
const COMMON_VERSION: SpecVersion = SpecVersion::V0_4_0;

/// The spec's rule that kubevirt/macvtap-cni breaks (REFERENCE.md §1, §6).
pub(super) const DEL_NETNS_GONE: &str = "the CNI spec wants DEL to succeed when the netns is already gone; kubevirt/macvtap-cni returns error 999 for a netns path that no longer exists (a known upstream bug)";

pub fn scenarios() -> Vec<Scenario> {
    let mut list = Vec::new();
    for v in SpecVersion::RESULT_CAPABLE {
        let mut labels = vec!["cni", "mac", "spec"];
        if v > COMMON_VERSION {
            labels.push("spec-1.x");
        }
        list.push(
            Scenario::new(
                format!("macvtap-cni/[{v}] device attach, check, delete"),
                "macvtap",
                "pod",
                &labels,
                move |ctx| attach_check_delete(ctx, v),
            )
            .needs_cni_version("macvtap", v.as_str()),
        );
    }
    list.push(Scenario::new(
        "macvtap-cni/requested MAC, MTU and promisc",
        "macvtap",
        "pod",
        &["cni", "mac", "mtu"],
        requested_mac_mtu,
    ));
    list.push(
        Scenario::new(
            "macvtap-cni/DEL after the pod netns is gone",
            "macvtap",
            "pod",
            &["cni", "fault"],
            del_after_netns_gone,
        )
        .beyond_reference(DEL_NETNS_GONE),
    );
    list.push(
        Scenario::new(
            "macvtap-cni/ADD killed half-way: DEL and the next ADD converge",
            "macvtap",
            "pod",
            &["cni", "fault"],
            killed_add,
        )
        .beyond_reference(
            "converging after an interrupted ADD is beyond kubevirt/macvtap-cni, whose DEL deletes only CNI_IFNAME in the netns: a link moved but not yet renamed stays behind",
        ),
    );
    list.push(
        Scenario::new(
            "macvtap-cni/standalone mode on master",
            "macvtap",
            "pod",
            &["cni", "extension"],
            standalone,
        )
        .beyond_reference(
            "standalone mode (master, no deviceID) is the bundled plugin's extension; kubevirt/macvtap-cni requires deviceID",
        ),
    );
    list
}

fn lab_err(e: impl std::fmt::Display) -> String {
    format!("failed to set up the node lab: {e}")
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

async fn attach_check_delete(ctx: Ctx, v: SpecVersion) -> Outcome {
    let mut nl = ctx.node_lab()?;
    let outcome = attach_check_delete_in(&ctx, &mut nl, v).await;
    ctx.finish(&mut nl.lab, outcome)
}

async fn attach_check_delete_in(ctx: &Ctx, nl: &mut NodeLab, v: SpecVersion) -> Outcome {
    let pod = nl.pod("pod").map_err(lab_err)?;
    let device_id = "ens33Mvp0";
    let host_name = macvtap_cni::naming::hashed_link_name(device_id);
    nl.device_link(&host_name).map_err(lab_err)?;
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
    ensure(link_kind(&link) == "macvtap", || {
        format!("net1 is a {}, not a macvtap", link_kind(&link))
    })?;
    ensure(iface["mac"] == link["address"], || {
        format!(
            "result MAC {} differs from the kernel's {}",
            iface["mac"], link["address"]
        )
    })?;
    ensure(link_flags(&link).iter().any(|f| f == "UP"), || {
        "net1 is down".into()
    })?;
    ensure(nl.link(&nl.node, &host_name).is_none(), || {
        format!("{host_name} is still on the node")
    })?;
    let owner =
        tap_owner(&link).map_err(|e| format!("/dev/tap{} is missing: {e}", link["ifindex"]))?;
    ensure(owner == (107, 107), || {
        format!(
            "/dev/tap{} is owned by {owner:?}, expected 107:107 (qemu)",
            link["ifindex"]
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
    let left = nl.links(&pod).map_err(lab_err)?;
    ensure(left == ["lo"], || {
        format!("after DEL the pod still has {left:?}")
    })
}

async fn requested_mac_mtu(ctx: Ctx) -> Outcome {
    let mut nl = ctx.node_lab()?;
    let outcome = async {
        let pod = nl.pod("pod").map_err(lab_err)?;
        nl.device_link(&macvtap_cni::naming::hashed_link_name("ens33Mvp1"))
            .map_err(lab_err)?;
        let cfg = config(
            COMMON_VERSION,
            json!({"deviceID": "ens33Mvp1", "mtu": 1400, "promiscMode": true}),
        );
        let add = call(
            &ctx,
            &nl,
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
        ensure(link["address"] == "02:5e:c0:00:00:01", || {
            format!("MAC is {}, requested 02:5e:c0:00:00:01", link["address"])
        })?;
        ensure(link["mtu"] == 1400, || {
            format!("MTU is {}, requested 1400", link["mtu"])
        })?;
        ensure(link_flags(&link).iter().any(|f| f == "PROMISC"), || {
            "promiscuous mode is off".into()
        })
    }
    .await;
    ctx.finish(&mut nl.lab, outcome)
}

async fn del_after_netns_gone(ctx: Ctx) -> Outcome {
    let mut nl = ctx.node_lab()?;
    let outcome = async {
        let pod = nl.pod("gone").map_err(lab_err)?;
        nl.device_link(&macvtap_cni::naming::hashed_link_name("ens33Mvp2"))
            .map_err(lab_err)?;
        let cfg = config(COMMON_VERSION, json!({"deviceID": "ens33Mvp2"}));
        succeeded("ADD", &call(&ctx, &nl, "ADD", cfg.clone(), &pod, "").await?)?;
        nl.lab.delete_netns(&pod).map_err(lab_err)?;
        succeeded(
            "DEL with the netns gone",
            &call(&ctx, &nl, "DEL", cfg, &pod, "").await?,
        )
    }
    .await;
    ctx.finish(&mut nl.lab, outcome)
}

/// Standalone mode is the node admin's choice: the node's policy lists ens33 as a
/// master (`SECNET_PLUGIN_POLICY`; without it the bundled plugin refuses, see the
/// `security` scenarios).
async fn standalone(ctx: Ctx) -> Outcome {
    let mut nl = ctx.node_lab()?;
    let scratch = crate::lab::ScratchDir::new(&format!("{}-{}-policy", ctx.run_id, ctx.scope))
        .map_err(|e| format!("failed to create a scratch dir: {e}"))?;
    let policy = scratch.path().join("plugins.conf");
    std::fs::write(&policy, "[macvtap]\nstandalone_masters = ens33\n")
        .map_err(|e| format!("failed to write {}: {e}", policy.display()))?;
    let policy = policy.display().to_string();
    let env = [(cni_kit::policy::POLICY_ENV, policy.as_str())];
    let outcome = async {
        let pod = nl.pod("pod").map_err(lab_err)?;
        let cfg = config(COMMON_VERSION, json!({"master": "ens33", "mode": "bridge"}));
        let call = |cmd: &'static str, cfg: Value, args: &'static str| {
            call_with_env(&ctx, &nl, cmd, cfg, &pod, args, &env)
        };
        let add = call("ADD", cfg.clone(), "MAC=02:5e:c0:00:00:02").await?;
        succeeded("ADD", &add)?;
        let link = nl
            .link(&pod, "net1")
            .ok_or("net1 is not in the pod namespace")?;
        ensure(link_kind(&link) == "macvtap", || {
            format!("net1 is a {}", link_kind(&link))
        })?;
        ensure(link["address"] == "02:5e:c0:00:00:02", || {
            format!("MAC is {}", link["address"])
        })?;
        succeeded("DEL", &call("DEL", cfg, "").await?)?;
        let left = nl.links(&pod).map_err(lab_err)?;
        ensure(left == ["lo"], || {
            format!("after DEL the pod still has {left:?}")
        })
    }
    .await;
    ctx.finish(&mut nl.lab, outcome)
}

/// SIGKILLs ADD at several points (the exec timeout kills the plugin); each time DEL
/// must succeed and leave the pod empty, and the next ADD must work.
async fn killed_add(ctx: Ctx) -> Outcome {
    let mut nl = ctx.node_lab()?;
    let outcome = async {
        let pod = nl.pod("pod").map_err(lab_err)?;
        let host = macvtap_cni::naming::hashed_link_name("ens33Mvp3");
        let cfg = config(COMMON_VERSION, json!({"deviceID": "ens33Mvp3"}));
        for delay_ms in [0u64, 2, 5, 10, 20, 40] {
            if nl.link(&nl.node, &host).is_none() {
                nl.device_link(&host).map_err(lab_err)?;
            }
            let mut add = Call::new(ctx.plugin("macvtap"), "ADD", cfg.clone()).container(
                &format!("{}-cid", pod.name),
                Some(&pod.path_str()),
                "net1",
            );
            add.timeout = std::time::Duration::from_millis(delay_ms);
            let _ = exec(&add, Some(&nl.node_ns)).await;
            succeeded(
                &format!("DEL after a kill at {delay_ms} ms"),
                &call(&ctx, &nl, "DEL", cfg.clone(), &pod, "").await?,
            )?;
            let left = nl.links(&pod).map_err(lab_err)?;
            ensure(left == ["lo"], || {
                format!("after a kill at {delay_ms} ms and DEL the pod still has {left:?}")
            })?;
        }
        if nl.link(&nl.node, &host).is_none() {
            nl.device_link(&host).map_err(lab_err)?;
        }
        succeeded(
            "ADD after the kills",
            &call(&ctx, &nl, "ADD", cfg.clone(), &pod, "").await?,
        )?;
        succeeded("final DEL", &call(&ctx, &nl, "DEL", cfg, &pod, "").await?)
    }
    .await;
    ctx.finish(&mut nl.lab, outcome)
}
