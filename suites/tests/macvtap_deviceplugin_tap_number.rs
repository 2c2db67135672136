//! The `/dev/tapN` device-number attack against Allocate in the kernel's numbering
//! (the device plugin in the host's namespace, as on a real node): another
//! namespace holds the `/dev/tapN` of the indexes the node hands out next. The
//! device plugin must not hand out such a path, and still give a working device.

use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use cni_kit::netns::netlink_in;
use macvtap_deviceplugin::allocate::{TapIndex, create_tap};
use macvtap_deviceplugin::config::ResourceConfig;
use secnet::lab::node::NodeLab;

fn node_of(index: u32) -> Option<(u64, u32)> {
    let m = std::fs::symlink_metadata(format!("/dev/tap{index}")).ok()?;
    Some((m.rdev(), m.uid()))
}

fn wait_node(index: u32) -> (u64, u32) {
    for _ in 0..200 {
        if let Some(n) = node_of(index) {
            return n;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("/dev/tap{index} never appeared");
}

#[test]
fn allocate_refuses_a_tap_node_of_another_namespace_and_picks_a_free_index() {
    if !secnet::prereq::require_root(
        "allocate_refuses_a_tap_node_of_another_namespace_and_picks_a_free_index",
    ) {
        return;
    }
    let mut nl = NodeLab::new().expect("node lab");
    let attacker = nl.pod("attacker").expect("attacker netns");
    // Tests running beside this one make macvtaps in fresh namespaces, at small
    // indexes, all the time, and /dev/tapN is global: their nodes came and went at
    // the indexes this node hands out next, so "the attacker holds some /dev/tapN"
    // failed under load. Move the node's counter far past theirs first (the links
    // go with the node's namespace).
    let fill = std::env::temp_dir().join(format!("secnet-tapnum-fill-{}", std::process::id()));
    let batch: String = (0..300)
        .map(|i| format!("link add fill{i} type veth peer name fillp{i}\n"))
        .collect();
    std::fs::write(&fill, batch).expect("write the batch");
    let filled = nl
        .lab
        .ip(&nl.node, &["-batch", &fill.display().to_string()]);
    let _ = std::fs::remove_file(&fill);
    filled.expect("fill the node's ifindex counter");
    // The node's ifindex counter, as the attacker reads it from its eth0@ifNN.
    nl.lab
        .ip(
            &nl.node,
            &[
                "link", "add", "probe0", "type", "veth", "peer", "name", "probe1",
            ],
        )
        .unwrap();
    let shown = nl.link(&nl.node, "probe0").expect("probe link");
    let counter = shown.index;
    nl.lab.ip(&nl.node, &["link", "del", "probe0"]).unwrap();
    nl.lab
        .ip(
            &attacker,
            &[
                "link", "add", "lower0", "type", "veth", "peer", "name", "lower1",
            ],
        )
        .unwrap();
    let mut held = Vec::new();
    for index in counter + 1..=counter + 4 {
        if node_of(index).is_some() {
            continue;
        }
        let (idx, name) = (index.to_string(), format!("atk{index}"));
        nl.lab
            .ip(
                &attacker,
                &[
                    "link", "add", &name, "index", &idx, "link", "lower0", "type", "macvtap",
                ],
            )
            .unwrap();
        held.push((index, wait_node(index)));
    }
    assert!(!held.is_empty(), "the attacker holds some /dev/tapN");

    let mut resource = ResourceConfig::discovered(nl.uplink());
    resource.owner = Some(107);
    resource.group = Some(107);
    let id = format!("{}Mvp0", resource.name);
    // Allocate as the device plugin runs it: on a thread in the node's namespace
    // (the blocking pool it starts inherits that namespace).
    let node_ns = nl.node.open().expect("open node netns");
    let tap = std::thread::scope(|s| {
        s.spawn(|| {
            node_ns.enter_current_thread().expect("enter the node");
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let handle = netlink_in(None).await.expect("netlink");
                create_tap(&handle, &resource, &id, TapIndex::Kernel)
                    .await
                    .map_err(|e| e.to_string())
            })
        })
        .join()
        .expect("allocate thread")
    })
    .expect("Allocate succeeds with another index");

    assert!(
        !held.iter().any(|(i, _)| *i == tap.index),
        "handed out /dev/tap{} of the attacker",
        tap.index
    );
    for (index, before) in &held {
        assert_eq!(
            node_of(*index),
            Some(*before),
            "the attacker's /dev/tap{index} is untouched (not chowned)"
        );
    }
    let link = nl.link(&nl.node, &tap.link_name).expect("the new macvtap");
    assert_eq!(link.index, tap.index);
    let (_, uid) = node_of(tap.index).expect("its /dev/tapN");
    assert_eq!(uid, 107, "its own node was chowned");
}
