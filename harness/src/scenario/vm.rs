//! The seed's VMs: KubeVirt VirtualMachine fixtures run as guests the scenarios talk
//! to through their agent (see `crate::vm`): QEMU inside their virt-launcher pods on
//! the netns cluster, KubeVirt on a real one; attached by the macvtap, bridge and
//! masquerade bindings. Boot-to-first-ping is measured per guest.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::kit::{
    DATAPLANE, add_addr, expect_reach, fixture, fixture_nad, fixture_pod, lan_host, named,
    pod_link, record_topology, status_of, with_net_admin,
};
use super::{Capability, Ctx, Failure, Outcome, Scenario, ensure, fail};
use crate::cluster::Cluster;
use crate::cluster::any::AnyCluster;
use crate::objects::{NetworkAttachmentDefinition, Object, Pod};
use crate::vm::kubevirt::{Swagger, VirtualMachine, swagger_path};
use crate::vm::{RunningVm, VmOptions, image};

pub fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario::on_cluster(
            "vm/macvtap frontend: guest MAC is the macvtap's, capacity counted, pings a pod and a VM on one node and across nodes",
            "macvtap",
            "vm",
            &["vm", "macvtap", "reachability", "mac", "capacity"],
            |ctx, c| Box::pin(macvtap_vms(ctx, c)),
        )
        .needs(&[Capability::Vm])
        .deploy_macvtap_seed(),
        Scenario::on_cluster(
            "vm/bridge binding on macvlan-test: host-local address in the guest, reaches a pod",
            "macvlan",
            "vm",
            &["vm", "macvlan", "reachability", "mac", "ipam"],
            |ctx, c| Box::pin(macvlan_bridge_vm(ctx, c)),
        )
        .needs(&[Capability::Vm]),
        Scenario::on_cluster(
            "vm/masquerade on the pod network: the guest reaches the fabric gateway",
            "pod-network",
            "vm",
            &["vm", "reachability", "masquerade"],
            |ctx, c| Box::pin(masquerade_vm(ctx, c)),
        )
        // On the netns cluster secnet sets up the node's NAT toward the fabric; a
        // real cluster's pod network is its own: there the guest reaches KubeVirt's
        // masquerade gateway in its launcher pod (see masquerade_vm).
        .needs(&[Capability::Vm]),
        Scenario::on_cluster(
            "vm/bridge binding on ovs-vlan-100: the guest reaches a VLAN 100 pod on the other node",
            "ovs",
            "vm",
            &["vm", "ovs", "reachability", "mac"],
            |ctx, c| Box::pin(ovs_bridge_vm(ctx, c)),
        )
        .needs(&[Capability::Vm, Capability::Ovs])
        .deploy(&[OVS_VLAN_100_NAD]),
        Scenario::on_cluster(
            "vm/guest that cannot boot: the failure carries the console, nothing left running",
            "macvtap",
            "vm",
            &["vm", "macvtap", "fault"],
            |ctx, c| Box::pin(boot_failure(ctx, c)),
        )
        .needs(&[Capability::Vm])
        .deploy_macvtap_seed(),
    ]
}

pub(super) const MACVTAP_NAD: &str = "seed/macvtap-nad.yaml";
pub(super) const OVS_VLAN_100_NAD: &str = "seed/ovs-vlan-100-nad.yaml";

/// The run's VM options: on the netns cluster with the guest image (built once per
/// machine, cached); KubeVirt boots the image's container instead.
pub(super) fn vm_options(ctx: &Ctx, cluster: &AnyCluster) -> Result<VmOptions, Failure> {
    let work_dir = ctx.work_dir.join(&ctx.scope).join("vms");
    // Guests boot the image built here only where they run on this machine.
    if !cluster.guests()?.boots_local_image() {
        return Ok(VmOptions::new(None, work_dir));
    }
    let cache = std::env::var_os("SECNET_CACHE")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| image::DEFAULT_CACHE.into());
    let img = image::ensure(&cache)
        .map_err(|e| Failure::caused(format!("the guest image (cache {})", cache.display()), e))?;
    let note = format!(
        "guest image {} ({} in {:.2?}, kernel {}, {:?})",
        img.dir.display(),
        if img.built { "built" } else { "cached" },
        img.elapsed,
        img.kernel_version,
        img.format
    );
    tracing::info!("{note}");
    ctx.observed.note(&note);
    Ok(VmOptions::new(Some(img), work_dir))
}

