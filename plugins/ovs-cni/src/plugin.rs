//! ADD, DEL, CHECK, STATUS and GC, top to bottom.

use std::collections::BTreeSet;
use std::io::Read;
use std::net::IpAddr;

use cni_kit::failure::{io as io_failure, netlink as netlink_failure, open_netns};
use cni_kit::netns::{NetNs, errno, link_by_name, netlink_in};
use cni_kit::result::{CniResult, Interface};
use cni_kit::skel::{AddArgs, Expected, Naming, pod_link_problems};
use cni_kit::{CniError, Command, ErrorCode, Invocation, MacAddr};
use nix::errno::Errno;
use rtnetlink::packet_route::link::{InfoData, InfoVeth};
use rtnetlink::{Handle, LinkUnspec, LinkVeth, RouteMessageBuilder};
use serde_json::{Value, json};

use crate::bridge;
use crate::cache;
use crate::config::{NetConf, authorize_socket};
use crate::ipam;
use crate::ovsdb::{self, Client, OvsdbError};
use cni_kit::invocation::{check_container_id, check_ifname};
use cni_kit::policy::Policy;

/// `external_ids:owner` of every port this plugin (and upstream ovs-cni) creates.
pub const OWNER: &str = "ovs-cni.network.kubevirt.io";

/// Dispatches one invocation. VERSION is answered by `cni_kit::invocation::run_plugin`.
/// ADD, CHECK and STATUS need the whole configuration and the node policy's
/// consent; DEL and GC read only what they use and succeed for configurations ADD
/// refused (they never talk to a socket the policy does not allow).
pub async fn handle(inv: &Invocation) -> Result<Option<String>, CniError> {
    ipam::refuse_running_as_delegate()?;
    // A malformed policy fails ADD, CHECK and STATUS; DEL and GC fall back to the
    // defaults (the default socket only) so that pods can still go away.
    let loaded = Policy::load();
    let teardown_policy = || loaded.clone().unwrap_or_default();
    match inv.command {
        Command::Add => {
            let conf = NetConf::parse(inv)?;
            let policy = loaded?;
            conf.authorize(&policy)?;
            add(&AddArgs::of(inv), &conf, &policy).await.map(Some)
        }
        Command::Del => {
            let conf = NetConf::for_teardown(inv);
            let ovsdb = authorize_socket(&conf.socket, &teardown_policy()).is_ok();
            del(inv, &conf, ovsdb).await.map(|()| None)
        }
        Command::Check => {
            let conf = NetConf::parse(inv)?;
            let policy = loaded?;
            authorize_socket(&conf.socket, &policy)?;
            check(&AddArgs::of(inv), &conf, &policy)
                .await
                .map(|()| None)
        }
        Command::Status => {
            let conf = NetConf::parse(inv)?;
            let policy = loaded?;
            authorize_socket(&conf.socket, &policy)?;
            status(&conf, &policy).await.map(|()| None)
        }
        Command::Gc => {
            let conf = NetConf::for_teardown(inv);
            if authorize_socket(&conf.socket, &teardown_policy()).is_err() {
                return Ok(None);
            }
            gc(&conf).await.map(|()| None)
        }
        Command::Version => unreachable!("VERSION is answered before dispatch"),
    }
}

/// OVSDB failures as CNI errors: an unreachable server is "try again later" (the
/// DaemonSet may still be starting it); a missing bridge is a config error.
fn ovsdb_failure(what: &str, conf: &NetConf, err: OvsdbError) -> CniError {
    match err {
        OvsdbError::Connect { .. } | OvsdbError::Timeout(_) | OvsdbError::Closed => {
            CniError::new(ErrorCode::TryAgainLater, format!("failed to {what}: {err}"))
                .with_details(format!(
                    "is ovsdb-server running on this node and listening on {}? Set \"socket_file\" if it listens elsewhere",
                    conf.socket.display()
                ))
        }
        other => CniError::plugin(format!("failed to {what}: {other}")),
    }
}

