//! ADD, DEL, CHECK, STATUS and GC, top to bottom.

use std::path::Path;

use cni_kit::failure::{io as io_failure, netlink as netlink_failure, open_netns};
use cni_kit::netns::{LinkFacts, NetNs, errno, link_by_index, link_by_name, netlink_in};
use cni_kit::result::{CniResult, Interface};
use cni_kit::skel::{AddArgs, Expected, Naming, pod_link_problems};
use cni_kit::tapdev::{self, TapDevError};
use cni_kit::{CniError, Command, ErrorCode, Invocation, MacAddr};
use nix::errno::Errno;
use rtnetlink::packet_route::link::MacVtapMode;
use rtnetlink::{Handle, LinkMacVtap, LinkUnspec};

use crate::config::{DelConf, MacvtapMode, NetConf, Source};
use cni_kit::naming::{device_plugin_mark, hashed_link_name, standalone_temp_name};
use cni_kit::policy::{DEVICE_PLUGIN_ALIAS_PREFIX, Policy};

/// Dispatches one invocation. VERSION is answered by `cni_kit::invocation::run_plugin`.
/// Each command reads only what it uses: DEL must succeed for a configuration
/// that ADD refused.
pub async fn handle(inv: &Invocation) -> Result<Option<String>, CniError> {
    match inv.command {
        Command::Add => {
            let conf = NetConf::parse(inv)?;
            let policy = Policy::load()?;
            conf.authorize(&policy)?;
            add(&AddArgs::of(inv), &conf, &policy).await.map(Some)
        }
        Command::Del => del(inv, &DelConf::parse(inv)).await.map(|()| None),
        Command::Check => check(&AddArgs::of(inv), &NetConf::parse(inv)?)
            .await
            .map(|()| None),
        Command::Status => status(&NetConf::parse(inv)?).await.map(|()| None),
        // Nothing of ours outlives an attachment outside its pod netns: the device
        // plugin owns host-side links and standalone links die with the netns.
        Command::Gc => Ok(None),
        Command::Version => unreachable!("VERSION is answered before dispatch"),
    }
}

/// A link waiting to be configured in the pod namespace, and how to undo it.
struct Pending {
    index: u32,
    undo: Undo,
    /// Device mode: the ifindex the link had in the host namespace when the device
    /// plugin handed it out, which names the `/dev/tapN` the kubelet gave the pod.
    host_index: Option<u32>,
}

/// What a failed ADD does with the link.
enum Undo {
    /// This ADD moved the device plugin's link out of the host namespace: give it
    /// back under its old name.
    GiveBack(String),
    /// Found in the pod under the device plugin's name (an ADD killed after the
    /// move, or a link the pod made itself): nothing proves the host gave it out,
    /// so it never enters the host namespace; DEL removes it with the pod.
    Leave,
    /// Standalone: created by this ADD in the pod; delete it.
    Delete,
}

async fn add(args: &AddArgs<'_>, conf: &NetConf, policy: &Policy) -> Result<String, CniError> {
    let netns_path = args.netns;
    let pod_ns = open_netns(netns_path)?;
    let host = netlink_in(None)
        .await
        .map_err(|e| io_failure("open netlink in the host namespace", e))?;
    let pod = netlink_in(Some(&pod_ns))
        .await
        .map_err(|e| io_failure(format!("open netlink in {netns_path}"), e))?;
    let pending = match &conf.source {
        Source::Device(id) => {
            crate::allocation::check(id, conf.pod.as_ref(), policy).await?;
            move_device_link(&host, &pod, &pod_ns, id, conf, policy).await?
        }
        Source::Standalone { master, mode } => {
            create_standalone(&host, &pod, &pod_ns, args, master, *mode, conf).await?
        }
    };

    match configure(&pod, &pod_ns, &pending, args, conf).await {
        Ok(facts) => {
            let mac = facts.mac.map(|m| MacAddr(m).to_string());
            let result = CniResult {
                interfaces: vec![Interface {
                    name: args.ifname.to_string(),
                    mac,
                    mtu: Some(facts.mtu),
                    sandbox: Some(netns_path.to_string()),
                }],
                ..Default::default()
            };
            Ok(result.to_json(args.version).to_string())
        }
        Err(err) => {
            undo(&pod, &pending).await;
            Err(err)
        }
    }
}