/// Reads and validates a VM fixture (against KubeVirt's OpenAPI when it is there).
pub(super) fn vm_fixture(ctx: &Ctx, rel: &str, name: &str) -> Result<VirtualMachine, Failure> {
    let raw = match fixture(ctx, rel)?.into_iter().next() {
        Some(Object::Other { raw, .. }) => raw,
        other => return fail(format!("{rel} holds no VirtualMachine: {other:?}")),
    };
    let mut vm = match swagger_path() {
        Some(p) => VirtualMachine::validated(&Swagger::load(&p)?, &raw)?,
        None => VirtualMachine::from_value(&raw)?,
    };
    vm.name = name.to_string();
    Ok(vm)
}

/// Starts every VM (pods one by one, then the guests boot in parallel) and waits
/// for their agents. Reports boot times.
pub(super) async fn boot_all(
    ctx: &Ctx,
    cluster: &AnyCluster,
    specs: Vec<(VirtualMachine, Option<String>)>,
    nads: &[NetworkAttachmentDefinition],
    opts: &VmOptions,
) -> Result<Vec<RunningVm>, Failure> {
    let t = Instant::now();
    let mut vms = Vec::new();
    for (vm, node) in &specs {
        match cluster.start_vm(vm, node.as_deref(), nads, opts).await {
            Ok(v) => vms.push(v),
            Err(e) => {
                let _ = stop_all(cluster, &mut vms).await;
                return Err(e.into());
            }
        }
    }
    let results =
        futures::future::join_all(vms.iter_mut().map(|v| v.wait_ready(opts.boot_timeout))).await;
    if let Some(Err(e)) = results.into_iter().find(Result::is_err) {
        let _ = stop_all(cluster, &mut vms).await;
        return Err(e.into());
    }
    let boots: Vec<String> = vms
        .iter()
        .map(|v| format!("{} {:.2?}", v.vm.name, v.boot.unwrap_or_default()))
        .collect();
    // The report draws the guests in their launcher pods, as booted.
    record_topology(ctx, cluster).await;
    for v in &vms {
        ctx.observed.guest(v.snap());
    }
    tracing::info!(
        "{} guest(s) booted in parallel in {:.2?} ({}; {})",
        vms.len(),
        t.elapsed(),
        boots.join(", "),
        vms.first().map(|v| v.accel).unwrap_or("-")
    );
    Ok(vms)
}

/// The first ping of each guest to `ip`, timed from QEMU's start.
async fn first_pings(ctx: &Ctx, vms: &mut [RunningVm], ip: &str, target: &str) -> Outcome {
    for v in vms.iter_mut() {
        let t = v.first_ping(ip, Duration::from_secs(15)).await;
        ctx.observed.probe(&v.vm.name, target, true, t.is_ok());
        let t = t?;
        ctx.observed
            .phase(&format!("{} boot-to-first-ping", v.vm.name), t);
        tracing::info!(
            "{} boot-to-first-ping {t:.2?} (agent ready at {:.2?})",
            v.vm.name,
            v.boot.unwrap_or_default()
        );
    }
    Ok(())
}

async fn vm_reach(ctx: &Ctx, v: &mut RunningVm, target: &str, ip: &str, expected: bool) -> Outcome {
    let mut observed = false;
    // A couple of tries: the first frames also teach the bridges where the MACs are.
    for _ in 0..3 {
        observed = v.ping(ip).await?;
        if observed == expected {
            break;
        }
    }
    ctx.observed
        .probe(&v.vm.name, &format!("{target} ({ip})"), expected, observed);
    ensure(observed == expected, || {
        format!(
            "VM {} {} {target} ({ip})",
            v.vm.name,
            if expected { "cannot reach" } else { "reaches" }
        )
    })
}

/// Stops every guest and removes its launcher pod; each checks that nothing of it
/// is left. Every guest is stopped even when one fails; the first error is returned.
pub(super) async fn stop_all(cluster: &AnyCluster, vms: &mut [RunningVm]) -> Outcome {
    let mut first = Ok(());
    for v in vms.iter_mut() {
        if let Err(e) = v.stop(cluster).await
            && first.is_ok()
        {
            first = Err(e.into());
        }
    }
    first
}