async fn connect(what: &str, conf: &NetConf) -> Result<Client, CniError> {
    Client::connect(&conf.socket)
        .await
        .map_err(|e| ovsdb_failure(what, conf, e))
}

/// `veth` + 8 random hex digits, as upstream names host ends.
fn host_iface_name() -> String {
    let mut bytes = [0u8; 4];
    let filled = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .is_ok();
    if !filled {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        bytes = (nanos ^ std::process::id().rotate_left(16)).to_be_bytes();
    }
    format!(
        "veth{:02x}{:02x}{:02x}{:02x}",
        bytes[0], bytes[1], bytes[2], bytes[3]
    )
}

/// Upstream's MAC for an IPAM-addressed port without a requested MAC: `0a:58` + IPv4.
fn mac_from_ipv4(ips: &[cni_kit::result::IpConfig]) -> Option<MacAddr> {
    ips.iter().find_map(|ip| {
        let addr = ip.address.split('/').next()?.parse::<IpAddr>().ok()?;
        match addr {
            IpAddr::V4(v4) => {
                let o = v4.octets();
                Some(MacAddr([0x0a, 0x58, o[0], o[1], o[2], o[3]]))
            }
            IpAddr::V6(_) => None,
        }
    })
}

/// The `external_ids` of our Port and Interface rows.
fn external_ids(inv: &Invocation, conf: &NetConf, netns: &str) -> Value {
    let mut pairs = vec![
        ("contNetns", netns),
        ("contIface", inv.ifname.as_str()),
        ("contId", inv.container_id.as_str()),
        ("owner", OWNER),
    ];
    if let Some(uid) = &conf.pod_uid {
        pairs.push(("contPodUid", uid.as_str()));
    }
    ovsdb::map(pairs)
}

fn bridge_where(conf: &NetConf) -> Value {
    json!([["name", "==", conf.bridge]])
}

/// The one ADD transaction: the bridge must exist (a `wait` with timeout 0 fails the
/// whole transaction otherwise), then Interface + Port with the VLAN settings, and
/// the Port added to the bridge's `ports`.
pub fn add_port_operations(
    inv: &Invocation,
    conf: &NetConf,
    host: &str,
    netns: &str,
) -> Vec<Value> {
    let ids = external_ids(inv, conf, netns);
    let mut iface = json!({"name": host, "type": "", "external_ids": ids});
    if let Some(p) = conf.ofport_request {
        iface["ofport_request"] = json!(p);
    }
    let mut port = json!({
        "name": host,
        "interfaces": ovsdb::named_uuid("iface"),
        "external_ids": ids,
    });
    if let Some(tag) = conf.vlan {
        port["tag"] = json!(tag);
    }
    if !conf.trunk_ranges.is_empty() {
        port["trunks"] = ovsdb::set(conf.trunks().into_iter().map(|t| json!(t)));
    }
    if let Some(mode) = conf.vlan_mode() {
        port["vlan_mode"] = json!(mode.as_str());
    }
    vec![
        json!({"op": "wait", "table": "Bridge", "where": bridge_where(conf), "columns": ["name"],
               "until": "==", "rows": [{"name": conf.bridge}], "timeout": 0}),
        json!({"op": "insert", "table": "Interface", "row": iface, "uuid-name": "iface"}),
        json!({"op": "insert", "table": "Port", "row": port, "uuid-name": "port"}),
        json!({"op": "mutate", "table": "Bridge", "where": bridge_where(conf),
               "mutations": [["ports", "insert", ovsdb::set([ovsdb::named_uuid("port")])]]}),
    ]
}

/// Removes ports (by UUID) from whatever bridge holds them; OVSDB then collects the
/// unreferenced Port and Interface rows.
fn remove_ports_operations(uuids: &[String]) -> Vec<Value> {
    vec![json!({"op": "mutate", "table": "Bridge", "where": [],
                "mutations": [["ports", "delete", ovsdb::set(uuids.iter().map(|u| ovsdb::uuid(u)))]]})]
}

/// What a failed ADD has to undo, in reverse order.
#[derive(Default)]
struct Undo {
    ipam: bool,
    host_veth: Option<u32>,
    port: Option<String>,
}

