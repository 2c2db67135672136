//! IPv6 and dual-stack on the secondary networks (kubevirt 7506: multus VM tests
//! are IPv4-only): macvlan with host-local IPv6 and dual-stack ranges, an OVS
//! VLAN carrying IPv6, macvtap pods with a static address and one from the
//! fabric router's advertisements (SLAAC), and VMs on the macvtap and bridge
//! bindings with IPv6 in the guest. Each checks network-status against the
//! kernel (or the guest), and reachability in each family across nodes.

use std::net::Ipv6Addr;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::kit::{self, fixture_pod, named, pod_run, with_net_admin};
use super::{Capability, Ctx, Failure, Outcome, Scenario, fail};
use crate::cluster::any::AnyCluster;
use crate::cluster::{Cluster, PodView};
use crate::objects::{Meta, NadSpec, NetworkAttachmentDefinition, Object, Pod};

/// The macvlan pairs' group on a shared cluster: both put pods v6-a and v6-b on
/// the LAN in `V6_RANGE` (v6-b at `B_V6`); their NADs, pools and probes are their own.
const V6_LAN_GROUP: &str = "ipv6 pairs on the LAN";

pub fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario::on_cluster(
            "ipv6/macvlan with host-local IPv6: pods reach each other across nodes",
            "macvlan",
            "pod",
            &["ipv6", "ipam", "reachability", "network-status"],
            |ctx, c| Box::pin(macvlan(ctx, c, false)),
        )
        .shares_nodes_but_not_within(V6_LAN_GROUP),
        Scenario::on_cluster(
            "ipv6/dual-stack macvlan: both families in network-status and in reach",
            "macvlan",
            "pod",
            &["ipv6", "ipam", "reachability", "network-status"],
            |ctx, c| Box::pin(macvlan(ctx, c, true)),
        )
        .shares_nodes_but_not_within(V6_LAN_GROUP),
        Scenario::on_cluster(
            "ipv6/OVS VLAN 100 carries IPv6 across nodes",
            "ovs",
            "pod",
            &["ipv6", "vlan", "ipam", "reachability"],
            |ctx, c| Box::pin(ovs_vlan(ctx, c)),
        )
        .needs(&[Capability::Ovs]),
        Scenario::on_cluster(
            "ipv6/macvtap pods: SLAAC from the fabric router and static addresses",
            "macvtap",
            "pod",
            &["ipv6", "reachability", "dhcp"],
            |ctx, c| Box::pin(macvtap(ctx, c)),
        )
        .needs(&[Capability::Dhcp])
        .deploy_macvtap_seed(),
        Scenario::on_cluster(
            "ipv6/macvtap VM: SLAAC and a static address in the guest, reached from a pod across nodes",
            "macvtap",
            "vm",
            &["ipv6", "vm", "reachability", "dhcp"],
            |ctx, c| Box::pin(macvtap_vm(ctx, c)),
        )
        .needs(&[Capability::Vm, Capability::Dhcp])
        .deploy_macvtap_seed(),
        Scenario::on_cluster(
            "ipv6/bridge-binding VM on OVS VLAN 100: a static IPv6 address in the guest, reaches and is reached by a VLAN 100 pod across nodes",
            "ovs",
            "vm",
            &["ipv6", "vm", "ovs", "vlan", "reachability", "network-status"],
            |ctx, c| Box::pin(ovs_bridge_vm(ctx, c)),
        )
        .needs(&[Capability::Vm, Capability::Ovs])
        .deploy(&[super::vm::OVS_VLAN_100_NAD]),
        Scenario::on_cluster(
            "ipv6/bridge-binding VM on macvlan-test: SLAAC and a static IPv6 address next to host-local IPv4 in the guest, reaches and is reached by a pod across nodes",
            "macvlan",
            "vm",
            &["ipv6", "vm", "macvlan", "reachability", "network-status"],
            |ctx, c| Box::pin(macvlan_bridge_vm(ctx, c)),
        )
        .needs(&[Capability::Vm, Capability::Dhcp]),
    ]
}