/// Runs `check` on the booted guests, then stops them whatever its outcome.
pub(super) async fn then_stop<F>(cluster: &AnyCluster, vms: &mut [RunningVm], check: F) -> Outcome
where
    F: AsyncFnOnce(&mut [RunningVm]) -> Outcome,
{
    let outcome = check(vms).await;
    let stopped = stop_all(cluster, vms).await;
    outcome.and(stopped)
}

/// `allocated` of the seed's macvtap resource on `node` must be `want`.
pub(super) async fn allocated(cluster: &AnyCluster, node: &str, want: u64, when: &str) -> Outcome {
    let r = cluster.node_resources(node).await?;
    ensure(r.allocated.get(DATAPLANE) == Some(&want), || {
        format!(
            "{when}: node {node} has {:?} allocated, expected {DATAPLANE}: {want}",
            r.allocated
        )
    })
}

async fn macvtap_vms(ctx: &Ctx, cluster: &AnyCluster) -> Outcome {
    let opts = vm_options(ctx, cluster)?;
    let nodes = cluster.nodes();
    let nads = vec![fixture_nad(ctx, MACVTAP_NAD)?];
    let pod = cluster
        .create_pod(with_net_admin(named(
            fixture_pod(ctx, "seed/macvtap-pod.yaml")?,
            "mvt-pod",
            Some(&nodes[0]),
        )))
        .await?;
    // Guests and the pod on the LAN's subnet: .31.. for the guests, .40 the pod.
    let pod_ip = lan_host(ctx, 40);
    add_addr(cluster, &pod, &format!("{pod_ip}/24"), "net1").await?;
    let specs = vec![
        (
            vm_fixture(ctx, "seed/vm-macvtap.yaml", "vm-a")?,
            Some(nodes[0].clone()),
        ),
        (
            vm_fixture(ctx, "seed/vm-macvtap.yaml", "vm-b")?,
            Some(nodes[0].clone()),
        ),
        (
            vm_fixture(ctx, "seed/vm-macvtap.yaml", "vm-c")?,
            Some(nodes[1].clone()),
        ),
    ];
    let mut vms = boot_all(ctx, cluster, specs, &nads, &opts).await?;
    then_stop(cluster, &mut vms, async |vms: &mut [RunningVm]| {
        // MAC: guest == macvtap in the launcher pod (where the node is ours to look
        // at; KubeVirt's report of it otherwise) == network-status.
        for v in vms.iter_mut() {
            let kernel_mac = if cluster.offers(Capability::NodeAccess) {
                let link = pod_link(cluster, &v.pod, "net1").await?;
                link.mac.unwrap_or_default()
            } else {
                v.nics[0].mac.clone()
            };
            let st = status_of(&v.pod, "default/dataplane")?;
            let guest = v.guest_links().await?;
            let guest_mac = guest.first().map(|(_, m)| m.clone()).unwrap_or_default();
            ensure(
                guest_mac.eq_ignore_ascii_case(&kernel_mac)
                    && st.mac.as_deref() == Some(kernel_mac.as_str()),
                || {
                    format!(
                        "{}: guest MAC {guest_mac}, macvtap {kernel_mac}, network-status {:?}",
                        v.vm.name, st.mac
                    )
                },
            )?;
        }
        // Capacity: two VMs and a pod on node 0, one VM on node 1.
        allocated(cluster, &nodes[0], 3, "two VMs and a pod").await?;
        allocated(cluster, &nodes[1], 1, "one VM").await?;
        let vm_ips: Vec<String> = (0..vms.len())
            .map(|i| lan_host(ctx, 31 + i as u8))
            .collect();
        for (v, ip) in vms.iter_mut().zip(&vm_ips) {
            v.configure(&[(0, format!("{ip}/24").as_str())]).await?;
        }
        first_pings(ctx, vms, &pod_ip, "mvt-pod").await?;
        let (a, rest) = vms.split_at_mut(1);
        let a = &mut a[0];
        vm_reach(ctx, a, "vm-b (same node)", &vm_ips[1], true).await?;
        vm_reach(ctx, a, "vm-c (other node)", &vm_ips[2], true).await?;
        vm_reach(ctx, &mut rest[1], "mvt-pod (other node)", &pod_ip, true).await?;
        expect_reach(ctx, cluster, &pod, "vm-a", &vm_ips[0], true).await?;
        record_topology(ctx, cluster).await;
        // Stopping the VMs deletes their launcher pods: the macvtaps come back.
        stop_all(cluster, vms).await?;
        allocated(cluster, &nodes[0], 1, "after deleting the VMs").await
    })
    .await
}