async fn add(args: &AddArgs<'_>, conf: &NetConf, policy: &Policy) -> Result<String, CniError> {
    let netns_path = args.netns;
    let pod_ns = open_netns(netns_path)?;
    let host_ns = NetNs::current().map_err(|e| io_failure("open the host namespace", e))?;
    let host = netlink_in(None)
        .await
        .map_err(|e| io_failure("open netlink in the host namespace", e))?;
    let pod = netlink_in(Some(&pod_ns))
        .await
        .map_err(|e| io_failure(format!("open netlink in {netns_path}"), e))?;
    if link_by_name(&pod, args.ifname)
        .await
        .ok()
        .flatten()
        .is_some()
    {
        return Err(CniError::plugin(format!(
            "interface {} already exists in {netns_path}",
            args.ifname
        ))
        .with_details("choose another CNI_IFNAME or DEL the previous attachment first"));
    }
    // Reach ovsdb-server, and ask the bridge, before anything is allocated.
    let mut db = connect("connect to ovsdb-server", conf).await?;
    let facts = bridge::inspect(&mut db, &conf.bridge)
        .await
        .map_err(|e| ovsdb_failure("read the bridge", conf, e))?;
    bridge::admit(conf, policy, facts.as_ref(), &host).await?;

    let mut undo = Undo::default();
    let outcome = async {
        let ipam_result = match &conf.ipam {
            Some((kind, _)) => {
                let r = ipam::exec(args, kind, "ADD")?;
                undo.ipam = true;
                Some(CniResult::from_json(&r))
            }
            None => None,
        };
        let mac = conf
            .mac
            .or_else(|| ipam_result.as_ref().and_then(|r| mac_from_ipv4(&r.ips)));

        // The veth, created from inside the pod namespace with the pod end already
        // named CNI_IFNAME, the host end placed in the host namespace. The pod end
        // comes up once it is quiet (see `quiet_ipv6`).
        let mut host_name = host_iface_name();
        let mut attempt = 0;
        loop {
            let mut peer = LinkUnspec::new_with_name(&host_name).setns_by_fd(host_ns.raw_fd());
            if let Some(mtu) = conf.mtu {
                peer = peer.mtu(mtu);
            }
            let mut pod_end = LinkVeth::new(args.ifname, &host_name)
                .set_info_data(InfoData::Veth(InfoVeth::Peer(peer.build())));
            if let Some(mtu) = conf.mtu {
                pod_end = pod_end.mtu(mtu);
            }
            if let Some(mac) = mac {
                pod_end = pod_end.address(mac.0.to_vec());
            }
            match pod.link().add(pod_end.build()).execute().await {
                Ok(()) => break,
                Err(e) if errno(&e) == Some(Errno::EEXIST as i32) && attempt < 3 => {
                    attempt += 1;
                    host_name = host_iface_name();
                }
                Err(e) => {
                    return Err(netlink_failure(
                        format!("create veth {}/{host_name}", args.ifname),
                        e,
                    ));
                }
            }
        }
        let pod_end = link_by_name(&pod, args.ifname)
            .await
            .map_err(|e| netlink_failure(format!("look up {}", args.ifname), e))?
            .ok_or_else(|| CniError::plugin(format!("{} vanished after creation", args.ifname)))?;
        quiet_ipv6(&pod, pod_end.index).await;
        pod.link()
            .set(LinkUnspec::new_with_index(pod_end.index).up().build())
            .execute()
            .await
            .map_err(|e| netlink_failure(format!("bring {} up", args.ifname), e))?;
        let host_link = link_by_name(&host, &host_name)
            .await
            .map_err(|e| netlink_failure(format!("look up {host_name}"), e))?
            .ok_or_else(|| CniError::plugin(format!("{host_name} vanished after creation")))?;
        undo.host_veth = Some(host_link.index);
        host.link()
            .set(LinkUnspec::new_with_index(host_link.index).up().build())
            .execute()
            .await
            .map_err(|e| netlink_failure(format!("bring {host_name} up"), e))?;

        let ops = add_port_operations(args, conf, &host_name, netns_path);
        let results = db.transact(&ops).await.map_err(|e| match e {
            OvsdbError::Operation { index: 0, .. } => bridge::unavailable(conf, policy),
            other => ovsdb_failure(
                &format!("add port {host_name} to bridge {}", conf.bridge),
                conf,
                other,
            ),
        })?;
        undo.port = results
            .get(2)
            .and_then(|r| r.get("uuid"))
            .and_then(ovsdb::uuid_of)
            .map(str::to_string);

        let pod_link = link_by_name(&pod, args.ifname)
            .await
            .map_err(|e| netlink_failure(format!("look up {}", args.ifname), e))?
            .ok_or_else(|| CniError::plugin(format!("{} vanished after creation", args.ifname)))?;
        let mut result = CniResult {
            interfaces: vec![
                Interface {
                    name: host_name.clone(),
                    mac: host_link.mac.map(|m| MacAddr(m).to_string()),
                    mtu: Some(host_link.mtu),
                    sandbox: None,
                },
                Interface {
                    name: args.ifname.to_string(),
                    mac: pod_link.mac.map(|m| MacAddr(m).to_string()),
                    mtu: Some(pod_link.mtu),
                    sandbox: Some(netns_path.to_string()),
                },
            ],
            ..Default::default()
        };
        if let Some(r) = ipam_result {
            configure_ips(&pod, pod_link.index, &r).await?;
            result.ips = r
                .ips
                .into_iter()
                .map(|mut ip| {
                    ip.interface = Some(1);
                    ip
                })
                .collect();
            result.routes = r.routes;
            result.dns = r.dns;
        }
        cache::write(
            args.container_id,
            args.ifname,
            &cache::Entry {
                netconf: conf.raw.clone(),
                bridge: conf.bridge.clone(),
                host_iface: host_name.clone(),
                netns: netns_path.to_string(),
            },
        )
        .map_err(|e| {
            io_failure(
                format!(
                    "write {}",
                    cache::path(args.container_id, args.ifname).display()
                ),
                e,
            )
        })?;
        Ok(result.to_json(args.version).to_string())
    }
    .await;

    if outcome.is_err() {
        if let Some(uuid) = &undo.port {
            let _ = db
                .transact(&remove_ports_operations(std::slice::from_ref(uuid)))
                .await;
        }
        if let Some(index) = undo.host_veth {
            let _ = host.link().del(index).execute().await;
        }
        if undo.ipam
            && let Some((kind, _)) = &conf.ipam
        {
            let _ = ipam::exec(args, kind, "DEL");
        }
    }
    outcome
}

