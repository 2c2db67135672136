//! Whether ADD may plug a port into the bridge a configuration names. A tenant's NAD
//! may name any bridge of the node, so two things are asked of the bridge itself:
//!
//! - does it carry the node's own traffic (the `br-ex` kind: one of its interfaces
//!   holds an address of the node, or is the device of a default route)? Such a
//!   bridge is refused unless the node's policy lists it in `[ovs] bridges`;
//! - its current MTU: Open vSwitch lowers a bridge's own (internal) port to the
//!   smallest MTU of its other ports, so on a bridge that carries the node a port
//!   below it would cut the node's traffic. Refused (a policy `min_mtu` replaces the
//!   floor).
//!
//! Refusals say what was refused, never what the node has (which bridges exist,
//! their ports, addresses or MTU): the message reaches the tenant's pod events. The
//! reason is written to stderr, which only the runtime's log (the node's
//! administrator) sees.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, Ipv6Addr};

use cni_kit::CniError;
use cni_kit::failure::netlink as netlink_failure;
use cni_kit::netns::{all_links, link_by_name};
use cni_kit::policy::Policy;
use futures::TryStreamExt;
use rtnetlink::packet_route::address::AddressScope;
use rtnetlink::packet_route::route::{RouteAttribute, RouteType};
use rtnetlink::{Handle, RouteMessageBuilder};
use serde_json::{Value, json};

use crate::config::NetConf;
use crate::ovsdb::{self, Client, OvsdbError};

use crate::config::DEFAULT_VETH_MTU;

/// What OVSDB says about a bridge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeFacts {
    /// The names of the interfaces of all its ports (its own internal one included).
    pub interfaces: BTreeSet<String>,
    /// The MTU of its own internal interface, when ovs-vswitchd has reported one.
    pub mtu: Option<u32>,
}

/// The bridge's ports' interfaces and its MTU; `None` when there is no such bridge.
pub async fn inspect(db: &mut Client, bridge: &str) -> Result<Option<BridgeFacts>, OvsdbError> {
    let results = db
        .transact(&[
            json!({"op": "select", "table": "Bridge", "where": [["name", "==", bridge]], "columns": ["ports"]}),
            json!({"op": "select", "table": "Port", "where": [], "columns": ["_uuid", "interfaces"]}),
            json!({"op": "select", "table": "Interface", "where": [], "columns": ["_uuid", "name", "mtu"]}),
        ])
        .await?;
    Ok(facts_from(&results, bridge))
}

/// [`inspect`]'s reading of the three selects' rows.
pub fn facts_from(results: &[Value], bridge: &str) -> Option<BridgeFacts> {
    let rows = |i: usize| results.get(i).and_then(|r| r["rows"].as_array()).cloned();
    let bridge_row = rows(0)?.into_iter().next()?;
    let uuids = |datum: &Value| -> BTreeSet<String> {
        ovsdb::set_members(datum)
            .iter()
            .filter_map(|u| ovsdb::uuid_of(u).map(str::to_string))
            .collect()
    };
    let ports = uuids(&bridge_row["ports"]);
    let mut iface_ids = BTreeSet::new();
    for port in rows(1).unwrap_or_default() {
        if ovsdb::uuid_of(&port["_uuid"]).is_some_and(|u| ports.contains(u)) {
            iface_ids.extend(uuids(&port["interfaces"]));
        }
    }
    let mut facts = BridgeFacts {
        interfaces: BTreeSet::new(),
        mtu: None,
    };
    for iface in rows(2).unwrap_or_default() {
        let Some(name) = iface["name"].as_str() else {
            continue;
        };
        if !ovsdb::uuid_of(&iface["_uuid"]).is_some_and(|u| iface_ids.contains(u)) {
            continue;
        }
        if name == bridge {
            facts.mtu = ovsdb::optional_int(&iface["mtu"]).and_then(|m| u32::try_from(m).ok());
        }
        facts.interfaces.insert(name.to_string());
    }
    Some(facts)
}

/// Why a bridge carries the node's traffic (for the administrator's log), or `None`.
pub async fn node_traffic(host: &Handle, facts: &BridgeFacts) -> Result<Option<String>, CniError> {
    let links = all_links(host)
        .await
        .map_err(|e| netlink_failure("list the node's links", e))?;
    let ours: Vec<(u32, &str)> = links
        .iter()
        .filter(|l| facts.interfaces.contains(&l.name))
        .map(|l| (l.index, l.name.as_str()))
        .collect();
    if ours.is_empty() {
        return Ok(None);
    }
    let addresses: Vec<_> = host
        .address()
        .get()
        .execute()
        .try_collect()
        .await
        .map_err(|e| netlink_failure("list the node's addresses", e))?;
    for a in &addresses {
        // Link-local addresses come with every interface that is up; they are not
        // the node's.
        if matches!(a.header.scope, AddressScope::Universe | AddressScope::Site)
            && let Some((_, name)) = ours.iter().find(|(i, _)| *i == a.header.index)
        {
            return Ok(Some(format!(
                "its interface {name} holds an address of the node"
            )));
        }
    }
    let mut default_devices = Vec::new();
    let v4 = RouteMessageBuilder::<Ipv4Addr>::new().build();
    let v6 = RouteMessageBuilder::<Ipv6Addr>::new().build();
    for query in [v4, v6] {
        let routes: Vec<_> = host
            .route()
            .get(query)
            .execute()
            .try_collect()
            .await
            .map_err(|e| netlink_failure("list the node's routes", e))?;
        for r in routes {
            if r.header.destination_prefix_length != 0 || r.header.kind != RouteType::Unicast {
                continue;
            }
            for attr in &r.attributes {
                match attr {
                    RouteAttribute::Oif(i) => default_devices.push(*i),
                    RouteAttribute::MultiPath(hops) => {
                        default_devices.extend(hops.iter().map(|h| h.interface_index))
                    }
                    _ => {}
                }
            }
        }
    }
    Ok(ours
        .iter()
        .find(|(i, _)| default_devices.contains(i))
        .map(|(_, name)| format!("its interface {name} is the device of a default route")))
}