/// Whether `link` may be taken for `device_id`: a macvtap, under the hashed name
/// (any device plugin) or under the raw deviceID only when a device plugin marked it
/// for that deviceID; never one marked for another deviceID.
fn made_by_device_plugin(link: &LinkFacts, device_id: &str, hashed: &str) -> bool {
    let mark = device_plugin_mark(device_id);
    let marked_for_us = link.alias.as_deref() == Some(mark.as_str());
    let marked_for_other = link
        .alias
        .as_deref()
        .is_some_and(|a| a.starts_with(DEVICE_PLUGIN_ALIAS_PREFIX) && a != mark);
    link.kind.as_deref() == Some("macvtap")
        && !marked_for_other
        && (link.name == hashed || marked_for_us)
}

/// Device mode: find the device plugin's link in the host namespace and move it into
/// the pod. The hashed name first (current device plugins), then the raw device ID
/// (device plugins up to v0.13.1) if a device plugin marked that link. Anything else
/// (a VM's `macvtap0`, the uplink, a link of the wrong kind) is "not found": the
/// error says nothing about which host links exist.
async fn move_device_link(
    host: &Handle,
    pod: &Handle,
    pod_ns: &NetNs,
    device_id: &str,
    conf: &NetConf,
    policy: &Policy,
) -> Result<Pending, CniError> {
    let hashed = hashed_link_name(device_id);
    let candidates: Vec<&str> = [hashed.as_str(), device_id]
        .into_iter()
        .filter(|c| c.len() <= 15 && !c.contains('/'))
        .collect();
    let mut found = None;
    for candidate in &candidates {
        let link = link_by_name(host, candidate)
            .await
            .map_err(|e| netlink_failure("look up the device plugin's link", e))?;
        if let Some(link) = link.filter(|l| made_by_device_plugin(l, device_id, &hashed)) {
            found = Some(link);
            break;
        }
    }
    // An ADD killed after the move left the link in the pod under its host name:
    // adopt it, so that the retried ADD converges.
    if found.is_none() {
        for candidate in &candidates {
            if let Ok(Some(left)) = link_by_name(pod, candidate).await
                && made_by_device_plugin(&left, device_id, &hashed)
            {
                return Ok(Pending {
                    index: left.index,
                    undo: Undo::Leave,
                    host_index: None,
                });
            }
        }
    }
    let Some(link) = found else {
        return Err(CniError::new(
            ErrorCode::TryAgainLater,
            format!("no macvtap of the device plugin for deviceID {device_id} on this node (looked for {hashed})"),
        )
        .with_details("the macvtap device plugin creates it when kubelet calls Allocate; check that the pod requests the NAD's resourceName and that the device plugin runs on this node"));
    };
    if let Some(allowed) = &policy.macvtap.device_lower_devices {
        let lower = match link.parent {
            Some(p) => link_by_index(host, p)
                .await
                .map_err(|e| netlink_failure("look up the macvtap's lower device", e))?,
            None => None,
        };
        if !lower.is_some_and(|l| allowed.contains(&l.name)) {
            return Err(policy.refuse(
                format!("the lower device of the macvtap for deviceID {device_id}"),
                "macvtap",
                "device_lower_devices",
            ));
        }
    }
    check_mtu_against_lower(host, &link, conf).await?;
    host.link()
        .set(
            LinkUnspec::new_with_index(link.index)
                .setns_by_fd(pod_ns.raw_fd())
                .build(),
        )
        .execute()
        .await
        .map_err(|e| netlink_failure(format!("move {} into the pod namespace", link.name), e))?;
    let moved = link_by_name(pod, &link.name)
        .await
        .map_err(|e| netlink_failure(format!("find {} in the pod namespace", link.name), e))?
        .ok_or_else(|| {
            CniError::plugin(format!(
                "{} vanished after the move into the pod namespace",
                link.name
            ))
        })?;
    Ok(Pending {
        index: moved.index,
        undo: Undo::GiveBack(link.name),
        host_index: Some(link.index),
    })
}