/// Addresses and routes from the IPAM result on the pod interface (as libcni's
/// ConfigureIface: a route without a gateway goes via the address's gateway).
async fn configure_ips(pod: &Handle, index: u32, r: &CniResult) -> Result<(), CniError> {
    let mut gateways: Vec<IpAddr> = Vec::new();
    for ip in &r.ips {
        let (addr, prefix) = parse_cidr(&ip.address).ok_or_else(|| {
            CniError::plugin(format!("IPAM returned a malformed address {}", ip.address))
        })?;
        pod.address()
            .add(index, addr, prefix)
            .execute()
            .await
            .map_err(|e| netlink_failure(format!("add address {}", ip.address), e))?;
        if let Some(gw) = ip.gateway.as_deref().and_then(|g| g.parse().ok()) {
            gateways.push(gw);
        }
    }
    for route in &r.routes {
        let Some((dst, prefix)) = route
            .get("dst")
            .and_then(Value::as_str)
            .and_then(parse_cidr)
        else {
            continue;
        };
        let gw = route
            .get("gw")
            .and_then(Value::as_str)
            .and_then(|g| g.parse::<IpAddr>().ok())
            .or_else(|| {
                gateways
                    .iter()
                    .copied()
                    .find(|g| g.is_ipv4() == dst.is_ipv4())
            });
        let mut builder = RouteMessageBuilder::<IpAddr>::new()
            .destination_prefix(dst, prefix)
            .map_err(|e| CniError::plugin(format!("bad route {route}: {e}")))?
            .output_interface(index);
        if let Some(gw) = gw {
            builder = builder
                .gateway(gw)
                .map_err(|e| CniError::plugin(format!("bad route {route}: {e}")))?;
        }
        pod.route()
            .add(builder.build())
            .execute()
            .await
            .map_err(|e| netlink_failure(format!("add route {route}"), e))?;
    }
    Ok(())
}

