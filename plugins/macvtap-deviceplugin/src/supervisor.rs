//! Starts a [`ResourcePlugin`] per configured resource, or, with auto-discovery, per
//! physical/bond link as links come and go; stops them all on shutdown.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::watch;

use crate::allocate::TapIndex;
use crate::config::{Config, ResourceConfig};
use crate::links::{LinkWatch, LinksError, watch_links};
use crate::plugin::{PluginError, ResourcePlugin};
use crate::service::Resource;

#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error(transparent)]
    Links(#[from] LinksError),
    #[error("failed to open rtnetlink socket for Allocate: {0}")]
    Netlink(std::io::Error),
    #[error(
        "failed to use device-plugin directory {dir}: it does not exist (fix: create it or pass --device-plugin-dir)"
    )]
    NoDirectory { dir: PathBuf },
    #[error(transparent)]
    Plugin(#[from] PluginError),
}

/// Where and what to serve.
#[derive(Debug, Clone)]
pub struct Settings {
    pub config: Config,
    /// The kubelet's device-plugin directory.
    pub dir: PathBuf,
    /// Link kinds auto-discovery takes besides physical devices and bonds.
    pub discover_kinds: Vec<String>,
}

/// Serves until `shutdown` becomes true.
pub async fn run(
    settings: Settings,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), SupervisorError> {
    let Settings {
        config,
        dir,
        discover_kinds,
    } = settings;
    if !dir.is_dir() {
        return Err(SupervisorError::NoDirectory { dir });
    }
    let mut links = watch_links().await?;
    let netlink = cni_kit::netns::netlink_in(None)
        .await
        .map_err(SupervisorError::Netlink)?;
    let tap_index = TapIndex::for_current_namespace();
    if tap_index != TapIndex::Kernel {
        tracing::info!(
            "not in the machine's initial network namespace: macvtaps get high ifindexes with a free /dev/tapN"
        );
    }
    let mut running: BTreeMap<String, ResourcePlugin> = BTreeMap::new();
    let start = |config: ResourceConfig, links: &LinkWatch| {
        let resource = Arc::new(Resource::new(
            config,
            links.clone(),
            netlink.clone(),
            tap_index,
        ));
        let span = tracing::info_span!("resource", resource = %resource.resource_name());
        let _entered = span.enter();
        ResourcePlugin::start(resource, &dir)
    };

    match config {
        Config::Explicit(resources) => {
            for config in resources {
                // A stop during start-up stops what has started, and nothing more starts.
                tokio::task::yield_now().await;
                if *shutdown.borrow() {
                    break;
                }
                let name = config.name.clone();
                match start(config, &links) {
                    Ok(plugin) => {
                        running.insert(name, plugin);
                    }
                    Err(e) => {
                        stop_all(running).await;
                        return Err(e.into());
                    }
                }
            }
            let _ = shutdown.wait_for(|s| *s).await;
        }
        Config::Discover => loop {
            let wanted = links.borrow_and_update().discoverable(&discover_kinds);
            for gone in running
                .keys()
                .filter(|n| !wanted.contains(n))
                .cloned()
                .collect::<Vec<_>>()
            {
                tracing::info!(resource = %format!("{}/{gone}", crate::service::RESOURCE_PREFIX), "discovered link is gone; removing its resource");
                if let Some(plugin) = running.remove(&gone) {
                    plugin.stop().await;
                }
            }
            for name in wanted {
                if running.contains_key(&name) {
                    continue;
                }
                tracing::info!(resource = %format!("{}/{name}", crate::service::RESOURCE_PREFIX), "discovered link; adding its resource");
                match start(ResourceConfig::discovered(&name), &links) {
                    Ok(plugin) => {
                        running.insert(name, plugin);
                    }
                    // Tried again at the next link event.
                    Err(e) => tracing::error!("{e}"),
                }
            }
            tokio::select! {
                _ = shutdown.wait_for(|s| *s) => break,
                changed = links.changed() => if changed.is_err() { break },
            }
        },
    }
    stop_all(running).await;
    Ok(())
}

async fn stop_all(running: BTreeMap<String, ResourcePlugin>) {
    futures::future::join_all(running.into_values().map(ResourcePlugin::stop)).await;
}
