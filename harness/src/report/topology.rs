//! The topology drawing of one scenario's cluster (SVG): nodes side by side above
//! the fabric; in each node its pods (and the VM guests in their launcher pods,
//! each NIC with its binding) on the left, and on the right what they hang off:
//! Open vSwitch bridges with their trunk ports into the fabric, and the node's
//! uplink. Every secondary interface is wired to the device it hangs off. Under
//! the fabric, each live migration the scenario made: an arrow from the source
//! node to the target node with the handover's numbers (total, the stream's
//! downtime, QEMU's), and what the LAN or the peer saw of the handover.

use std::fmt::Write as _;

use super::escape;
use crate::observe::{GuestSnap, InterfaceSnap, MigrationObs, NodeSnap, Topology, WorkloadSnap};

/// Width of the workloads' column inside a node.
const WORK_W: usize = 450;
/// Width of the devices' column (bridges, trunks, uplink).
const DEV_W: usize = 170;
/// Room between the columns for the wires' vertical runs.
const BUS_W: usize = 40;
const NODE_W: usize = 10 + WORK_W + BUS_W + DEV_W + 10;
const GAP: usize = 30;
const LINE: usize = 15;
const DEV_H: usize = 24;

const UPLINK_COLOUR: &str = "#ef6c00";
const MIGRATION_COLOUR: &str = "#6a1b9a";
/// Height of one migration's band under the fabric.
const MIGRATION_H: usize = 46;
/// The longest handover text drawn (the whole is the arrow's tooltip).
const HANDOVER_CHARS: usize = 150;
const OVS_COLOUR: &str = "#2e7d32";

fn guest_height(g: &GuestSnap) -> usize {
    24 + LINE * g.nics.len().max(1)
}

fn workload_height(w: &WorkloadSnap, guest: Option<&GuestSnap>) -> usize {
    24 + LINE * w.interfaces.len().max(1) + guest.map_or(0, |g| guest_height(g) + 8)
}

/// The guest running in workload `w`, if it is a virt-launcher pod.
fn guest_in<'a>(w: &WorkloadSnap, guests: &'a [GuestSnap]) -> Option<&'a GuestSnap> {
    guests.iter().find(|g| g.pod == w.name && g.node == w.node)
}

/// The node device an interface hangs off: its `via`, else what its attachment
/// text names after " on " (reports written before `via` existed).
fn hangs_off(iface: &InterfaceSnap) -> Option<String> {
    if let Some(via) = &iface.via {
        return Some(via.clone());
    }
    let a = iface.attachment.as_deref()?;
    let (_, on) = a.split_once(" on ")?;
    on.split_whitespace().next().map(str::to_string)
}

/// Where a wire ends on the devices' column: its y and colour.
struct Port {
    name: String,
    y: usize,
    colour: &'static str,
    /// The wire's vertical run, between the columns.
    bus_x: usize,
}

fn node_height(n: &NodeSnap, t: &Topology, guests: &[GuestSnap]) -> usize {
    let work: usize = t
        .workloads
        .iter()
        .filter(|w| w.node == n.name)
        .map(|w| workload_height(w, guest_in(w, guests)) + 10)
        .sum();
    let devices = 60 + n.ovs_bridges.len() * (2 * DEV_H + 30) + 2 * DEV_H + 20;
    (50 + work + 10).max(devices)
}