fn parse_cidr(text: &str) -> Option<(IpAddr, u8)> {
    let (a, p) = text.split_once('/')?;
    Some((a.parse().ok()?, p.parse().ok()?))
}

/// Ports of ours for this attachment: by container id + ifname, by netns + ifname
/// (ports made by upstream ovs-cni) and by the cached host name.
async fn find_ports(
    db: &mut Client,
    inv: &Invocation,
    cached: Option<&cache::Entry>,
) -> Result<Vec<(String, String)>, OvsdbError> {
    let cols = json!(["_uuid", "name"]);
    let mut ops = vec![json!({"op": "select", "table": "Port", "columns": cols,
        "where": [["external_ids", "includes", ovsdb::map([("contId", inv.container_id.as_str()), ("contIface", inv.ifname.as_str())])]]})];
    let netns = inv.netns.as_deref().or(cached.map(|c| c.netns.as_str()));
    if let Some(netns) = netns {
        ops.push(json!({"op": "select", "table": "Port", "columns": cols,
            "where": [["external_ids", "includes", ovsdb::map([("contNetns", netns), ("contIface", inv.ifname.as_str())])]]}));
    }
    if let Some(c) = cached {
        ops.push(json!({"op": "select", "table": "Port", "columns": cols,
            "where": [["name", "==", c.host_iface]]}));
    }
    let results = db.transact(&ops).await?;
    let mut found = BTreeSet::new();
    for r in &results {
        for row in r["rows"].as_array().into_iter().flatten() {
            if let (Some(uuid), Some(name)) = (ovsdb::uuid_of(&row["_uuid"]), row["name"].as_str())
            {
                found.insert((uuid.to_string(), name.to_string()));
            }
        }
    }
    Ok(found.into_iter().collect())
}

/// Whether an OVSDB failure means the server is not there (not up yet, or gone).
fn unreachable(e: &OvsdbError) -> bool {
    matches!(
        e,
        OvsdbError::Connect { .. }
            | OvsdbError::Timeout(_)
            | OvsdbError::Closed
            | OvsdbError::Io(_)
    )
}

/// Removes the attachment's ports from OVSDB; their (uuid, name).
async fn remove_ports(
    inv: &Invocation,
    conf: &NetConf,
    cached: Option<&cache::Entry>,
) -> Result<Vec<(String, String)>, OvsdbError> {
    let mut db = Client::connect(&conf.socket).await?;
    let ports = find_ports(&mut db, inv, cached).await?;
    if !ports.is_empty() {
        let uuids: Vec<String> = ports.iter().map(|(u, _)| u.clone()).collect();
        db.transact(&remove_ports_operations(&uuids)).await?;
    }
    Ok(ports)
}

