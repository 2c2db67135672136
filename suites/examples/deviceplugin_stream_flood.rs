//! How much memory a flood of gRPC streams costs the device plugin: opens
//! `--connections` connections to one resource's socket and `--streams` ListAndWatch
//! streams on each, holds them, and prints the plugin's RSS before, at the peak, and
//! after the client let go; and how many streams the plugin actually served.
//!
//! `cargo build -p macvtap-deviceplugin && cargo run -p secnet-suites --example
//! deviceplugin_stream_flood -- --connections 500 --streams 200`
//! (as root; `MACVTAP_DEVICEPLUGIN_BIN=path` measures another build of the plugin).

#[path = "../tests/plugins/macvtap_deviceplugin.rs"]
mod common;

use std::time::Duration;

use common::{Node, config, resource};
use deviceplugin_api::HEALTHY;
use secnet::kubelet::stream_flood::{Flood, rss_mib};

const BOUND: Duration = Duration::from_secs(10);

fn arg(name: &str, default: u32) -> u32 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if !secnet::prereq::require_root("macvtap-deviceplugin stream flood") {
        return;
    }
    let (connections, streams) = (arg("--connections", 500), arg("--streams", 200));
    let mut n = Node::new();
    n.start_plugin(Some(&config("dataplane", "ens33", "")), &[]);
    n.kubelet
        .wait_for_devices(&resource("dataplane"), 100, HEALTHY, BOUND)
        .await
        .unwrap();
    let pid = n.plugin().pid() as u32;
    let socket = n.socket("dataplane");
    println!("plugin {} pid {pid}", common::bin().display());
    println!("RSS before: {:.1} MiB", rss_mib(pid));

    let flood = Flood::open(&socket, connections, streams).await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    println!(
        "asked {} streams on {connections} connections ({} connections refused at connect); served {}",
        flood.asked(),
        flood.refused_connections,
        flood.served()
    );
    println!("RSS with the streams held: {:.1} MiB", rss_mib(pid));
    drop(flood);
    tokio::time::sleep(Duration::from_secs(5)).await;
    println!("RSS 5 s after the client let go: {:.1} MiB", rss_mib(pid));
    let alive = n.plugin().is_running();
    println!("plugin still running: {alive}");
}
