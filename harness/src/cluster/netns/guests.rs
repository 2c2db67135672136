//! Guests on the netns cluster: QEMU in the virt-launcher pods, on this machine.

use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use futures::future::BoxFuture;
use tokio::io::{AsyncBufReadExt, BufReader};

use super::NetnsCluster;
use crate::cluster::ability::node_error;
use crate::cluster::{ClusterError, PodView};
use crate::objects::NetworkAttachmentDefinition;
use crate::vm::binding::PodDevice;
use crate::vm::kubevirt::VirtualMachine;
use crate::vm::migrate::LanChanges;
use crate::vm::{Guests, LauncherDevices, RunningVm, VmError, VmOptions};

impl Guests for NetnsCluster {
    fn start_vm<'a>(
        &'a self,
        vm: &'a VirtualMachine,
        node: Option<&'a str>,
        nads: &'a [NetworkAttachmentDefinition],
        opts: &'a VmOptions,
    ) -> BoxFuture<'a, Result<RunningVm, VmError>> {
        Box::pin(crate::vm::start_qemu(
            self,
            &self.opts.run_id,
            vm,
            node,
            nads,
            opts,
        ))
    }

    fn boots_local_image(&self) -> bool {
        true
    }

    fn live_migration(&self) -> Option<&dyn crate::vm::migrate::LiveMigration> {
        Some(self)
    }

    fn hotplug(&self) -> Option<&dyn crate::vm::hotplug::NicHotplug> {
        Some(self)
    }
}

impl crate::vm::hotplug::PodNetworks for NetnsCluster {
    fn attach_network<'a>(
        &'a self,
        pod: &'a PodView,
        selection: &'a serde_json::Value,
    ) -> BoxFuture<'a, Result<PodView, ClusterError>> {
        Box::pin(super::pod::attach_network(
            self,
            &pod.namespace,
            &pod.name,
            selection,
        ))
    }

    fn detach_network<'a>(
        &'a self,
        pod: &'a PodView,
        ifname: &'a str,
    ) -> BoxFuture<'a, Result<PodView, ClusterError>> {
        Box::pin(super::pod::detach_network(
            self,
            &pod.namespace,
            &pod.name,
            ifname,
        ))
    }
}

impl crate::vm::hotplug::NicHotplug for NetnsCluster {
    fn plug<'a>(
        &'a self,
        vm: &'a mut RunningVm,
        iface: &'a crate::vm::kubevirt::VmInterface,
        opts: &'a VmOptions,
    ) -> BoxFuture<'a, Result<crate::vm::hotplug::PlugReport, VmError>> {
        Box::pin(crate::vm::hotplug::plug_qemu(self, vm, iface, opts))
    }

    fn unplug<'a>(
        &'a self,
        vm: &'a mut RunningVm,
        iface: &'a str,
    ) -> BoxFuture<'a, Result<crate::vm::hotplug::UnplugReport, VmError>> {
        Box::pin(crate::vm::hotplug::unplug_qemu(self, vm, iface))
    }
}

impl LauncherDevices for NetnsCluster {
    /// What secnet's kubelet recorded at the pod's admission: the DeviceSpecs of
    /// every Allocate answer for it.
    fn launcher_devices<'a>(&'a self, pod: &'a PodView) -> BoxFuture<'a, Vec<PodDevice>> {
        Box::pin(async move {
            let inner = self.inner.lock().await;
            let Some(dm) = inner
                .nodes
                .iter()
                .find(|n| n.name == pod.node)
                .and_then(|n| n.device_manager.as_ref())
            else {
                return Vec::new();
            };
            dm.pod_devices()
                .into_iter()
                .filter(|p| p.pod.uid == pod.uid)
                .flat_map(|p| p.response.container_responses)
                .flat_map(|c| c.devices)
                .map(|d| PodDevice {
                    container_path: d.container_path,
                    host_path: d.host_path,
                })
                .collect()
        })
    }
}

impl crate::vm::migrate::LiveMigration for NetnsCluster {
    fn migrate<'a>(
        &'a self,
        vm: &'a mut RunningVm,
        nads: &'a [NetworkAttachmentDefinition],
        opts: &'a VmOptions,
        plan: &'a crate::vm::migrate::MigrationPlan,
    ) -> BoxFuture<'a, Result<crate::vm::migrate::MigrationReport, VmError>> {
        Box::pin(crate::vm::migrate::migrate_qemu(
            self,
            &self.opts.run_id,
            vm,
            nads,
            opts,
            plan,
        ))
    }

    fn lan(&self) -> Option<&dyn crate::vm::migrate::LanWatch> {
        Some(self)
    }
}