async fn del(inv: &Invocation, conf: &NetConf, ovsdb: bool) -> Result<(), CniError> {
    let cached = cache::read(&inv.container_id, &inv.ifname).map_err(|e| {
        io_failure(
            format!(
                "read {}",
                cache::path(&inv.container_id, &inv.ifname).display()
            ),
            e,
        )
    })?;
    // A cache entry names the socket ADD used; it must be allowed now as well.
    let mut ports = Vec::new();
    // What this DEL could not remove from OVSDB, reported once the rest is done.
    let mut left_in_ovsdb: Option<CniError> = None;
    if ovsdb {
        match remove_ports(inv, conf, cached.as_ref()).await {
            Ok(removed) => ports = removed,
            // Nothing cached: no attachment of ours is known, so an ovsdb-server
            // that is not up (a node rebooting) cannot hold one; DEL succeeds, as
            // the spec and upstream ovs-cni do.
            Err(e) if cached.is_none() && unreachable(&e) => {
                eprintln!("ovs: DEL without a cached attachment, ovsdb-server not reached: {e}")
            }
            Err(e) => {
                left_in_ovsdb = Some(match &cached {
                    Some(c) => CniError::new(
                        ErrorCode::TryAgainLater,
                        format!(
                            "failed to remove port {} from bridge {}: {e}",
                            c.host_iface, c.bridge
                        ),
                    )
                    .with_details(format!(
                        "the rest of the attachment was released; {} is kept so that a DEL retried once ovsdb-server at {} answers removes the port",
                        cache::path(&inv.container_id, &inv.ifname).display(),
                        conf.socket.display()
                    )),
                    None => ovsdb_failure("remove the attachment's ports", conf, e),
                });
            }
        }
    }
    let host = netlink_in(None)
        .await
        .map_err(|e| io_failure("open netlink in the host namespace", e))?;
    let mut host_names: BTreeSet<String> = ports.into_iter().map(|(_, n)| n).collect();
    host_names.extend(cached.as_ref().map(|c| c.host_iface.clone()));
    for name in &host_names {
        delete_veth(&host, name).await?;
    }
    // The pod end, in case the host end was already gone.
    if let Some(path) = inv.netns.as_deref() {
        match NetNs::open(path) {
            Ok(ns) => {
                let pod = netlink_in(Some(&ns))
                    .await
                    .map_err(|e| io_failure(format!("open netlink in {path}"), e))?;
                delete_veth(&pod, &inv.ifname).await?;
            }
            // Gone, or not a network namespace at all: nothing of ours in there.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::InvalidInput
                ) => {}
            Err(e) => return Err(io_failure(format!("open network namespace {path}"), e)),
        }
    }
    if let Some((kind, _)) = &conf.ipam {
        ipam::exec(inv, kind, "DEL")?;
    }
    if let Some(e) = left_in_ovsdb {
        return Err(e);
    }
    cache::remove(&inv.container_id, &inv.ifname).map_err(|e| {
        io_failure(
            format!(
                "remove {}",
                cache::path(&inv.container_id, &inv.ifname).display()
            ),
            e,
        )
    })
}

/// Deletes the veth `name` in the handle's namespace; anything else (or nothing) by
/// that name is left alone.
/// No IPv6 link-local address on the pod's veth (addr_gen_mode none), set while it
/// is down: coming up would otherwise send DAD and MLD frames from its MAC, which a
/// VM's bridge binding hands to the guest. A live migration's target pod would then
/// announce the guest's MAC on the LAN before the guest has moved (kubevirt 17195).
/// Best effort: a pod without IPv6 sends nothing anyway.
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

async fn delete_veth(handle: &Handle, name: &str) -> Result<(), CniError> {
    let link = link_by_name(handle, name)
        .await
        .map_err(|e| netlink_failure(format!("look up {name}"), e))?;
    match link {
        Some(l) if l.kind.as_deref() == Some("veth") => {
            match handle.link().del(l.index).execute().await {
                Ok(()) => Ok(()),
                Err(e) if errno(&e) == Some(Errno::ENODEV as i32) => Ok(()),
                Err(e) => Err(netlink_failure(format!("delete {name}"), e)),
            }
        }
        _ => Ok(()),
    }
}

