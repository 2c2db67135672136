//! Measures, side by side in one process, against the kubelet double:
//! time from start to registration (and to the first device list), re-registration
//! after a kubelet restart, Allocate latency, and the time from a lower link going
//! down (netlink ack) to the kubelet seeing Unhealthy.
//!
//! `cargo build -p macvtap-deviceplugin --release && \
//!  cargo run -p secnet-suites --release --example deviceplugin_bench` (as root).

#[path = "../tests/plugins/macvtap_deviceplugin.rs"]
mod common;

use std::time::{Duration, Instant};

use common::{Node, config, resource};
use deviceplugin_api::{HEALTHY, UNHEALTHY};
use rtnetlink::LinkUnspec;

const BOUND: Duration = Duration::from_secs(10);

fn report(what: &str, samples: &mut [Duration]) {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let pick = |q: f64| ms(samples[((samples.len() - 1) as f64 * q).round() as usize]);
    println!(
        "{what:<44} n={:<4} median {:>8.3} ms   p95 {:>8.3} ms   max {:>8.3} ms",
        samples.len(),
        pick(0.5),
        pick(0.95),
        ms(*samples.last().unwrap())
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if !secnet::prereq::require_root("macvtap-deviceplugin bench") {
        return;
    }
    let quick = std::env::args().any(|a| a == "--quick");
    let (starts, allocs, flaps) = if quick { (5, 50, 5) } else { (20, 500, 30) };
    let res = resource("dataplane");
    let conf = config("dataplane", "ens33", r#", "capacity": 50"#);
    let mut n = Node::new();

    let (mut to_register, mut to_devices) = (Vec::new(), Vec::new());
    for _ in 0..starts {
        let started = Instant::now();
        n.start_plugin(Some(&conf), &[]);
        let reg = n
            .kubelet
            .wait_for_registration(&res, started, BOUND)
            .await
            .unwrap();
        let view = n
            .kubelet
            .wait_until("a fresh device list", BOUND, |s| {
                s.resource(&res)
                    .filter(|r| r.updated_at.is_some_and(|t| t > started) && r.allocatable() == 50)
                    .cloned()
            })
            .await
            .unwrap();
        to_register.push(reg.at - started);
        to_devices.push(view.updated_at.unwrap() - started);
        assert_eq!(n.plugin().terminate(BOUND).and_then(|s| s.code()), Some(0));
    }
    report("start -> Register received", &mut to_register);
    report("start -> 50 Healthy devices listed", &mut to_devices);

    n.start_plugin(Some(&conf), &[]);
    n.kubelet
        .wait_for_devices(&res, 50, HEALTHY, BOUND)
        .await
        .unwrap();
    let mut re_register = Vec::new();
    for _ in 0..starts {
        let restarted = Instant::now();
        n.kubelet.restart().await.unwrap();
        let reg = n
            .kubelet
            .wait_for_registration(&res, restarted, BOUND)
            .await
            .unwrap();
        re_register.push(reg.at - restarted);
        n.kubelet
            .wait_for_devices(&res, 50, HEALTHY, BOUND)
            .await
            .unwrap();
    }
    report("kubelet restart -> Register received", &mut re_register);

    // The first 50 create a macvtap; later ones replace an existing one (delete first).
    let (mut fresh, mut replace) = (Vec::new(), Vec::new());
    for i in 0..allocs {
        let id = format!("dataplaneMvp{}", i % 50);
        let t = Instant::now();
        n.kubelet.allocate(&res, &[id]).await.unwrap();
        if i < 50 { &mut fresh } else { &mut replace }.push(t.elapsed());
    }
    report("Allocate new ID (1 ID, kubelet round trip)", &mut fresh);
    report("Allocate again (replaces the macvtap)", &mut replace);

    let handle = cni_kit::netns::netlink_in(Some(&n.node.open().unwrap()))
        .await
        .unwrap();
    let lower = cni_kit::netns::link_by_name(&handle, "ens33")
        .await
        .unwrap()
        .unwrap()
        .index;
    let (mut to_unhealthy, mut to_healthy) = (Vec::new(), Vec::new());
    for _ in 0..flaps {
        for (up, samples, health) in [
            (false, &mut to_unhealthy, UNHEALTHY),
            (true, &mut to_healthy, HEALTHY),
        ] {
            let link = LinkUnspec::new_with_index(lower);
            let message = if up { link.up() } else { link.down() }.build();
            handle.link().set(message).execute().await.unwrap();
            let acked = Instant::now();
            let view = n
                .kubelet
                .wait_for_devices(&res, 50, health, BOUND)
                .await
                .unwrap();
            samples.push(view.updated_at.unwrap().saturating_duration_since(acked));
        }
    }
    report(
        "lower link down -> kubelet sees Unhealthy",
        &mut to_unhealthy,
    );
    report("lower link up -> kubelet sees Healthy", &mut to_healthy);
}