/// Standalone mode: create a macvtap on `master` directly inside the pod namespace
/// under a temporary name unique to this attachment.
///
/// Moving a link between namespaces costs the kernel 15–30 ms; creating it in place
/// costs ~1 ms. The catch is `/dev/tap<ifindex>`: it lives on the one host devtmpfs,
/// and pod namespaces all number their links from 1, so every pod's macvtap would be
/// `/dev/tap3`. We therefore ask for an ifindex derived from the attachment, high
/// above what namespaces hand out, and skip any whose device node already exists.
async fn create_standalone(
    host: &Handle,
    pod: &Handle,
    pod_ns: &NetNs,
    inv: &Invocation,
    master: &str,
    mode: MacvtapMode,
    conf: &NetConf,
) -> Result<Pending, CniError> {
    let lower = link_by_name(host, master)
        .await
        .map_err(|e| netlink_failure(format!("look up master {master}"), e))?
        .ok_or_else(|| {
            CniError::invalid_config(format!(
                "master {master} does not exist in the host namespace"
            ))
            .with_details("set \"master\" to the lower device's name on this node (see `ip link`)")
        })?;
    if let Some(mtu) = conf.mtu.filter(|m| *m > lower.mtu) {
        return Err(mtu_too_big(mtu));
    }
    let temp = standalone_temp_name(&inv.container_id, &inv.ifname);

    let kernel_mode = match mode {
        MacvtapMode::Bridge => MacVtapMode::Bridge,
        MacvtapMode::Private => MacVtapMode::Private,
        MacvtapMode::Vepa => MacVtapMode::Vepa,
        MacvtapMode::Passthru => MacVtapMode::Passthrough,
    };
    let mut last_err = None;
    for index in standalone_ifindex_candidates(&inv.container_id, &inv.ifname) {
        if Path::new(&format!("/dev/tap{index}")).exists() {
            continue;
        }
        let request = LinkMacVtap::new(&temp, lower.index, kernel_mode)
            .index(index)
            .txqueuelen(lower.txqueuelen)
            .setns_by_fd(pod_ns.raw_fd())
            .build();
        match host.link().add(request).execute().await {
            Ok(()) => {
                return Ok(Pending {
                    index,
                    undo: Undo::Delete,
                    host_index: None,
                });
            }
            // Index taken in the pod namespace: try the next candidate.
            Err(e) if errno(&e) == Some(Errno::EBUSY as i32) => last_err = Some(e),
            // A leftover of an ADD killed half-way holds the temporary name: remove
            // it and try again (checked only on this slow path).
            Err(e) if errno(&e) == Some(Errno::EEXIST as i32) => {
                if let Ok(Some(left)) = link_by_name(pod, &temp).await {
                    let _ = pod.link().del(left.index).execute().await;
                }
                last_err = Some(e);
            }
            Err(e) => {
                return Err(netlink_failure(
                    format!("create macvtap {temp} on {master}"),
                    e,
                ));
            }
        }
    }
    Err(CniError::new(
        ErrorCode::TryAgainLater,
        format!("failed to find a free ifindex for macvtap {temp}: {last_err:?}"),
    ))
}

/// Interface indexes to try for a standalone macvtap: derived from the attachment,
/// in [2^20, 2^30 + 2^20), far above the indexes namespaces allocate themselves.
fn standalone_ifindex_candidates(container_id: &str, ifname: &str) -> impl Iterator<Item = u32> {
    let key = format!("{container_id}/{ifname}");
    let start = xxhash_rust::xxh64::xxh64(key.as_bytes(), 1) % (1 << 30);
    (0..32u64).map(move |i| ((start + i * 7919) % (1 << 30)) as u32 + (1 << 20))
}

/// Says what was refused, not what the node has: the lower device's name and MTU
/// are the node's business (a tenant could map the node's links by bisecting MTUs).
fn mtu_too_big(mtu: u32) -> CniError {
    CniError::invalid_config(format!(
        "mtu {mtu} is larger than the lower device of this network allows"
    ))
    .with_details("leave \"mtu\" out (or 0) to inherit the lower device's MTU, or ask the node's administrator for the largest one")
}

async fn check_mtu_against_lower(
    host: &Handle,
    link: &LinkFacts,
    conf: &NetConf,
) -> Result<(), CniError> {
    let (Some(mtu), Some(parent)) = (conf.mtu, link.parent) else {
        return Ok(());
    };
    if let Ok(Some(lower)) = link_by_index(host, parent).await
        && mtu > lower.mtu
    {
        return Err(mtu_too_big(mtu));
    }
    Ok(())
}

/// No IPv6 link-local address on the pod's macvtap (addr_gen_mode none), set while
/// it is still down: otherwise coming up sends DAD and MLD frames from its MAC,
/// which is the guest's. A live migration's target pod would then announce the
/// guest's MAC on the LAN before the guest has moved and draw its traffic away
/// (kubevirt 17195). Best effort: a pod without IPv6 sends nothing anyway.
async fn quiet_ipv6(pod: &Handle, index: u32) {
    use rtnetlink::packet_route::link::{AfSpecInet6, AfSpecUnspec, In6AddrGenMode, LinkAttribute};
    let message = LinkUnspec::new_with_index(index)
        .append_extra_attribute(LinkAttribute::AfSpecUnspec(vec![AfSpecUnspec::Inet6(
            vec![AfSpecInet6::AddrGenMode(In6AddrGenMode::None)],
        )]))
        .build();
    // A refusal leaves the kernel's default; the ADD goes on.
    let _ = pod.link().set(message).execute().await;
}

