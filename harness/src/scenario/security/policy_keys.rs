//! Every key of the node policy's `[ovs]` section played both ways: a configuration
//! it allows attaches, one it refuses is refused with the node unchanged. A key
//! that is only ever seen refusing could refuse everything (a list parsed as
//! empty) and no attack scenario would notice.

use serde_json::{Value, json};

use super::{OvsStage, bridge_state, control, described, error_msg, verdict};
use crate::cni::exec;
use crate::lab::node::NodeLab;
use crate::scenario::{Ctx, Outcome, ensure};

/// The admin's `[ovs]` keys beyond the socket: one bridge, two VLANs and a range,
/// trunks of at most two entries, and an MTU floor.
const POLICY: &str =
    "bridges = br1\nvlans = 100, 200-202\ntrunk = true\nmax_trunk_entries = 2\nmin_mtu = 1400\n";

/// Allowed by [`POLICY`], one key at a time at its edge.
fn allowed() -> [(&'static str, Value); 5] {
    [
        ("vlans: vlan 100", json!({"vlan": 100})),
        ("vlans: vlan 202, the range's end", json!({"vlan": 202})),
        (
            "trunk, max_trunk_entries: two entries within vlans",
            json!({"trunk": [{"id": 100}, {"minID": 200, "maxID": 202}]}),
        ),
        ("min_mtu: mtu 1400", json!({"mtu": 1400})),
        ("bridges: br1", json!({"bridge": "br1", "vlan": 201})),
    ]
}

/// Refused by [`POLICY`]: each by one key, which the refusal must name.
fn refused() -> [(&'static str, Value); 5] {
    [
        ("[ovs] vlans", json!({"vlan": 101})),
        (
            "[ovs] vlans",
            json!({"trunk": [{"minID": 200, "maxID": 203}]}),
        ),
        (
            "[ovs] max_trunk_entries",
            json!({"trunk": [{"id": 100}, {"id": 200}, {"id": 201}]}),
        ),
        ("[ovs] min_mtu", json!({"mtu": 1399})),
        ("[ovs] bridges", json!({"bridge": "br2", "vlan": 100})),
    ]
}

pub(super) async fn ovs_policy_keys(ctx: &Ctx, nl: &mut NodeLab) -> Outcome {
    let mut stage = OvsStage::new(ctx, nl, POLICY)?;
    // br2 exists: only the policy's bridge list stands between a tenant and it.
    stage.ovs.add_bridge("br2")?;
    for (i, (what, config)) in allowed().into_iter().enumerate() {
        control(nl, &stage.call(ctx, &format!("ok{i}"), config), what).await?;
    }
    for (i, (key, attack)) in refused().into_iter().enumerate() {
        let bridge = attack["bridge"].as_str().unwrap_or("br1").to_string();
        let call = stage.call(ctx, &format!("no{i}"), attack.clone());
        let before = bridge_state(nl, &stage, &bridge)?;
        let reply = exec(&call, Some(&nl.node_ns)).await?;
        let after = bridge_state(nl, &stage, &bridge)?;
        verdict(
            nl,
            &call,
            &reply,
            format!("the NAD {attack} was accepted"),
            &format!("the node's policy has {}", POLICY.replace('\n', "; ")),
            &attack,
            before,
            after,
        )
        .await?;
        // The admin must learn which key refused, in which file: that is where
        // they would allow it (docs/threat-model.md).
        let text = error_msg(&reply);
        ensure(text.contains(key) && text.contains(&stage.policy), || {
            format!(
                "the refusal of {attack} must name {key} and the node policy {}: {}",
                stage.policy,
                described(&reply)
            )
        })?;
    }
    // A node whose policy file does not exist has the defaults (the default socket
    // only, no trunks); the refusal names the file the admin would create.
    stage.policy = stage
        .scratch
        .path()
        .join("absent.conf")
        .display()
        .to_string();
    let attack = json!({"trunk": [{"id": 100}]});
    let call = stage.call(ctx, "nofile", attack.clone());
    let before = bridge_state(nl, &stage, "br1")?;
    let reply = exec(&call, Some(&nl.node_ns)).await?;
    let after = bridge_state(nl, &stage, "br1")?;
    verdict(
        nl,
        &call,
        &reply,
        format!("the NAD {attack} was accepted"),
        "without a policy file only the default socket is allowed, and no trunks",
        &attack,
        before,
        after,
    )
    .await?;
    let text = error_msg(&reply);
    ensure(
        text.contains(&stage.policy) && text.contains("does not exist"),
        || {
            format!(
                "the refusal must say that the node policy {} does not exist: {}",
                stage.policy,
                described(&reply)
            )
        },
    )
}
