//! Faults the netns cluster can inject, for the `fault` scenarios: a kubelet
//! restart, a device plugin killed and started again, the uplink taken down,
//! deleted and plugged back, a pod's netns vanishing before CNI DEL.

use std::time::Duration;

use super::{NetnsCluster, NetnsError, fabric};

impl NetnsCluster {
    fn node_index(&self, node: &str) -> Result<usize, NetnsError> {
        self.opts
            .topology
            .nodes
            .iter()
            .position(|n| n.name == node)
            .ok_or_else(|| NetnsError::NoSuchNode(node.into()))
    }

    /// The kubelet's device manager restarts: kubelet.sock is removed and served anew,
    /// plugin connections drop; allocations (the checkpoint) survive.
    pub async fn restart_kubelet(&self, node: &str) -> Result<(), NetnsError> {
        let i = self.node_index(node)?;
        let mut inner = self.inner.lock().await;
        let dm = inner.nodes[i]
            .device_manager
            .as_mut()
            .ok_or_else(|| not_running("device manager", node))?;
        Ok(dm.restart().await?)
    }

    /// SIGKILL to the node's device plugin (no chance to clean up).
    pub async fn kill_device_plugin(&self, node: &str) -> Result<(), NetnsError> {
        let i = self.node_index(node)?;
        let mut inner = self.inner.lock().await;
        let child = inner.nodes[i]
            .device_plugin
            .as_mut()
            .ok_or_else(|| not_running("device plugin", node))?;
        crate::lab::command::signal_group(child, nix::sys::signal::Signal::SIGKILL);
        child.wait().map_err(|source| NetnsError::Io {
            action: "reap the device plugin of node",
            path: node.into(),
            source,
        })?;
        inner.nodes[i].device_plugin = None;
        Ok(())
    }

    /// The node's device plugin process and its socket directory on this machine.
    pub async fn device_plugin_process(
        &self,
        node: &str,
    ) -> Result<crate::cluster::ability::DevicePluginProcess, NetnsError> {
        let i = self.node_index(node)?;
        let inner = self.inner.lock().await;
        let n = &inner.nodes[i];
        let child = n
            .device_plugin
            .as_ref()
            .ok_or_else(|| not_running("device plugin", node))?;
        Ok(crate::cluster::ability::DevicePluginProcess {
            pid: child.id(),
            socket_dir: n.device_plugin_dir(),
        })
    }

    /// Starts the node's device plugin again with the environment it had, and waits
    /// until it has registered `resource` anew and streams its devices.
    pub async fn start_device_plugin_anew(
        &self,
        node: &str,
        resource: &str,
    ) -> Result<(), NetnsError> {
        let i = self.node_index(node)?;
        let since = std::time::Instant::now();
        {
            let mut inner = self.inner.lock().await;
            let env = inner.nodes[i]
                .device_plugin_env
                .clone()
                .ok_or_else(|| NetnsError::DevicePluginNeverRan(node.into()))?;
            inner.nodes[i].start_device_plugin(&self.opts.device_plugin, &env)?;
        }
        let inner = self.inner.lock().await;
        let dm = inner.nodes[i]
            .device_manager
            .as_ref()
            .ok_or_else(|| not_running("device manager", node))?;
        dm.wait_for_registration(resource, since, Duration::from_secs(5))
            .await?;
        dm.wait_until(
            &format!("devices of {resource}"),
            Duration::from_secs(5),
            |s| {
                s.resource(resource)
                    .filter(|v| v.streaming && v.capacity() > 0)
                    .map(|_| ())
            },
        )
        .await?;
        Ok(())
    }

    /// Deletes the node's uplink (its fabric peer goes with it).
    pub async fn unplug_uplink(&self, node: &str) -> Result<(), NetnsError> {
        let i = self.node_index(node)?;
        let inner = self.inner.lock().await;
        let n = &inner.nodes[i];
        inner.lab.ip(&n.ns, &["link", "del", &n.uplink])?;
        Ok(())
    }

    /// The device plugin's log file on `node` so far.
    pub async fn device_plugin_log_of(&self, node: &str) -> Result<String, NetnsError> {
        let i = self.node_index(node)?;
        Ok(self.inner.lock().await.nodes[i].device_plugin_log())
    }

    /// Plugs a new uplink in, under the same name and address.
    pub async fn plug_uplink(&self, node: &str) -> Result<(), NetnsError> {
        let i = self.node_index(node)?;
        let inner = self.inner.lock().await;
        let n = &inner.nodes[i];
        fabric::plug(
            &inner.lab,
            &self.fabric,
            &n.ns,
            &n.uplink,
            &format!("port{i}"),
        )?;
        inner.lab.ip(
            &n.ns,
            &[
                "addr",
                "add",
                &format!("{}/24", n.address),
                "dev",
                &n.uplink,
            ],
        )?;
        Ok(())
    }

    /// Deletes a pod's network namespace behind the runtime's back (a node reboot).
    pub async fn lose_pod_netns(&self, namespace: &str, name: &str) -> Result<(), NetnsError> {
        let ns = self
            .pod_netns(namespace, name)
            .await
            .ok_or_else(|| NetnsError::NoSuchPod(format!("{namespace}/{name}")))?;
        // Through the lab, which notes the macvtaps whose /dev/tapN the kernel
        // still has to release.
        self.inner.lock().await.lab.delete_netns(&ns)?;
        Ok(())
    }
}

fn not_running(what: &'static str, node: &str) -> NetnsError {
    NetnsError::NotRunning {
        what,
        node: node.into(),
    }
}