/// Inside the pod namespace: MTU, MAC and promisc first, then rename and up, then
/// hand `/dev/tapN` to the VM's user.
async fn configure(
    pod: &Handle,
    pod_ns: &NetNs,
    pending: &Pending,
    inv: &Invocation,
    conf: &NetConf,
) -> Result<LinkFacts, CniError> {
    quiet_ipv6(pod, pending.index).await;
    // One message: the kernel applies MTU and MAC before the new name and the up
    // flag, and each round trip counts at ~3 ms per ADD.
    let mut settings = LinkUnspec::new_with_index(pending.index)
        .promiscuous(conf.promisc)
        .name(inv.ifname.clone())
        .up();
    if let Some(mtu) = conf.mtu {
        settings = settings.mtu(mtu);
    }
    if let Some(mac) = conf.mac {
        settings = settings.address(mac.0.to_vec());
    }
    pod.link()
        .set(settings.build())
        .execute()
        .await
        .map_err(|e| {
            if errno(&e) == Some(Errno::EEXIST as i32) {
                CniError::plugin(format!(
                    "interface {} already exists in the pod namespace",
                    inv.ifname
                ))
                .with_details("choose another CNI_IFNAME or DEL the previous attachment first")
            } else {
                netlink_failure(
                    format!(
                        "set MTU, MAC and promiscuous mode, rename to {} and bring it up",
                        inv.ifname
                    ),
                    e,
                )
            }
        })?;
    let facts = link_by_index(pod, pending.index)
        .await
        .map_err(|e| netlink_failure(format!("read back {}", inv.ifname), e))?
        .ok_or_else(|| {
            CniError::plugin(format!("{} vanished while being configured", inv.ifname))
        })?;
    if let Some(host_index) = pending.host_index
        && host_index != facts.index
    {
        return Err(CniError::plugin(format!(
            "the device plugin's macvtap got ifindex {} in the pod namespace, but the kubelet gave the pod /dev/tap{host_index}",
            facts.index
        ))
        .with_details("an interface of the pod namespace holds that ifindex; the VM would open another device"));
    }
    chown_own_tap(pod_ns, &facts, conf).await?;
    Ok(facts)
}

/// Hands `/dev/tap<ifindex>` of the pod's macvtap to the VM's user, once its device
/// number is proven to be that macvtap's (a pod with NET_ADMIN can create a
/// macvtap of the same ifindex in its own namespace first and hold the path).
async fn chown_own_tap(pod_ns: &NetNs, facts: &LinkFacts, conf: &NetConf) -> Result<(), CniError> {
    let (index, owner, group) = (facts.index, conf.owner, conf.group);
    let name = facts.name.clone();
    let ns = pod_ns.try_clone().map_err(|e| {
        io_failure(
            format!("duplicate the descriptor of {}", pod_ns.path().display()),
            e,
        )
    })?;
    let checked = tokio::task::spawn_blocking(move || {
        let node = tapdev::verified_node(Some(&ns), &name, index)?;
        tapdev::chown_fd(&node, index, Some(owner), Some(group))
    })
    .await
    .map_err(|e| CniError::plugin(format!("the /dev/tap{index} check failed: {e}")))?;
    checked.map_err(|e| match e {
        TapDevError::Foreign { .. } => CniError::plugin(format!("refused to hand out /dev/tap{index}: {e}")).with_details(
            "the path belongs to a macvtap of another network namespace; delete the pod (its macvtap gets a new ifindex) and find who creates macvtaps at the node's ifindexes",
        ),
        TapDevError::Io { .. } | TapDevError::Missing { .. } => CniError::new(ErrorCode::Io, format!("failed to hand /dev/tap{index} to {owner}:{group}: {e}"))
            .with_details("the plugin must run as root on a host whose /dev is devtmpfs (on kind, mount the host's /dev into the nodes)"),
        TapDevError::Sysfs { .. } => CniError::new(ErrorCode::Io, e.to_string())
            .with_details("the plugin reads the macvtap's device number from a sysfs it mounts for the pod namespace: it needs CAP_SYS_ADMIN"),
    })
}