pub fn topology_svg(t: &Topology, guests: &[GuestSnap], migrations: &[MigrationObs]) -> String {
    let inner_h = t
        .nodes
        .iter()
        .map(|n| node_height(n, t, guests))
        .max()
        .unwrap_or(120);
    let width = GAP + t.nodes.len().max(1) * (NODE_W + GAP);
    let moves: Vec<&MigrationObs> = migrations
        .iter()
        .filter(|m| node_x(t, &m.source_node).is_some() && node_x(t, &m.target_node).is_some())
        .collect();
    let height = inner_h + 90 + moves.len() * MIGRATION_H;
    let fabric_y = inner_h + 50;
    let mut s = format!(
        "<svg class=\"topology\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" style=\"max-width:100%;height:auto\" viewBox=\"0 0 {width} {height}\" font-family=\"monospace\" font-size=\"11\">"
    );
    let _ = write!(
        s,
        "<rect x=\"10\" y=\"{fabric_y}\" width=\"{}\" height=\"28\" rx=\"5\" fill=\"#455a64\"/><text x=\"20\" y=\"{}\" fill=\"#fff\" font-size=\"12\">fabric {}</text>",
        width - 20,
        fabric_y + 18,
        escape(&t.fabric)
    );
    for (i, n) in t.nodes.iter().enumerate() {
        let x = GAP + i * (NODE_W + GAP);
        node(&mut s, t, guests, n, x, inner_h, fabric_y);
    }
    if !moves.is_empty() {
        let _ = write!(
            s,
            "<defs><marker id=\"migration-head\" viewBox=\"0 0 10 10\" refX=\"9\" refY=\"5\" markerWidth=\"8\" markerHeight=\"8\" orient=\"auto\"><path d=\"M0,0 L10,5 L0,10 z\" fill=\"{MIGRATION_COLOUR}\"/></marker></defs>"
        );
    }
    for (k, m) in moves.iter().enumerate() {
        migration(&mut s, t, m, fabric_y + 40 + k * MIGRATION_H);
    }
    s.push_str("</svg>");
    s
}

/// The left edge of node `name`'s box.
fn node_x(t: &Topology, name: &str) -> Option<usize> {
    let i = t.nodes.iter().position(|n| n.name == name)?;
    Some(GAP + i * (NODE_W + GAP))
}

/// One migration's band: an arrow from the source node's middle to the target
/// node's, its numbers over it and the handover under it.
fn migration(s: &mut String, t: &Topology, m: &MigrationObs, y: usize) {
    let mid = |n: &str| node_x(t, n).map_or(0, |x| x + NODE_W / 2);
    let (from, to) = (mid(&m.source_node), mid(&m.target_node));
    let ay = y + 14;
    let numbers = format!(
        "vm {} [{}] {} \u{2192} {}: {} in {:.0} ms, downtime {:.0} ms (stream), {} ms (QEMU), {:.1} MB moved",
        m.vm,
        m.binding,
        m.source_node,
        m.target_node,
        m.status,
        m.total_s * 1000.0,
        m.stream_downtime_s * 1000.0,
        m.qemu_downtime_ms
            .map_or("-".to_string(), |d| d.to_string()),
        m.bytes as f64 / 1e6
    );
    let handover: String = if m.lan.chars().count() > HANDOVER_CHARS {
        m.lan
            .chars()
            .take(HANDOVER_CHARS)
            .chain("\u{2026}".chars())
            .collect()
    } else {
        m.lan.clone()
    };
    let dash = if m.status == "completed" {
        ""
    } else {
        " stroke-dasharray=\"6,4\""
    };
    let _ = write!(
        s,
        "<g class=\"migration\"><title>{}</title><text x=\"20\" y=\"{}\" fill=\"{MIGRATION_COLOUR}\">{}</text><line x1=\"{from}\" y1=\"{ay}\" x2=\"{to}\" y2=\"{ay}\" stroke=\"{MIGRATION_COLOUR}\" stroke-width=\"2\"{dash} marker-end=\"url(#migration-head)\"/><text x=\"20\" y=\"{}\" font-size=\"10\" fill=\"#555\">handover: {}</text></g>",
        escape(&m.lan),
        y + 4,
        escape(&numbers),
        ay + 16,
        escape(&handover)
    );
}

fn node(
    s: &mut String,
    t: &Topology,
    guests: &[GuestSnap],
    n: &NodeSnap,
    x: usize,
    inner_h: usize,
    fabric_y: usize,
) {
    let y = 20;
    let _ = write!(
        s,
        "<g class=\"node\"><rect x=\"{x}\" y=\"{y}\" width=\"{NODE_W}\" height=\"{inner_h}\" rx=\"8\" fill=\"#e3f2fd\" stroke=\"#1565c0\"/><text x=\"{}\" y=\"{}\" font-size=\"13\" font-weight=\"bold\">node {}</text>",
        x + 10,
        y + 18,
        escape(&n.name)
    );
    let dev_x = x + 10 + WORK_W + BUS_W;
    if !n.bridges.is_empty() {
        let _ = write!(
            s,
            "<text x=\"{dev_x}\" y=\"{}\">bridges: {}</text>",
            y + 18,
            escape(&n.bridges.join(", "))
        );
    }
    let ports = devices(s, n, dev_x, y, inner_h, fabric_y, x + NODE_W);
    let mut wy = y + 32;
    for w in t.workloads.iter().filter(|w| w.node == n.name) {
        let guest = guest_in(w, guests);
        let wh = workload_height(w, guest);
        workload(s, w, guest, x + 10, wy, wh, &ports);
        wy += wh + 10;
    }
    s.push_str("</g>");
}