/// The refusal of a bridge the configuration may not use, worded the same whether
/// the bridge is missing or carries the node, so that a tenant learns neither.
pub fn unavailable(conf: &NetConf, policy: &Policy) -> CniError {
    CniError::invalid_config(format!(
        "bridge \"{}\" is not available to network configurations on this node",
        conf.bridge
    ))
    .with_details(format!(
        "name a bridge the node's administrator set up for pods; bridges that carry the node's own traffic are allowed only when listed in [ovs] bridges of the node policy {}",
        policy.path.display()
    ))
}

/// Decides on the bridge once its facts are known: `Ok` to plug a port of the
/// configuration's MTU into it.
pub async fn admit(
    conf: &NetConf,
    policy: &Policy,
    facts: Option<&BridgeFacts>,
    host: &Handle,
) -> Result<(), CniError> {
    let Some(facts) = facts else {
        log(&format!("bridge \"{}\" does not exist", conf.bridge));
        return Err(unavailable(conf, policy));
    };
    let carries = node_traffic(host, facts).await?;
    if let Some(why) = &carries
        && policy.ovs.bridges.is_none()
    {
        log(&format!(
            "bridge \"{}\" refused: {why}; list it in [ovs] bridges of {} to allow it",
            conf.bridge,
            policy.path.display()
        ));
        return Err(unavailable(conf, policy));
    }
    // A policy `min_mtu` was checked by `NetConf::authorize` and replaces this floor.
    if carries.is_some() && policy.ovs.min_mtu.is_none() {
        let mtu = conf.mtu.unwrap_or(DEFAULT_VETH_MTU);
        let bridge_mtu = match facts.mtu {
            Some(m) => Some(m),
            None => link_by_name(host, &conf.bridge)
                .await
                .ok()
                .flatten()
                .map(|l| l.mtu),
        };
        if bridge_mtu.is_none_or(|floor| mtu < floor) {
            log(&format!(
                "mtu {mtu} refused on bridge \"{}\": its own port's MTU is {}, and a smaller port would lower it",
                conf.bridge,
                bridge_mtu.map_or("unknown".to_string(), |m| m.to_string())
            ));
            return Err(CniError::invalid_config(format!(
                "mtu {mtu} on bridge \"{}\" is refused: a port below the bridge's own MTU would lower the bridge's MTU for the node",
                conf.bridge
            ))
            .with_details(format!(
                "leave \"mtu\" at the bridge's MTU (ask the node's administrator), or the administrator sets [ovs] min_mtu in {}",
                policy.path.display()
            )));
        }
    }
    Ok(())
}

/// One line for the runtime's log (the CNI spec leaves stderr to the plugin).
fn log(line: &str) {
    eprintln!("ovs: {line}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_read_only_this_bridges_ports() {
        let results = vec![
            json!({"rows": [{"ports": ["set", [["uuid", "p1"], ["uuid", "p2"]]]}]}),
            json!({"rows": [
                {"_uuid": ["uuid", "p1"], "interfaces": ["uuid", "i1"]},
                {"_uuid": ["uuid", "p2"], "interfaces": ["set", [["uuid", "i2"]]]},
                {"_uuid": ["uuid", "p3"], "interfaces": ["uuid", "i3"]}]}),
            json!({"rows": [
                {"_uuid": ["uuid", "i1"], "name": "br-ex", "mtu": 9000},
                {"_uuid": ["uuid", "i2"], "name": "ens33", "mtu": ["set", []]},
                {"_uuid": ["uuid", "i3"], "name": "other", "mtu": 68}]}),
        ];
        let f = facts_from(&results, "br-ex").unwrap();
        assert_eq!(f.mtu, Some(9000));
        assert_eq!(
            f.interfaces.into_iter().collect::<Vec<_>>(),
            ["br-ex", "ens33"]
        );
        let none = vec![
            json!({"rows": []}),
            json!({"rows": []}),
            json!({"rows": []}),
        ];
        assert_eq!(facts_from(&none, "br-ex"), None);
    }

    #[test]
    fn missing_and_refused_bridges_read_alike() {
        let conf = NetConf::parse(&cni_kit::Invocation::add_for_test(
            br#"{"cniVersion":"1.0.0","bridge":"br-ex","vlan":42}"#,
            "",
        ))
        .unwrap();
        let e = unavailable(&conf, &Policy::default());
        assert!(e.msg.contains("\"br-ex\" is not available"), "{}", e.msg);
        assert!(!e.msg.contains("exist"), "{}", e.msg);
    }
}