impl crate::vm::migrate::LanWatch for NetnsCluster {
    /// The fabric's namespace: the LAN's gateway, on no node.
    fn lan_host<'a>(
        &'a self,
        address: Option<&'a str>,
    ) -> BoxFuture<'a, Result<std::path::PathBuf, ClusterError>> {
        Box::pin(async move {
            if let Some(cidr) = address {
                self.ip(
                    &self.fabric,
                    &["addr", "replace", cidr, "dev", super::fabric::BRIDGE],
                )
                .await
                .map_err(|e| node_error("fabric", "adding a LAN address", e))?;
            }
            Ok(self.fabric.path())
        })
    }

    /// The fabric bridge's learnt entries for `mac`; its ports are named after the
    /// node they lead to (`port<i>`: the uplink, `oport<i>`: the OVS uplink).
    fn lan_fdb<'a>(
        &'a self,
        mac: &'a str,
    ) -> BoxFuture<'a, Result<Vec<(String, String)>, ClusterError>> {
        Box::pin(async move {
            let enter = crate::lab::enter::Enter::net(self.fabric.path())
                .map_err(|e| node_error("fabric", "entering", e))?;
            let out = crate::lab::command::Cmd::new("bridge")
                .args(["-j", "fdb", "show", "br", super::fabric::BRIDGE])
                .enter(&enter)
                .timeout(std::time::Duration::from_secs(5))
                .run_async()
                .await
                .map_err(|e| node_error("fabric", "bridge fdb show", e))?;
            let entries = crate::probe::bridge::fdb(&out)
                .map_err(|e| node_error("fabric", "bridge fdb show", e))?;
            Ok(entries
                .iter()
                .filter(|e| e.mac.eq_ignore_ascii_case(mac))
                .map(|e| self.port_node(&e.ifname))
                .collect())
        })
    }

    /// `bridge monitor fdb` in the fabric's namespace: each line naming `mac` is a
    /// change (a deletion: the entries read again).
    fn lan_fdb_changes<'a>(
        &'a self,
        mac: &'a str,
        done: &'a AtomicBool,
    ) -> BoxFuture<'a, Result<LanChanges, ClusterError>> {
        Box::pin(async move {
            let fail = |e: std::io::Error| node_error("fabric", "bridge monitor fdb", e);
            let mut child = tokio::process::Command::new("nsenter")
                .arg(format!("--net={}", self.fabric.path().display()))
                .args(["bridge", "monitor", "fdb"])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .map_err(fail)?;
            let stdout = child
                .stdout
                .take()
                .ok_or_else(|| fail(std::io::Error::other("no stdout")))?;
            let mut lines = BufReader::new(stdout).lines();
            let mut seen: LanChanges = vec![(SystemTime::now(), self.lan_fdb(mac).await?)];
            while !done.load(Ordering::Relaxed) {
                let line = match tokio::time::timeout(Duration::from_millis(50), lines.next_line())
                    .await
                {
                    Err(_) => continue,
                    Ok(Ok(Some(line))) => line,
                    Ok(Ok(None)) | Ok(Err(_)) => break,
                };
                let at = SystemTime::now();
                let mut words = line.split_whitespace();
                let ports = match words.next() {
                    Some("Deleted") if line.to_lowercase().contains(&mac.to_lowercase()) => {
                        self.lan_fdb(mac).await?
                    }
                    Some(m) if m.eq_ignore_ascii_case(mac) => {
                        match words.skip_while(|w| *w != "dev").nth(1) {
                            Some(port) => vec![self.port_node(port)],
                            None => continue,
                        }
                    }
                    _ => continue,
                };
                if seen.last().is_none_or(|(_, last)| *last != ports) {
                    seen.push((at, ports));
                }
            }
            let _ = child.kill().await;
            Ok(seen)
        })
    }
}

impl NetnsCluster {
    /// A fabric port and the node it leads to (`port<i>`: the uplink, `oport<i>`:
    /// the OVS uplink, of node `i`).
    fn port_node(&self, port: &str) -> (String, String) {
        let index = port
            .trim_start_matches("oport")
            .trim_start_matches("port")
            .parse::<usize>()
            .ok();
        let node = index
            .and_then(|i| self.opts.topology.nodes.get(i))
            .map_or_else(|| "?".to_string(), |n| n.name.clone());
        (port.to_string(), node)
    }
}