/// The seed's macvlan NAD on the cluster's lower device (as `seed/macvlan-test`).
pub(super) async fn apply_macvlan_nad(
    ctx: &Ctx,
    cluster: &AnyCluster,
) -> Result<NetworkAttachmentDefinition, Failure> {
    let mut n = fixture_nad(ctx, "seed/macvlan-nad.yaml")?;
    let mut config: Value = serde_json::from_str(&n.spec.config)?;
    config["master"] = Value::from(cluster.lower_device());
    config["cniVersion"] = Value::from("0.3.1");
    n.spec.config = config.to_string();
    cluster.apply(vec![Object::Nad(n.clone())]).await?;
    Ok(n)
}

async fn macvlan_bridge_vm(ctx: &Ctx, cluster: &AnyCluster) -> Outcome {
    let opts = vm_options(ctx, cluster)?;
    let nodes = cluster.nodes();
    let nads = vec![apply_macvlan_nad(ctx, cluster).await?];
    let pod = cluster
        .create_pod(Pod::plain(
            "mvl-pod",
            &nodes[1],
            r#"[{"name": "macvlan-test", "ips": ["10.250.250.100/24"]}]"#,
        ))
        .await?;
    let vm = vm_fixture(ctx, "seed/vm-macvlan-bridge.yaml", "vm-macvlan")?;
    let mut vms = boot_all(
        ctx,
        cluster,
        vec![(vm, Some(nodes[0].clone()))],
        &nads,
        &opts,
    )
    .await?;
    then_stop(cluster, &mut vms, async |vms: &mut [RunningVm]| {
        let v = &mut vms[0];
        let st = status_of(&v.pod, "default/macvlan-test")?;
        let ip = st
            .ips
            .first()
            .cloned()
            .ok_or("host-local gave the launcher pod no address")?;
        ensure(ip.starts_with("10.250.250."), || {
            format!("{ip} is outside 10.250.250.0/24")
        })?;
        ensure(st.mac.as_deref() == Some(v.nics[0].mac.as_str()), || {
            format!(
                "guest NIC MAC {} is not the pod interface's {:?}",
                v.nics[0].mac, st.mac
            )
        })?;
        ensure(
            v.nics[0]
                .addresses
                .iter()
                .any(|a| a.starts_with(&format!("{ip}/"))),
            || format!("the guest is not given {ip}: {:?}", v.nics[0].addresses),
        )?;
        v.configure(&[]).await?;
        let dev = v.guest_ifname(&v.nics[0].mac.clone()).await?;
        let addrs = v.run(&format!("ip -o -4 addr show dev {dev}")).await?;
        ensure(addrs.contains(&format!("{ip}/")), || {
            format!("guest {dev} has {addrs}")
        })?;
        first_pings(ctx, vms, "10.250.250.100", "mvl-pod").await?;
        expect_reach(ctx, cluster, &pod, "vm-macvlan", &ip, true).await?;
        stop_all(cluster, vms).await
    })
    .await
}

async fn masquerade_vm(ctx: &Ctx, cluster: &AnyCluster) -> Outcome {
    // Where secnet made the nodes it also routes and NATs their pod networks;
    // elsewhere the cluster's own masquerade is checked.
    let Some(local) = cluster.local_topology() else {
        return masquerade_vm_on_kubevirt(ctx, cluster).await;
    };
    let topo = local.topology();
    let opts = vm_options(ctx, cluster)?;
    let nodes = cluster.nodes();
    // The node routes its pods to the fabric and hides them behind its uplink address.
    let node_ns = local.node_namespace(&nodes[0]).await?;
    std::fs::create_dir_all(&opts.work_dir)?;
    crate::vm::binding::node_masquerade(
        &node_ns.path(),
        &topo.pod_subnet(0),
        &topo.nodes[0].uplink,
        &opts.work_dir,
    )
    .await?;
    let vm = vm_fixture(ctx, "seed/vmi-masquerade.yaml", "vmi-masquerade")?;
    let mut vms = boot_all(ctx, cluster, vec![(vm, Some(nodes[0].clone()))], &[], &opts).await?;
    then_stop(cluster, &mut vms, async |vms: &mut [RunningVm]| {
        vms[0].configure(&[]).await?;
        let gateway = topo.fabric.gateway.to_string();
        first_pings(ctx, vms, &gateway, "fabric gateway").await?;
        vm_reach(
            ctx,
            &mut vms[0],
            "the launcher pod's gateway",
            crate::vm::binding::MASQ_GATEWAY,
            true,
        )
        .await?;
        stop_all(cluster, vms).await
    })
    .await
}

