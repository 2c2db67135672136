//! A flood of ListAndWatch streams on a device plugin's resource socket: many
//! connections, many streams on each, held open until dropped. What a hostile pod
//! with the socket mounted could do; used by the `security` scenario and by the
//! suites' `deviceplugin_stream_flood` example to measure what it costs the plugin.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use deviceplugin_api::uds;
use deviceplugin_api::v1beta1::Empty;
use deviceplugin_api::v1beta1::device_plugin_client::DevicePluginClient;
use tokio::task::JoinHandle;

/// How long one connection may take to be set up before it counts as refused.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// The streams asked for, held open until this is dropped.
pub struct Flood {
    held: Vec<JoinHandle<()>>,
    served: Arc<AtomicU32>,
    /// Connections the plugin closed or never set up.
    pub refused_connections: u32,
    pub(crate) connections: u32,
    pub(crate) streams_per_connection: u32,
}

impl Flood {
    /// Opens `connections` connections to `socket` and asks for
    /// `streams_per_connection` ListAndWatch streams on each; returns once all are
    /// asked for (a plugin may hold them unanswered).
    pub async fn open(socket: &Path, connections: u32, streams_per_connection: u32) -> Flood {
        let served = Arc::new(AtomicU32::new(0));
        let mut held = Vec::new();
        let mut refused_connections = 0;
        for _ in 0..connections {
            let Ok(channel) = uds::connect(socket, CONNECT_TIMEOUT).await else {
                refused_connections += 1;
                continue;
            };
            for _ in 0..streams_per_connection {
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
        Flood {
            held,
            served,
            refused_connections,
            connections,
            streams_per_connection,
        }
    }

    /// Streams asked for.
    pub fn asked(&self) -> u64 {
        u64::from(self.connections) * u64::from(self.streams_per_connection)
    }

    /// Streams the plugin answered with a device list so far.
    pub fn served(&self) -> u32 {
        self.served.load(Ordering::Relaxed)
    }
}

impl Drop for Flood {
    /// Lets go of every stream and connection.
    fn drop(&mut self) {
        for h in &self.held {
            h.abort();
        }
    }
}

/// A process's resident memory in MiB (0 when it is gone).
pub fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}