/// The devices' column: each OVS bridge with its trunk ports wired to the fabric,
/// then the node's uplink at the bottom. Returns where wires end.
fn devices(
    s: &mut String,
    n: &NodeSnap,
    dev_x: usize,
    y: usize,
    inner_h: usize,
    fabric_y: usize,
    node_right: usize,
) -> Vec<Port> {
    let mut ports = Vec::new();
    let mut dy = y + 40;
    for (k, b) in n.ovs_bridges.iter().enumerate() {
        let _ = write!(
            s,
            "<g class=\"ovs-bridge\"><rect x=\"{dev_x}\" y=\"{dy}\" width=\"{DEV_W}\" height=\"{DEV_H}\" rx=\"4\" fill=\"#e8f5e9\" stroke=\"{OVS_COLOUR}\"/><text x=\"{}\" y=\"{}\">OVS bridge {}</text>",
            dev_x + 6,
            dy + 16,
            escape(&b.name)
        );
        ports.push(Port {
            name: b.name.clone(),
            y: dy + DEV_H / 2,
            colour: OVS_COLOUR,
            bus_x: dev_x - 12 - 6 * k,
        });
        for trunk in &b.trunks {
            let ty = dy + DEV_H + 14;
            let _ = write!(
                s,
                "<line x1=\"{0}\" y1=\"{1}\" x2=\"{0}\" y2=\"{ty}\" stroke=\"{OVS_COLOUR}\" stroke-width=\"2\"/><rect x=\"{dev_x}\" y=\"{ty}\" width=\"{DEV_W}\" height=\"{DEV_H}\" rx=\"4\" fill=\"#fff\" stroke=\"{OVS_COLOUR}\"/><text x=\"{2}\" y=\"{3}\">{4} (trunk)</text>",
                dev_x + 30,
                dy + DEV_H,
                dev_x + 6,
                ty + 16,
                escape(trunk)
            );
            // Along the node's right edge down to the fabric.
            let edge = node_right - 6;
            let _ = write!(
                s,
                "<polyline points=\"{},{} {edge},{} {edge},{fabric_y}\" fill=\"none\" stroke=\"{OVS_COLOUR}\" stroke-width=\"2\"/>",
                dev_x + DEV_W,
                ty + DEV_H / 2,
                ty + DEV_H / 2
            );
            dy = ty;
        }
        s.push_str("</g>");
        dy += DEV_H + 30;
    }
    // The uplink sits at the bottom of the column, wired straight down.
    let up_h = DEV_H + 14;
    let up_y = y + inner_h - up_h - 10;
    let line_x = dev_x + DEV_W / 2;
    let _ = write!(
        s,
        "<g class=\"uplink\"><rect x=\"{dev_x}\" y=\"{up_y}\" width=\"{DEV_W}\" height=\"{up_h}\" rx=\"4\" fill=\"#fff3e0\" stroke=\"{UPLINK_COLOUR}\"/><text x=\"{}\" y=\"{}\">uplink {}</text><text x=\"{}\" y=\"{}\">{}</text><line x1=\"{line_x}\" y1=\"{}\" x2=\"{line_x}\" y2=\"{fabric_y}\" stroke=\"{UPLINK_COLOUR}\" stroke-width=\"2\"/></g>",
        dev_x + 6,
        up_y + 15,
        escape(&n.uplink),
        dev_x + 6,
        up_y + 30,
        escape(&n.address),
        up_y + up_h
    );
    ports.push(Port {
        name: n.uplink.clone(),
        y: up_y + up_h / 2,
        colour: UPLINK_COLOUR,
        bus_x: dev_x - 30,
    });
    ports
}