/// The real-cluster form: the fabric is not secnet's, so the guest reaches
/// KubeVirt's masquerade gateway in its launcher pod (the NAT's inside).
async fn masquerade_vm_on_kubevirt(ctx: &Ctx, cluster: &AnyCluster) -> Outcome {
    let opts = vm_options(ctx, cluster)?;
    let nodes = cluster.nodes();
    let vm = vm_fixture(ctx, "seed/vmi-masquerade.yaml", "vmi-masquerade")?;
    let mut vms = boot_all(ctx, cluster, vec![(vm, Some(nodes[0].clone()))], &[], &opts).await?;
    then_stop(cluster, &mut vms, async |vms: &mut [RunningVm]| {
        vms[0].configure(&[]).await?;
        let gateway = crate::vm::binding::MASQ_GATEWAY;
        first_pings(ctx, vms, gateway, "the launcher pod's masquerade gateway").await?;
        stop_all(cluster, vms).await
    })
    .await
}

async fn ovs_bridge_vm(ctx: &Ctx, cluster: &AnyCluster) -> Outcome {
    let opts = vm_options(ctx, cluster)?;
    let nodes = cluster.nodes();
    let nads = vec![fixture_nad(ctx, OVS_VLAN_100_NAD)?];
    let pod = cluster
        .create_pod(Pod::plain("ovs-pod", &nodes[1], "ovs-vlan-100"))
        .await?;
    add_addr(cluster, &pod, "10.100.0.20/24", "net1").await?;
    let vm = vm_fixture(ctx, "seed/vm-ovs-vlan100.yaml", "vm-ovs")?;
    let mut vms = boot_all(
        ctx,
        cluster,
        vec![(vm, Some(nodes[0].clone()))],
        &nads,
        &opts,
    )
    .await?;
    then_stop(cluster, &mut vms, async |vms: &mut [RunningVm]| {
        let v = &mut vms[0];
        let st = status_of(&v.pod, "default/ovs-vlan-100")?;
        ensure(st.mac.as_deref() == Some(v.nics[0].mac.as_str()), || {
            format!(
                "guest MAC {} is not the pod interface's {:?}",
                v.nics[0].mac, st.mac
            )
        })?;
        ensure(v.nics[0].pod_mac.as_ref() != Some(&v.nics[0].mac), || {
            "the pod interface kept the guest's MAC (KubeVirt gives it another)".into()
        })?;
        v.configure(&[(0, "10.100.0.10/24")]).await?;
        first_pings(ctx, vms, "10.100.0.20", "ovs-pod (VLAN 100, other node)").await?;
        expect_reach(ctx, cluster, &pod, "vm-ovs", "10.100.0.10", true).await?;
        stop_all(cluster, vms).await
    })
    .await
}

async fn boot_failure(ctx: &Ctx, cluster: &AnyCluster) -> Outcome {
    let mut opts = vm_options(ctx, cluster)?;
    opts.extra_cmdline = "rdinit=/secnet-no-such-init".into();
    opts.boot_timeout = Duration::from_secs(30);
    let nads = vec![fixture_nad(ctx, MACVTAP_NAD)?];
    let node = cluster.nodes()[0].clone();
    let vm = vm_fixture(ctx, "seed/vm-macvtap.yaml", "vm-broken")?;
    let mut v = cluster.start_vm(&vm, Some(&node), &nads, &opts).await?;
    let err = match v.wait_ready(opts.boot_timeout).await {
        Ok(_) => {
            let _ = v.stop(cluster).await;
            return fail("a guest without an init booted");
        }
        Err(e) => e,
    };
    // Whatever the host, nothing of the guest may be left once stopped.
    let stopped = v.stop(cluster).await;
    ensure(
        err.contains("--- console of") && err.contains("Kernel panic"),
        || format!("the boot failure does not carry the console's kernel panic: {err}"),
    )?;
    stopped?;
    allocated(cluster, &node, 0, "after stopping the failed VM").await
}