async fn check(args: &AddArgs<'_>, conf: &NetConf, policy: &Policy) -> Result<(), CniError> {
    let path = args.netns;
    let (prev, expected) = cni_kit::result::check_input(conf.prev_result.as_ref(), args.ifname)?;
    let expected = &expected;
    let host_name = prev
        .interfaces
        .iter()
        .find(|i| i.sandbox.is_none())
        .map(|i| i.name.clone())
        .ok_or_else(|| {
            CniError::invalid_config("prevResult has no host interface (one without sandbox)")
                .with_details("pass the result of ADD for this CNI_IFNAME as prevResult")
        })?;
    let pod_ns = open_netns(path)?;
    let pod = netlink_in(Some(&pod_ns))
        .await
        .map_err(|e| io_failure(format!("open netlink in {path}"), e))?;
    let host = netlink_in(None)
        .await
        .map_err(|e| io_failure("open netlink in the host namespace", e))?;
    let link = link_by_name(&pod, args.ifname)
        .await
        .map_err(|e| netlink_failure(format!("look up {}", args.ifname), e))?
        .ok_or_else(|| {
            CniError::plugin(format!("interface {} is missing from {path}", args.ifname))
        })?;
    let want = Expected {
        kind: "veth",
        prev: expected,
        requested_mac: conf.mac,
        mtu: conf.mtu,
        promisc: false,
    };
    let mut problems = pod_link_problems(&link, args.ifname, &want, Naming::ByName);
    match link_by_name(&host, &host_name)
        .await
        .map_err(|e| netlink_failure(format!("look up {host_name}"), e))?
    {
        None => problems.push(format!("host interface {host_name} is missing")),
        Some(h) => {
            if let Some(want) = conf.mtu
                && h.mtu != want
            {
                problems.push(format!("MTU of {host_name} is {}, expected {want}", h.mtu));
            }
        }
    }

    let mut db = connect("connect to ovsdb-server", conf).await?;
    let results = db
        .transact(&[
            json!({"op": "select", "table": "Port", "where": [["name", "==", host_name]],
                   "columns": ["_uuid", "tag", "trunks", "vlan_mode"]}),
            json!({"op": "select", "table": "Bridge", "where": bridge_where(conf), "columns": ["ports"]}),
        ])
        .await
        .map_err(|e| ovsdb_failure("read the port", conf, e))?;
    let bridge_ports: Vec<String> = results[1]["rows"]
        .get(0)
        .map(|b| {
            ovsdb::set_members(&b["ports"])
                .iter()
                .filter_map(|u| ovsdb::uuid_of(u).map(str::to_string))
                .collect()
        })
        .ok_or_else(|| bridge::unavailable(conf, policy))?;
    match results[0]["rows"].get(0) {
        None => problems.push(format!("port {host_name} is not in ovsdb")),
        Some(port) => {
            let uuid = ovsdb::uuid_of(&port["_uuid"]).unwrap_or_default();
            if !bridge_ports.iter().any(|u| u == uuid) {
                problems.push(format!("port {host_name} is not on bridge {}", conf.bridge));
            }
            let tag = ovsdb::optional_int(&port["tag"]);
            if tag != conf.vlan.map(i64::from) {
                problems.push(format!(
                    "vlan tag mismatch. ovs={},netconf={}",
                    tag.map(|t| t.to_string()).unwrap_or_default(),
                    conf.vlan.map(|t| t.to_string()).unwrap_or_default()
                ));
            }
            let mut trunks: Vec<i64> = ovsdb::set_members(&port["trunks"])
                .iter()
                .filter_map(Value::as_i64)
                .collect();
            trunks.sort_unstable();
            let want: Vec<i64> = conf.trunks().into_iter().map(i64::from).collect();
            if trunks != want {
                problems.push(format!("trunk mismatch. ovs={trunks:?},netconf={want:?}"));
            }
            let mode = ovsdb::set_members(&port["vlan_mode"])
                .first()
                .and_then(Value::as_str)
                .map(str::to_string);
            let want_mode = conf.vlan_mode().map(|m| m.as_str().to_string());
            if mode != want_mode {
                problems.push(format!(
                    "vlan_mode mismatch. ovs={},netconf={}",
                    mode.unwrap_or_default(),
                    want_mode.unwrap_or_default()
                ));
            }
        }
    }
    if let Some((kind, _)) = &conf.ipam {
        ipam::exec(args, kind, "CHECK")?;
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(CniError::plugin(format!(
            "attachment {} in {path} does not match: {}",
            args.ifname,
            problems.join("; ")
        )))
    }
}