/// Puts things back after a failed ADD: the device plugin's link returns to the host
/// under its old name, a standalone link is deleted.
async fn undo(pod: &Handle, pending: &Pending) {
    match &pending.undo {
        Undo::GiveBack(name) => {
            let Ok(host_ns) = NetNs::open("/proc/self/ns/net") else {
                return;
            };
            let back = LinkUnspec::new_with_index(pending.index)
                .down()
                .name(name.clone())
                .setns_by_fd(host_ns.raw_fd())
                .build();
            let _ = pod.link().set(back).execute().await;
        }
        Undo::Leave => {}
        Undo::Delete => {
            let _ = pod.link().del(pending.index).execute().await;
        }
    }
}

/// Names an interrupted ADD can leave in the pod besides CNI_IFNAME: the device
/// link under its host name, or the standalone link under its temporary name.
fn leftover_names(inv: &Invocation, conf: &DelConf) -> Vec<String> {
    let mut names = vec![standalone_temp_name(&inv.container_id, &inv.ifname)];
    if let Some(id) = &conf.device_id {
        names.extend(
            [hashed_link_name(id), id.clone()]
                .into_iter()
                .filter(|n| n.len() <= 15 && !n.contains('/')),
        );
    }
    names
}

async fn del(inv: &Invocation, conf: &DelConf) -> Result<(), CniError> {
    let Some(path) = inv.netns.as_deref() else {
        return Ok(());
    };
    let pod_ns = match NetNs::open(path) {
        Ok(ns) => ns,
        // The netns is gone and the macvtap died with it; a path that is not a
        // network namespace holds nothing of ours either.
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::InvalidInput
            ) =>
        {
            return Ok(());
        }
        Err(e) => return Err(io_failure(format!("open network namespace {path}"), e)),
    };
    cni_kit::failure::refuse_own_netns(&pod_ns)?;
    let pod = netlink_in(Some(&pod_ns))
        .await
        .map_err(|e| io_failure(format!("open netlink in {path}"), e))?;
    let mut names = vec![inv.ifname.clone()];
    names.extend(leftover_names(inv, conf));
    for name in names {
        let link = link_by_name(&pod, &name)
            .await
            .map_err(|e| netlink_failure(format!("look up {name}"), e))?;
        // Only macvtaps are ours; anything else (or nothing) is left alone.
        if let Some(link) = link.filter(|l| l.kind.as_deref() == Some("macvtap")) {
            match pod.link().del(link.index).execute().await {
                Ok(()) => {}
                Err(e) if errno(&e) == Some(Errno::ENODEV as i32) => {}
                Err(e) => return Err(netlink_failure(format!("delete {name}"), e)),
            }
        }
    }
    Ok(())
}

async fn check(args: &AddArgs<'_>, conf: &NetConf) -> Result<(), CniError> {
    let path = args.netns;
    let (_, expected) = cni_kit::result::check_input(conf.prev_result.as_ref(), args.ifname)?;
    let pod_ns = open_netns(path)?;
    let pod = netlink_in(Some(&pod_ns))
        .await
        .map_err(|e| io_failure(format!("open netlink in {path}"), e))?;
    let link = link_by_name(&pod, args.ifname)
        .await
        .map_err(|e| netlink_failure(format!("look up {}", args.ifname), e))?
        .ok_or_else(|| {
            CniError::plugin(format!("interface {} is missing from {path}", args.ifname))
        })?;
    let want = Expected {
        kind: "macvtap",
        prev: &expected,
        requested_mac: conf.mac,
        mtu: conf.mtu,
        promisc: conf.promisc,
    };
    let problems = pod_link_problems(&link, args.ifname, &want, Naming::It);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(CniError::plugin(format!(
            "interface {} in {path} does not match: {}",
            args.ifname,
            problems.join("; ")
        )))
    }
}

async fn status(conf: &NetConf) -> Result<(), CniError> {
    let Source::Standalone { master, .. } = &conf.source else {
        return Ok(());
    };
    let host = netlink_in(None)
        .await
        .map_err(|e| io_failure("open netlink", e))?;
    match link_by_name(&host, master).await {
        Ok(Some(_)) => Ok(()),
        _ => Err(CniError::new(
            ErrorCode::PluginNotAvailable,
            format!("master {master} does not exist on this node"),
        )
        .with_details("create the lower device or fix \"master\" in the network configuration")),
    }
}