fn workload(
    s: &mut String,
    w: &WorkloadSnap,
    guest: Option<&GuestSnap>,
    x: usize,
    wy: usize,
    wh: usize,
    ports: &[Port],
) {
    let fill = if w.kind == "vm" { "#f3e5f5" } else { "#ffffff" };
    let _ = write!(
        s,
        "<g class=\"workload\"><rect x=\"{x}\" y=\"{wy}\" width=\"{WORK_W}\" height=\"{wh}\" rx=\"5\" fill=\"{fill}\" stroke=\"#555\"/><text x=\"{}\" y=\"{}\" font-weight=\"bold\">{} {}</text>",
        x + 6,
        wy + 15,
        escape(&w.kind),
        escape(&w.name)
    );
    for (k, iface) in w.interfaces.iter().enumerate() {
        let ly = wy + 30 + k * LINE;
        let text = format!(
            "{} {} {} {}",
            iface.name,
            iface.mac.as_deref().unwrap_or("-"),
            iface.ips.join(","),
            iface.attachment.as_deref().unwrap_or("")
        );
        let _ = write!(
            s,
            "<text x=\"{}\" y=\"{ly}\">{}</text>",
            x + 12,
            escape(&text)
        );
        if let Some(port) = hangs_off(iface).and_then(|d| ports.iter().find(|p| p.name == d)) {
            let _ = write!(
                s,
                "<polyline class=\"wire\" points=\"{},{} {bx},{} {bx},{} {},{}\" fill=\"none\" stroke=\"{}\" stroke-dasharray=\"4,2\"/>",
                x + WORK_W,
                ly - 4,
                ly - 4,
                port.y,
                x + WORK_W + BUS_W,
                port.y,
                port.colour,
                bx = port.bus_x,
            );
        }
    }
    if let Some(g) = guest {
        let gy = wy + 30 + LINE * w.interfaces.len().max(1) - 4;
        let _ = write!(
            s,
            "<g class=\"guest\"><rect x=\"{}\" y=\"{gy}\" width=\"{}\" height=\"{}\" rx=\"5\" fill=\"#f3e5f5\" stroke=\"#6a1b9a\"/><text x=\"{}\" y=\"{}\" font-weight=\"bold\">vm {} (guest)</text>",
            x + 12,
            WORK_W - 24,
            guest_height(g),
            x + 18,
            gy + 15,
            escape(&g.name)
        );
        for (k, nic) in g.nics.iter().enumerate() {
            let text = format!(
                "{} {} {} \u{2190} {} binding \u{2190} pod {}",
                nic.name,
                nic.mac,
                nic.addresses.join(","),
                nic.binding,
                nic.pod_interface
            );
            let _ = write!(
                s,
                "<text x=\"{}\" y=\"{}\">{}</text>",
                x + 24,
                gy + 30 + k * LINE,
                escape(&text)
            );
        }
        s.push_str("</g>");
    }
    s.push_str("</g>");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::{GuestNicSnap, OvsBridgeSnap};

    fn iface(name: &str, attachment: &str, via: Option<&str>) -> InterfaceSnap {
        InterfaceSnap {
            name: name.into(),
            network: "default/x".into(),
            mac: Some("02:23:45:67:89:01".into()),
            ips: vec![],
            attachment: Some(attachment.into()),
            via: via.map(str::to_string),
        }
    }

    fn topology() -> Topology {
        Topology {
            fabric: "br0".into(),
            nodes: vec![NodeSnap {
                name: "node1".into(),
                uplink: "ens33".into(),
                address: "192.168.159.137".into(),
                bridges: vec!["cni0".into()],
                ovs_bridges: vec![OvsBridgeSnap {
                    name: "br1".into(),
                    trunks: vec!["ens34".into()],
                }],
            }],
            workloads: vec![
                WorkloadSnap {
                    name: "macvtap-pod".into(),
                    kind: "pod".into(),
                    node: "node1".into(),
                    interfaces: vec![
                        iface("eth0", "cni0 (pod network)", Some("cni0")),
                        iface("net1", "macvtap on ens33 (device plugin)", Some("ens33")),
                    ],
                },
                WorkloadSnap {
                    name: "ovs-pod".into(),
                    kind: "pod".into(),
                    node: "node1".into(),
                    // No `via`: read from the attachment, as in older reports.
                    interfaces: vec![iface("net1", "ovs on br1 vlan 100", None)],
                },
                WorkloadSnap {
                    name: "virt-launcher-vm-a-1".into(),
                    kind: "pod".into(),
                    node: "node1".into(),
                    interfaces: vec![iface(
                        "net1",
                        "macvtap on ens33 (device plugin)",
                        Some("ens33"),
                    )],
                },
            ],
        }
    }

    #[test]
    fn draws_nodes_bridges_trunks_uplinks_pods_and_guests() {
        let guests = vec![GuestSnap {
            name: "vm-a".into(),
            pod: "virt-launcher-vm-a-1".into(),
            node: "node1".into(),
            nics: vec![GuestNicSnap {
                name: "dataplane".into(),
                binding: "macvtap".into(),
                pod_interface: "net1".into(),
                mac: "02:00:00:00:00:0a".into(),
                addresses: vec![],
            }],
        }];
        let svg = topology_svg(&topology(), &guests, &[]);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        for needle in [
            "node node1",
            "pod macvtap-pod",
            "02:23:45:67:89:01",
            "uplink ens33",
            "192.168.159.137",
            "OVS bridge br1",
            "ens34 (trunk)",
            "vm vm-a (guest)",
            "dataplane 02:00:00:00:00:0a  \u{2190} macvtap binding \u{2190} pod net1",
        ] {
            assert!(svg.contains(needle), "{needle} missing: {svg}");
        }
        // Two macvtaps wired to the uplink, the OVS port to br1; eth0 (cni0) not wired.
        assert_eq!(
            svg.matches(&format!("stroke=\"{UPLINK_COLOUR}\" stroke-dasharray"))
                .count(),
            2
        );
        assert_eq!(
            svg.matches(&format!("stroke=\"{OVS_COLOUR}\" stroke-dasharray"))
                .count(),
            1
        );
    }

    fn two_nodes() -> Topology {
        let mut t = topology();
        let mut second = t.nodes[0].clone();
        second.name = "node2".into();
        t.nodes.push(second);
        t
    }

    fn moved(status: &str) -> MigrationObs {
        MigrationObs {
            vm: "vm-mig".into(),
            binding: "macvtap".into(),
            source_node: "node1".into(),
            target_node: "node2".into(),
            status: status.into(),
            total_s: 0.412,
            qemu_downtime_ms: Some(201),
            bytes: 65_900_000,
            stream_downtime_s: 0.35,
            stream_interval_ms: 10,
            icmp_sent: 200,
            icmp_lost: 35,
            udp_sent: 200,
            udp_lost: 35,
            first_lost_s: Some(1.0),
            last_lost_s: Some(1.35),
            lan:
                "+0 ms: br0-p1 (node1); source paused the guest at +380 ms; +390 ms: br0-p2 (node2)"
                    .into(),
        }
    }

    #[test]
    fn draws_a_migration_from_the_source_node_to_the_target() {
        let svg = topology_svg(&two_nodes(), &[], &[moved("completed"), moved("failed")]);
        assert_eq!(svg.matches("<g class=\"migration\">").count(), 2, "{svg}");
        for needle in [
            "vm vm-mig [macvtap] node1 \u{2192} node2: completed in 412 ms, downtime 350 ms (stream), 201 ms (QEMU), 65.9 MB moved",
            "handover: +0 ms: br0-p1 (node1); source paused the guest at +380 ms",
            "marker-end=\"url(#migration-head)\"",
        ] {
            assert!(svg.contains(needle), "{needle} missing: {svg}");
        }
        // From the first node's middle to the second's; a failed move dashed.
        let (a, b) = (GAP + NODE_W / 2, GAP + NODE_W + GAP + NODE_W / 2);
        assert!(
            svg.contains(&format!("x1=\"{a}\"")) && svg.contains(&format!("x2=\"{b}\"")),
            "{svg}"
        );
        assert_eq!(svg.matches("stroke-dasharray=\"6,4\"").count(), 1);
        // A migration to a node the picture does not have is left out.
        let mut elsewhere = moved("completed");
        elsewhere.target_node = "node9".into();
        assert!(!topology_svg(&two_nodes(), &[], &[elsewhere]).contains("class=\"migration\""));
    }

    #[test]
    fn hangs_off_prefers_via_and_reads_old_attachments() {
        assert_eq!(
            hangs_off(&iface("net1", "ovs on br1 vlan 100", None)).as_deref(),
            Some("br1")
        );
        assert_eq!(
            hangs_off(&iface("net1", "whatever", Some("ens33"))).as_deref(),
            Some("ens33")
        );
        assert_eq!(hangs_off(&iface("eth0", "cni0 (pod network)", None)), None);
    }
}