/// STATUS: ovsdb-server answers and the bridge exists; code 50 otherwise.
async fn status(conf: &NetConf, policy: &Policy) -> Result<(), CniError> {
    let unavailable = |msg: String| {
        CniError::new(ErrorCode::PluginNotAvailable, msg).with_details(format!(
            "start Open vSwitch on this node (ovsdb-server on {}) and the bridge the configuration names",
            conf.socket.display(),
        ))
    };
    let mut db = Client::connect(&conf.socket)
        .await
        .map_err(|e| unavailable(e.to_string()))?;
    let results = db
        .transact(&[json!({"op": "select", "table": "Bridge", "where": bridge_where(conf), "columns": ["name"]})])
        .await
        .map_err(|e| unavailable(e.to_string()))?;
    if results[0]["rows"].as_array().is_none_or(|r| r.is_empty()) {
        return Err(unavailable(bridge::unavailable(conf, policy).msg));
    }
    Ok(())
}

/// GC: removes ports on this bridge that we made (`owner`, `contId`, `contIface`)
/// for attachments of this network not in `cni.dev/valid-attachments`, with their
/// veths and caches; a port counts as this network's only with our cache entry.
async fn gc(conf: &NetConf) -> Result<(), CniError> {
    let Some(valid) = &conf.valid_attachments else {
        return Ok(());
    };
    let mut db = connect("connect to ovsdb-server", conf).await?;
    let results = db
        .transact(&[
            json!({"op": "select", "table": "Port", "columns": ["_uuid", "name", "external_ids"],
                   "where": [["external_ids", "includes", ovsdb::map([("owner", OWNER)])]]}),
            json!({"op": "select", "table": "Bridge", "where": bridge_where(conf), "columns": ["ports"]}),
        ])
        .await
        .map_err(|e| ovsdb_failure("list ports", conf, e))?;
    let on_bridge: BTreeSet<String> = results[1]["rows"]
        .get(0)
        .map(|b| {
            ovsdb::set_members(&b["ports"])
                .iter()
                .filter_map(|u| ovsdb::uuid_of(u).map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let mut stale = Vec::new();
    for row in results[0]["rows"].as_array().into_iter().flatten() {
        let Some(uuid) = ovsdb::uuid_of(&row["_uuid"]) else {
            continue;
        };
        let ids = ovsdb::map_of(&row["external_ids"]);
        let (Some(cid), Some(ifname)) = (ids.get("contId"), ids.get("contIface")) else {
            continue; // not identifiable as an attachment: leave it alone
        };
        // They name a cache file: only ids a runtime could have passed.
        if check_container_id(cid).is_err() || check_ifname(ifname).is_err() {
            continue;
        }
        if !on_bridge.contains(uuid) || valid.contains(&(cid.clone(), ifname.clone())) {
            continue;
        }
        // Only attachments of this network that this plugin made on this node and
        // still remembers: the runtime's list names this network's attachments
        // only, so a Port row's external_ids and that list alone would take the
        // ports of every other network (another tenant's) on the bridge.
        let name = row["name"].as_str().unwrap_or_default();
        let ours = matches!(
            cache::read(cid, ifname),
            Ok(Some(entry)) if entry.host_iface == name
                && entry.bridge == conf.bridge
                && entry.netconf["name"].as_str() == Some(conf.name.as_str())
        );
        if ours {
            stale.push((
                uuid.to_string(),
                row["name"].as_str().unwrap_or_default().to_string(),
                cid.clone(),
                ifname.clone(),
            ));
        }
    }
    if stale.is_empty() {
        return Ok(());
    }
    let uuids: Vec<String> = stale.iter().map(|s| s.0.clone()).collect();
    db.transact(&remove_ports_operations(&uuids))
        .await
        .map_err(|e| ovsdb_failure("remove stale ports", conf, e))?;
    let host = netlink_in(None)
        .await
        .map_err(|e| io_failure("open netlink in the host namespace", e))?;
    let mut errors = Vec::new();
    for (_, name, cid, ifname) in &stale {
        if let Err(e) = delete_veth(&host, name).await {
            errors.push(e.msg);
        }
        if let Err(e) = cache::remove(cid, ifname) {
            errors.push(e.to_string());
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(CniError::plugin(format!("GC: {}", errors.join("; "))))
    }
}