const V4_RANGE: &str = "10.252.0.0/24";
const V6_RANGE: &str = "fd00:252::/64";
/// The second pod's addresses, asked for in its selection.
const B_V4: &str = "10.252.0.200";
const B_V6: &str = "fd00:252::b2";

fn nad(name: &str, config: Value) -> Object {
    Object::Nad(NetworkAttachmentDefinition {
        metadata: Meta {
            name: name.into(),
            namespace: "default".into(),
            ..Default::default()
        },
        spec: NadSpec {
            config: config.to_string(),
        },
    })
}

fn two_nodes(c: &AnyCluster) -> Result<(String, String), Failure> {
    match c.nodes().as_slice() {
        [a, b, ..] => Ok((a.clone(), b.clone())),
        other => fail(format!("needs two nodes, the cluster has {other:?}")),
    }
}

/// host-local ranges: IPv6 only, or IPv4 and IPv6.
fn ranges(dual: bool) -> Value {
    let mut r = vec![json!([{"subnet": V6_RANGE}])];
    if dual {
        r.insert(0, json!([{"subnet": V4_RANGE}]));
    }
    json!(r)
}

/// The addresses of `ifname` in the pod (no link-local), without prefix length,
/// once none is tentative (duplicate address detection done).
pub async fn settled_addresses(
    c: &AnyCluster,
    pod: &PodView,
    ifname: &str,
    within: Duration,
) -> Result<Vec<String>, Failure> {
    let start = Instant::now();
    loop {
        let all = crate::contract::probe::pod_oneline_addrs(c, pod, ifname).await?;
        let tentative = all.iter().any(|a| a.tentative);
        let addrs: Vec<String> = all
            .iter()
            .filter(|a| !a.is_link_local())
            .map(|a| a.local.to_string())
            .collect();
        if !tentative || start.elapsed() > within {
            return Ok(addrs);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Network-status `ips` of the pod's `net1` equal the kernel's, with one address
/// of each family asked for; returns them.
async fn checked_ips(
    c: &AnyCluster,
    pod: &PodView,
    network: &str,
    dual: bool,
) -> Result<Vec<String>, Failure> {
    let status = kit::status_of(pod, network)?.ips;
    let kernel = settled_addresses(c, pod, "net1", Duration::from_secs(5)).await?;
    let v6 = status.iter().filter(|ip| ip.contains(':')).count();
    let v4 = status.len() - v6;
    if v6 != 1 || v4 != usize::from(dual) {
        return fail(format!(
            "{}: network-status ips {status:?}: want one IPv6{} address",
            pod.name,
            if dual { " and one IPv4" } else { "" }
        ));
    }
    let mut a = status.clone();
    let mut b = kernel.clone();
    a.sort();
    b.sort();
    if a != b {
        return fail(format!(
            "{}: network-status ips {status:?}, but net1 has {kernel:?}",
            pod.name
        ));
    }
    Ok(status)
}

/// Every address of `to` (named `target`) is reached from `from`, a few tries each
/// (neighbour discovery on a fresh link).
async fn reach_all(
    ctx: &Ctx,
    c: &AnyCluster,
    from: &PodView,
    target: &str,
    ips: &[String],
) -> Outcome {
    for ip in ips {
        let mut ok = false;
        for _ in 0..5 {
            if kit::ping(c, from, ip).await? {
                ok = true;
                break;
            }
        }
        ctx.observed
            .probe(&from.name, &format!("{target} ({ip})"), true, ok);
        if !ok {
            return fail(format!("{} cannot reach {target} ({ip})", from.name));
        }
    }
    Ok(())
}

async fn pair(ctx: &Ctx, c: &AnyCluster, network: &str, dual: bool) -> Outcome {
    let (n1, n2) = two_nodes(c)?;
    let a = c.create_pod(Pod::plain("v6-a", &n1, network)).await?;
    // host-local leases per node: the second pod asks for its addresses (the
    // uniqueness check after the scenario catches two pods with one address).
    // Through cni-args (args.cni.ips): multus' `ips` also becomes CNI_ARGS
    // `IP=v4,v6`, which host-local cannot parse (one address only).
    let mut ips = vec![json!(B_V6)];
    if dual {
        ips.insert(0, json!(B_V4));
    }
    let selection = json!([{"name": network, "cni-args": {"ips": ips}}]).to_string();
    let b = c.create_pod(Pod::plain("v6-b", &n2, &selection)).await?;
    let status_name = format!("default/{network}");
    let ips_a = checked_ips(c, &a, &status_name, dual).await?;
    let ips_b = checked_ips(c, &b, &status_name, dual).await?;
    // The truth table in every family asked for: ICMP, TCP and UDP each way.
    let mut table = kit::Table::new(5);
    for ip in &ips_b {
        table = table.pod(&a, &b, "v6-b", ip, true);
    }
    for ip in &ips_a {
        table = table.pod(&b, &a, "v6-a", ip, true);
    }
    table.check(ctx, c).await
}

async fn macvlan(ctx: &Ctx, c: &AnyCluster, dual: bool) -> Outcome {
    let name = if dual { "dual-macvlan" } else { "v6-macvlan" };
    let config = json!({"cniVersion": "1.0.0", "type": "macvlan", "master": c.lower_device(),
                        "mode": "bridge", "ipam": {"type": "host-local", "ranges": ranges(dual)}});
    c.apply(vec![nad(name, config)]).await?;
    pair(ctx, c, name, dual).await
}

async fn ovs_vlan(ctx: &Ctx, c: &AnyCluster) -> Outcome {
    let seed = kit::fixture_nad(ctx, "seed/ovs-vlan-100-nad.yaml")?;
    let mut config: Value = serde_json::from_str(&seed.spec.config)?;
    config["ipam"] = json!({"type": "host-local", "ranges": ranges(false)});
    c.apply(vec![nad("v6-ovs-vlan-100", config)]).await?;
    pair(ctx, c, "v6-ovs-vlan-100", false).await
}

/// The first address of the pod's net1 in the fabric's /64 (that of `gw6`),
/// waiting up to `within` for the router's advertisement. Where the cluster's pods
/// are namespaces of this machine, the pod solicits one every 2 s until it has
/// the address: net1 has no link-local address (the plugins keep it quiet), so
/// its kernel never does, and the router's unsolicited ones come 5 to 20 s apart
/// (`lab::solicit`). Elsewhere the wait is for those.
async fn slaac_address(
    c: &AnyCluster,
    pod: &PodView,
    gw6: Ipv6Addr,
    within: Duration,
) -> Result<String, Failure> {
    const SOLICIT_EVERY: Duration = Duration::from_secs(2);
    let start = Instant::now();
    let on_lan = |a: &String| {
        a.parse::<Ipv6Addr>()
            .is_ok_and(|a| a.segments()[..4] == gw6.segments()[..4])
    };
    let netns = match c.local_topology() {
        Some(local) => Some(local.pod_namespace(pod).await?.open().map_err(|e| {
            Failure::from(format!("{}: opening its network namespace: {e}", pod.name))
        })?),
        None => None,
    };
    let mut solicited: Option<Instant> = None;
    loop {
        if let Some(netns) = &netns
            && solicited.is_none_or(|at| at.elapsed() >= SOLICIT_EVERY)
        {
            crate::lab::solicit::router_solicitation(netns, "net1").map_err(|e| {
                Failure::from(format!(
                    "{}: sending a router solicitation out of net1: {e}",
                    pod.name
                ))
            })?;
            solicited = Some(Instant::now());
        }
        let addrs = settled_addresses(c, pod, "net1", Duration::from_secs(3)).await?;
        if let Some(a) = addrs.iter().find(|a| on_lan(a)) {
            return Ok(a.clone());
        }
        if start.elapsed() > within {
            let asked = if netns.is_some() {
                " though it solicited one every 2 s"
            } else {
                ""
            };
            return fail(format!(
                "{}: no SLAAC address in the fabric's /64 (gateway {gw6}) on net1 after {within:?} (has {addrs:?}): no router advertisement arrived{asked}",
                pod.name
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The fabric's IPv6 gateway and the LAN addresses of `hosts`, or the failure that
/// says how to give the topology an IPv6 prefix.
fn fabric_v6<const N: usize>(
    ctx: &Ctx,
    hosts: [u16; N],
) -> Result<(Ipv6Addr, [Ipv6Addr; N]), Failure> {
    let missing = || {
        Failure::from(
            "the topology has no fabric.subnet6/gateway6: add them to test IPv6 on the LAN",
        )
    };
    let gw6 = ctx.topology.fabric.gateway6.ok_or_else(missing)?;
    let mut addrs = [Ipv6Addr::UNSPECIFIED; N];
    for (addr, host) in addrs.iter_mut().zip(hosts) {
        *addr = ctx.topology.lan_host6(host).ok_or_else(missing)?;
    }
    Ok((gw6, addrs))
}

async fn macvtap(ctx: &Ctx, c: &AnyCluster) -> Outcome {
    let (gw6, [static_a, static_b]) = fabric_v6(ctx, [0xa1, 0xb1])?;
    let (n1, n2) = two_nodes(c)?;
    let base = with_net_admin(fixture_pod(ctx, "seed/macvtap-pod.yaml")?);
    let started = kit::start_pods(
        c,
        vec![
            named(base.clone(), "v6-mvt-a", Some(&n1)),
            named(base, "v6-mvt-b", Some(&n2)),
        ],
    )
    .await?;
    let (a, b) = (&started[0], &started[1]);
    let slaac_a = slaac_address(c, a, gw6, Duration::from_secs(20)).await?;
    let slaac_b = slaac_address(c, b, gw6, Duration::from_secs(20)).await?;
    ctx.observed
        .note(&format!("SLAAC: v6-mvt-a {slaac_a}, v6-mvt-b {slaac_b}"));
    for (p, addr) in [(&a, static_a), (&b, static_b)] {
        let cidr = format!("{addr}/64");
        let args = ["-6", "addr", "add", &cidr, "dev", "net1", "nodad"];
        // A real cluster's busybox `ip` has no `nodad`: this machine's iproute2 in
        // the pod's namespace where the cluster's nodes are reachable.
        if c.offers(Capability::NodeAccess) {
            c.pod_ip(p, &args).await?;
        } else {
            let argv: Vec<&str> = std::iter::once("ip").chain(args).collect();
            pod_run(c, p, &argv).await?;
        }
    }
    let gw = gw6.to_string();
    reach_all(ctx, c, a, "fabric gateway", std::slice::from_ref(&gw)).await?;
    reach_all(ctx, c, b, "fabric gateway", std::slice::from_ref(&gw)).await?;
    reach_all(ctx, c, a, "v6-mvt-b", &[slaac_b, static_b.to_string()]).await?;
    reach_all(ctx, c, b, "v6-mvt-a", &[slaac_a, static_a.to_string()]).await
}

/// The guest's address on `dev` in the fabric's /64 (that of `gw6`) other than
/// `not`, once no address is tentative, waiting up to `within` for the router.
async fn guest_slaac(
    vm: &mut crate::vm::RunningVm,
    dev: &str,
    gw6: Ipv6Addr,
    not: &str,
    within: Duration,
) -> Result<String, Failure> {
    let start = Instant::now();
    loop {
        let out = vm.run(&format!("ip -o -6 addr show dev {dev}")).await?;
        let found = out
            .lines()
            .filter(|l| !l.contains("tentative"))
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                w.position(|t| t == "inet6")?;
                w.next()?.split('/').next().map(str::to_string)
            })
            .find(|a| {
                a != not
                    && a.parse::<Ipv6Addr>()
                        .is_ok_and(|a| a.segments()[..4] == gw6.segments()[..4])
            });
        if let Some(a) = found {
            return Ok(a);
        }
        if start.elapsed() > within {
            return fail(format!(
                "VM {}: no SLAAC address in the fabric's /64 (gateway {gw6}) on {dev} after {within:?}: {out}",
                vm.vm.name
            ));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// A VM on macvtap (KubeVirt's macvtap binding) on one node, a macvtap pod on the
/// other: the guest takes a SLAAC address from the fabric router's advertisements
/// and a static one. QEMU does not hand the guest's multicast filter to the macvtap,
/// so the macvtap drops the neighbour solicitations for the guest's addresses: the
/// pod cannot resolve the guest's static address until the launcher's macvtap takes
/// all multicast (what a binding that trusts the guest's receive filter does). Then
/// the pod reaches both addresses and the guest reaches the pod's and the gateway.
async fn macvtap_vm(ctx: &Ctx, c: &AnyCluster) -> Outcome {
    use super::vm::{MACVTAP_NAD, boot_all, then_stop, vm_fixture, vm_options};
    let (gw6, [static_vm, static_pod]) = fabric_v6(ctx, [0xc1, 0xc2])?;
    let (n1, n2) = two_nodes(c)?;
    let opts = vm_options(ctx, c)?;
    let nads = vec![kit::fixture_nad(ctx, MACVTAP_NAD)?];
    let pod = c
        .create_pod(named(
            with_net_admin(fixture_pod(ctx, "seed/macvtap-pod.yaml")?),
            "v6-vm-peer",
            Some(&n1),
        ))
        .await?;
    let slaac_pod = slaac_address(c, &pod, gw6, Duration::from_secs(20)).await?;
    pod_run(
        c,
        &pod,
        &[
            "ip",
            "-6",
            "addr",
            "add",
            &format!("{static_pod}/64"),
            "dev",
            "net1",
            "nodad",
        ],
    )
    .await?;
    let specs = vec![(vm_fixture(ctx, "seed/vm-macvtap.yaml", "v6-vm")?, Some(n2))];
    let mut vms = boot_all(ctx, c, specs, &nads, &opts).await?;
    then_stop(c, &mut vms, async |vms: &mut [crate::vm::RunningVm]| {
        let vm = &mut vms[0];
        let static_cidr = format!("{static_vm}/64");
        vm.configure(&[(0, static_cidr.as_str())]).await?;
        let mac = vm.nics[0].mac.clone();
        let dev = vm.guest_ifname(&mac).await?;
        let slaac_vm = guest_slaac(vm, &dev, gw6, &static_vm.to_string(), Duration::from_secs(20))
            .await?;
        ctx.observed.note(&format!(
            "guest {dev}: SLAAC {slaac_vm}, static {static_vm}; pod net1: SLAAC {slaac_pod}, static {static_pod}"
        ));
        // Before the guest has sent the pod anything: its static address cannot be
        // resolved through the macvtap's multicast filter.
        let filtered = kit::ping(c, &pod, &static_vm.to_string()).await?;
        ctx.observed.probe(
            &pod.name,
            &format!("v6-vm ({static_vm}), launcher macvtap without allmulticast"),
            false,
            filtered,
        );
        if filtered {
            return fail(format!(
                "{} reached the guest's static {static_vm} through a macvtap without allmulticast: the guest's multicast groups now reach the macvtap; drop the allmulticast step of this scenario",
                pod.name
            ));
        }
        ctx.observed.note(
            "the launcher's macvtap drops the neighbour solicitations for the guest's addresses (QEMU does not apply the guest's multicast filter to it): allmulticast set on it",
        );
        pod_run(c, &vm.pod, &["ip", "link", "set", "net1", "allmulticast", "on"]).await?;
        reach_all(ctx, c, &pod, "v6-vm", &[static_vm.to_string(), slaac_vm]).await?;
        for (target, ip) in [
            ("fabric gateway", gw6.to_string()),
            ("v6-vm-peer (SLAAC)", slaac_pod.clone()),
            ("v6-vm-peer (static)", static_pod.to_string()),
        ] {
            let mut ok = false;
            for _ in 0..5 {
                if vm.ping(&ip).await? {
                    ok = true;
                    break;
                }
            }
            ctx.observed
                .probe(&vm.vm.name, &format!("{target} ({ip})"), true, ok);
            if !ok {
                let state = vm.guest_state().await;
                return fail(format!(
                    "VM {} cannot reach {target} ({ip}): {state}",
                    vm.vm.name
                ));
            }
        }
        Ok(())
    })
    .await
}

/// Static addresses on VLAN 100 (no router there: no advertisements, no SLAAC).
const VLAN100_VM6: &str = "fd00:100::10";
const VLAN100_POD6: &str = "fd00:100::20";

/// The guest's IPv6 addresses on `dev` (no link-local), once none is tentative.
async fn guest_addresses6(
    vm: &mut crate::vm::RunningVm,
    dev: &str,
    within: Duration,
) -> Result<Vec<String>, Failure> {
    let start = Instant::now();
    loop {
        let out = vm.run(&format!("ip -o -6 addr show dev {dev}")).await?;
        let addrs: Vec<String> = out
            .lines()
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                w.position(|t| t == "inet6")?;
                let ip = w.next()?.split('/').next()?;
                (!ip.starts_with("fe80")).then(|| ip.to_string())
            })
            .collect();
        if !out.contains("tentative") || start.elapsed() > within {
            return Ok(addrs);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A VM on KubeVirt's bridge binding (the guest's NIC bridged to the launcher
/// pod's OVS port) on one node, a VLAN 100 pod on the other: the guest takes a
/// static IPv6 address (the VLAN has no router, so no SLAAC), network-status
/// carries the guest's MAC and no address (the seed's NAD has no IPAM), and the
/// guest and the pod reach each other in IPv6. Unlike macvtap, the launcher's
/// Linux bridge floods the neighbour solicitations to the guest: no multicast step.
async fn ovs_bridge_vm(ctx: &Ctx, c: &AnyCluster) -> Outcome {
    use super::vm::{OVS_VLAN_100_NAD, boot_all, then_stop, vm_fixture, vm_options};
    let (n1, n2) = two_nodes(c)?;
    let opts = vm_options(ctx, c)?;
    let nads = vec![kit::fixture_nad(ctx, OVS_VLAN_100_NAD)?];
    let pod = c
        .create_pod(Pod::plain("v6-ovs-peer", &n2, "ovs-vlan-100"))
        .await?;
    kit::add_addr(c, &pod, &format!("{VLAN100_POD6}/64"), "net1").await?;
    let pod_addrs = settled_addresses(c, &pod, "net1", Duration::from_secs(5)).await?;
    if !pod_addrs.iter().any(|a| a == VLAN100_POD6) {
        return fail(format!(
            "v6-ovs-peer: net1 has {pod_addrs:?}, not {VLAN100_POD6}"
        ));
    }
    let specs = vec![(
        vm_fixture(ctx, "seed/vm-ovs-vlan100.yaml", "v6-vm-ovs")?,
        Some(n1),
    )];
    let mut vms = boot_all(ctx, c, specs, &nads, &opts).await?;
    then_stop(c, &mut vms, async |vms: &mut [crate::vm::RunningVm]| {
        let vm = &mut vms[0];
        let st = kit::status_of(&vm.pod, "default/ovs-vlan-100")?;
        if st.mac.as_deref() != Some(vm.nics[0].mac.as_str()) || !st.ips.is_empty() {
            return fail(format!(
                "network-status of the launcher pod: mac {:?} ips {:?}; want the guest's {} and no address (no IPAM)",
                st.mac, st.ips, vm.nics[0].mac
            ));
        }
        vm.configure(&[(0, format!("{VLAN100_VM6}/64").as_str())])
            .await?;
        let mac = vm.nics[0].mac.clone();
        let dev = vm.guest_ifname(&mac).await?;
        let addrs = guest_addresses6(vm, &dev, Duration::from_secs(5)).await?;
        if addrs != [VLAN100_VM6] {
            return fail(format!(
                "guest {dev}: IPv6 addresses {addrs:?}, want only {VLAN100_VM6} (static; no router on VLAN 100, so no SLAAC address either)"
            ));
        }
        ctx.observed.note(&format!(
            "guest {dev}: static {VLAN100_VM6} (VLAN 100 has no router: no SLAAC); pod net1: {VLAN100_POD6}"
        ));
        guest_reaches(ctx, vm, "v6-ovs-peer", VLAN100_POD6).await?;
        reach_all(ctx, c, &pod, "v6-vm-ovs", &[VLAN100_VM6.to_string()]).await
    })
    .await
}

/// The guest reaches `ip` (named `target`), a few tries (neighbour discovery).
async fn guest_reaches(
    ctx: &Ctx,
    vm: &mut crate::vm::RunningVm,
    target: &str,
    ip: &str,
) -> Outcome {
    let mut ok = false;
    for _ in 0..5 {
        if vm.ping(ip).await? {
            ok = true;
            break;
        }
    }
    ctx.observed
        .probe(&vm.vm.name, &format!("{target} ({ip})"), true, ok);
    if !ok {
        let state = vm.guest_state().await;
        return fail(format!(
            "VM {} cannot reach {target} ({ip}): {state}",
            vm.vm.name
        ));
    }
    Ok(())
}

/// A VM on KubeVirt's bridge binding on the seed's macvlan-test (the node's
/// uplink, where the fabric router advertises its /64) on one node, a
/// macvlan-test pod on the other: network-status carries the launcher pod's
/// host-local IPv4 and the guest's MAC; the guest keeps that IPv4, takes a SLAAC
/// address from the router and a static one, and reaches the pod's static IPv6
/// and the gateway; the pod reaches both guest addresses.
async fn macvlan_bridge_vm(ctx: &Ctx, c: &AnyCluster) -> Outcome {
    use super::vm::{apply_macvlan_nad, boot_all, then_stop, vm_fixture, vm_options};
    let (gw6, [static_vm, static_pod]) = fabric_v6(ctx, [0xd1, 0xd2])?;
    let (n1, n2) = two_nodes(c)?;
    let opts = vm_options(ctx, c)?;
    let nads = vec![apply_macvlan_nad(ctx, c).await?];
    let pod = c
        .create_pod(Pod::plain(
            "v6-mvl-peer",
            &n2,
            r#"[{"name": "macvlan-test", "ips": ["10.250.250.101/24"]}]"#,
        ))
        .await?;
    kit::add_addr(c, &pod, &format!("{static_pod}/64"), "net1").await?;
    let specs = vec![(
        vm_fixture(ctx, "seed/vm-macvlan-bridge.yaml", "v6-vm-mvl")?,
        Some(n1),
    )];
    let mut vms = boot_all(ctx, c, specs, &nads, &opts).await?;
    then_stop(c, &mut vms, async |vms: &mut [crate::vm::RunningVm]| {
        let vm = &mut vms[0];
        let st = kit::status_of(&vm.pod, "default/macvlan-test")?;
        let v4 = match st.ips.as_slice() {
            [ip] if ip.starts_with("10.250.250.") => ip.clone(),
            other => {
                return fail(format!(
                    "network-status of the launcher pod: ips {other:?}; want one host-local address in 10.250.250.0/24"
                ));
            }
        };
        if st.mac.as_deref() != Some(vm.nics[0].mac.as_str()) {
            return fail(format!(
                "network-status mac {:?} is not the guest's {}",
                st.mac, vm.nics[0].mac
            ));
        }
        vm.configure(&[(0, format!("{static_vm}/64").as_str())])
            .await?;
        let mac = vm.nics[0].mac.clone();
        let dev = vm.guest_ifname(&mac).await?;
        let slaac_vm =
            guest_slaac(vm, &dev, gw6, &static_vm.to_string(), Duration::from_secs(20)).await?;
        let v4_addrs = vm.run(&format!("ip -o -4 addr show dev {dev}")).await?;
        if !v4_addrs.contains(&format!("{v4}/")) {
            return fail(format!("guest {dev} lost {v4}: {v4_addrs}"));
        }
        ctx.observed.note(&format!(
            "guest {dev}: IPv4 {v4} (host-local), SLAAC {slaac_vm}, static {static_vm}; pod net1: static {static_pod}"
        ));
        guest_reaches(ctx, vm, "fabric gateway", &gw6.to_string()).await?;
        guest_reaches(ctx, vm, "v6-mvl-peer", &static_pod.to_string()).await?;
        reach_all(
            ctx,
            c,
            &pod,
            "v6-vm-mvl",
            &[static_vm.to_string(), slaac_vm, v4],
        )
        .await
    })
    .await
}
