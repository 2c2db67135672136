//! How much memory a flood of gRPC streams costs the device plugin: opens
//! `--connections` connections to one resource's socket and `--streams` ListAndWatch
//! streams on each, holds them, and prints the plugin's RSS before, at the peak, and
//! after the client let go; and how many streams the plugin actually served.
//!
//! `cargo run -p macvtap-deviceplugin --example stream_flood -- --connections 500 --streams 200`
//! (as root; `MACVTAP_DEVICEPLUGIN_BIN=path` measures another build of the plugin).

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use common::{Node, config, resource};
use deviceplugin_api::v1beta1::Empty;
use deviceplugin_api::v1beta1::device_plugin_client::DevicePluginClient;
use deviceplugin_api::{HEALTHY, uds};

const BOUND: Duration = Duration::from_secs(10);

fn rss_mib(pid: i32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

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
    let pid = n.plugin().pid();
    let socket = n.socket("dataplane");
    println!("plugin {} pid {pid}", common::bin().display());
    println!("RSS before: {:.1} MiB", rss_mib(pid));

    let served = Arc::new(AtomicU32::new(0));
    let mut held = Vec::new();
    let mut refused = 0u32;
    for _ in 0..connections {
        let channel = match uds::connect(&socket, Duration::from_secs(2)).await {
            Ok(c) => c,
            Err(_) => {
                refused += 1;
                continue;
            }
        };
        for _ in 0..streams {
            let mut client = DevicePluginClient::new(channel.clone());
            let served = served.clone();
            held.push(tokio::spawn(async move {
                if let Ok(response) = client.list_and_watch(Empty {}).await {
                    let mut stream = response.into_inner();
                    if let Ok(Some(_)) = stream.message().await {
                        served.fetch_add(1, Ordering::Relaxed);
                    }
                    // Hold the stream open.
                    let _ = stream.message().await;
                }
            }));
        }
    }
    tokio::time::sleep(Duration::from_secs(10)).await;
    println!(
        "asked {} streams on {connections} connections ({refused} connections refused at connect); served {}",
        connections * streams,
        served.load(Ordering::Relaxed)
    );
    println!("RSS with the streams held: {:.1} MiB", rss_mib(pid));
    for h in &held {
        h.abort();
    }
    drop(held);
    tokio::time::sleep(Duration::from_secs(5)).await;
    println!("RSS 5 s after the client let go: {:.1} MiB", rss_mib(pid));
    let alive = n.plugin().is_running();
    println!("plugin still running: {alive}");
}
