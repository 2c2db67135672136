//! NIC hot-plug and hot-unplug on a running QEMU guest, as KubeVirt's dynamic
//! networks do it: the new network is attached to the running virt-launcher pod
//! (multus' dynamic networks controller: one more CNI ADD into the sandbox, for a
//! macvtap after its own device-plugin allocation), the binding prepares it in the
//! pod, and QEMU gets it over QMP (`getfd` for a macvtap's `/dev/tapN`,
//! `netdev_add`, `device_add`). Unplug is the reverse: `device_del` (the guest
//! ejects the device: QEMU's `DEVICE_DELETED`), `netdev_del`, the binding's links
//! removed, CNI DEL, the allocation freed.

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use serde_json::{Value, json};

use super::binding::{self, Bound};
use super::kubevirt::{BindingKind, NetworkSource, VmInterface};
use super::qemu::Backend;
use super::qmp::Qmp;
use super::{GuestNic, LauncherDevices, RunningVm, VmError, VmOptions, bind_one, binding_name};
use crate::contract::{Cluster, ClusterError, PodView};

/// What the provider does to a running pod's networks (multus' dynamic networks).
pub trait PodNetworks: Send + Sync {
    /// Attaches the network of `selection` (one networks-annotation entry naming
    /// its `interface`) to the running `pod`; the pod as it is then.
    fn attach_network<'a>(
        &'a self,
        pod: &'a PodView,
        selection: &'a Value,
    ) -> BoxFuture<'a, Result<PodView, ClusterError>>;
    /// Detaches the network on `ifname` from the running `pod`; the pod as it is then.
    fn detach_network<'a>(
        &'a self,
        pod: &'a PodView,
        ifname: &'a str,
    ) -> BoxFuture<'a, Result<PodView, ClusterError>>;
}

/// Plugging NICs into running guests and out again (Capability::NicHotplug).
pub trait NicHotplug: Send + Sync {
    /// Plugs `iface` (a multus network, its MAC requested) into the running `vm`
    /// and waits until the guest sees it.
    fn plug<'a>(
        &'a self,
        vm: &'a mut RunningVm,
        iface: &'a VmInterface,
        opts: &'a VmOptions,
    ) -> BoxFuture<'a, Result<PlugReport, VmError>>;
    /// Unplugs the hot-plugged interface `iface` and waits until the guest let go
    /// of it and the pod's attachment is gone.
    fn unplug<'a>(
        &'a self,
        vm: &'a mut RunningVm,
        iface: &'a str,
    ) -> BoxFuture<'a, Result<UnplugReport, VmError>>;
}

/// What a plug did, and how long each step took.
#[derive(Debug, Clone)]
pub struct PlugReport {
    /// The launcher pod's interface for the new NIC (`net2`, …).
    pub(crate) pod_ifname: String,
    pub(crate) mac: String,
    /// CNI ADD into the running pod (with its allocation).
    pub(crate) attach: Duration,
    /// The binding's work in the pod.
    pub(crate) bind: Duration,
    /// `device_add` sent to the guest showing a link with the MAC.
    pub(crate) guest_sees: Duration,
    /// Plug asked to the guest seeing the NIC.
    pub(crate) total: Duration,
}

/// What an unplug did, and how long each step took.
#[derive(Debug, Clone)]
pub struct UnplugReport {
    pub(crate) pod_ifname: String,
    /// `device_del` sent to QEMU's `DEVICE_DELETED` (the guest ejected it).
    pub(crate) device_deleted: Duration,
    /// CNI DEL and the allocation freed.
    pub(crate) detach: Duration,
    pub(crate) total: Duration,
}

const GUEST_WAIT: Duration = Duration::from_secs(30);

fn hp_err(vm: &str, message: impl Into<String>) -> VmError {
    VmError::Hotplug {
        vm: vm.to_string(),
        message: message.into(),
    }
}

/// QEMU's names for the hot-plugged NIC of interface `iface`.
fn ids(iface: &str) -> (String, String, String) {
    (
        format!("hpnet-{iface}"),
        format!("hpdev-{iface}"),
        format!("hpfd-{iface}"),
    )
}

/// A QMP session with the guest's QEMU.
async fn qmp(vm: &str, path: Option<&std::path::Path>) -> Result<Qmp, VmError> {
    let path = path.ok_or_else(|| hp_err(vm, "the guest has no QMP socket"))?;
    Qmp::connect(path)
        .await
        .map_err(|e| hp_err(vm, e.to_string()))
}

/// Plugs `iface` into `vm` on a cluster of secnet's own nodes.
pub async fn plug_qemu<C: Cluster + LauncherDevices + PodNetworks>(
    cluster: &C,
    vm: &mut RunningVm,
    iface: &VmInterface,
    opts: &VmOptions,
) -> Result<PlugReport, VmError> {
    let name = vm.vm.name.clone();
    let t0 = Instant::now();
    let NetworkSource::Multus {
        namespace,
        name: network,
    } = &iface.network
    else {
        return Err(hp_err(&name, "only multus networks are hot-plugged"));
    };
    if vm.vm.interfaces.iter().any(|i| i.name == iface.name) {
        return Err(hp_err(
            &name,
            format!("the VM already has an interface {}", iface.name),
        ));
    }
    let mut grown = vm.vm.clone();
    grown.interfaces.push(iface.clone());
    let pod_ifname = grown
        .pod_ifname(&iface.name)
        .ok_or_else(|| hp_err(&name, format!("no pod interface for {}", iface.name)))?;
    let mut selection = json!({"name": network, "namespace": namespace, "interface": pod_ifname});
    if let Some(mac) = &iface.mac {
        selection["mac"] = Value::from(mac.clone());
    }
    vm.pod = cluster
        .attach_network(&vm.pod, &selection)
        .await
        .map_err(|source| VmError::LauncherPod {
            vm: name.clone(),
            source,
        })?;
    let attach = t0.elapsed();
    let t1 = Instant::now();
    let devices = cluster.launcher_devices(&vm.pod).await;
    let bound = match bind_one(
        cluster,
        &vm.pod,
        &iface.binding,
        &pod_ifname,
        &devices,
        &opts.work_dir,
    )
    .await
    {
        Ok(b) => b,
        Err(source) => {
            let _ = cluster.detach_network(&vm.pod, &pod_ifname).await;
            return Err(VmError::Binding {
                vm: name,
                binding: binding_name(&iface.binding).to_string(),
                interface: iface.name.clone(),
                source,
            });
        }
    };
    let bind = t1.elapsed();
    let t2 = Instant::now();
    let path = vm.host.qmp_socket();
    if let Err(e) = add_device(&name, path.as_deref(), &iface.name, &bound).await {
        unbind(cluster, &vm.pod, &iface.binding, &pod_ifname).await;
        if let Ok(pod) = cluster.detach_network(&vm.pod, &pod_ifname).await {
            vm.pod = pod;
        }
        return Err(e);
    }
    let mac = bound.nic.mac.clone();
    let deadline = Instant::now() + GUEST_WAIT;
    loop {
        let links = vm.guest_links().await?;
        if links.iter().any(|(_, m)| m.eq_ignore_ascii_case(&mac)) {
            break;
        }
        if Instant::now() > deadline {
            return Err(VmError::NoGuestInterface {
                vm: name,
                mac,
                links,
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let guest_sees = t2.elapsed();
    vm.vm.interfaces.push(iface.clone());
    vm.nics.push(GuestNic {
        interface: iface.name.clone(),
        binding: iface.binding.clone(),
        pod_ifname: pod_ifname.clone(),
        mac: mac.clone(),
        pod_mac: Some(bound.pod_mac.clone()),
        addresses: bound.addresses.clone(),
        gateway: bound.gateway.clone(),
    });
    let report = PlugReport {
        pod_ifname,
        mac,
        attach,
        bind,
        guest_sees,
        total: t0.elapsed(),
    };
    tracing::info!(vm = %name, ?report, "NIC hot-plugged");
    Ok(report)
}

/// `netdev_add` + `device_add` of the bound NIC (a macvtap's fd first with `getfd`).
async fn add_device(
    name: &str,
    path: Option<&std::path::Path>,
    iface: &str,
    bound: &Bound,
) -> Result<(), VmError> {
    let err = |e: super::qmp::QmpError| hp_err(name, e.to_string());
    let (netdev, device, fdname) = ids(iface);
    let mut q = qmp(name, path).await?;
    let netdev_args = match &bound.nic.backend {
        Backend::TapFd(fd) => {
            q.execute_with_fd("getfd", json!({"fdname": fdname}), fd.as_fd())
                .await
                .map_err(err)?;
            json!({"type": "tap", "id": netdev, "fd": fdname})
        }
        Backend::TapName(tap) => {
            json!({"type": "tap", "id": netdev, "ifname": tap, "script": "no", "downscript": "no"})
        }
    };
    q.execute("netdev_add", netdev_args).await.map_err(err)?;
    if let Err(e) = q
        .execute(
            "device_add",
            json!({"driver": "virtio-net-pci", "id": device, "netdev": netdev, "mac": bound.nic.mac}),
        )
        .await
    {
        let _ = q.execute("netdev_del", json!({"id": netdev})).await;
        return Err(err(e));
    }
    Ok(())
}

/// Removes what the binding made in the pod for `pod_ifname` (the bridge binding's
/// in-pod bridge and tap; a macvtap's fd is QEMU's, closed by `netdev_del`).
async fn unbind<C: Cluster>(cluster: &C, pod: &PodView, kind: &BindingKind, pod_ifname: &str) {
    if *kind == BindingKind::Bridge {
        for link in [format!("tap-{pod_ifname}"), format!("k6t-{pod_ifname}")] {
            let _ =
                crate::contract::probe::pod_run(cluster, pod, &["ip", "link", "del", &link]).await;
        }
    }
}

/// Unplugs the hot-plugged `iface` from `vm`.
pub async fn unplug_qemu<C: Cluster + PodNetworks>(
    cluster: &C,
    vm: &mut RunningVm,
    iface: &str,
) -> Result<UnplugReport, VmError> {
    let name = vm.vm.name.clone();
    let t0 = Instant::now();
    let nic = vm
        .nic(iface)
        .cloned()
        .ok_or_else(|| hp_err(&name, format!("the VM has no interface {iface}")))?;
    let (netdev, device, _) = ids(iface);
    let err = |e: super::qmp::QmpError| hp_err(&name, e.to_string());
    let path = vm.host.qmp_socket();
    let mut q = qmp(&name, path.as_deref()).await?;
    q.execute("device_del", json!({"id": device}))
        .await
        .map_err(err)?;
    q.wait_event_where(
        "DEVICE_DELETED",
        |d| d["device"].as_str() == Some(device.as_str()),
        GUEST_WAIT,
    )
    .await
    .map_err(|e| {
        hp_err(
            &name,
            format!("the guest did not let go of {device} (no DEVICE_DELETED): {e}"),
        )
    })?;
    let device_deleted = t0.elapsed();
    q.execute("netdev_del", json!({"id": netdev}))
        .await
        .map_err(err)?;
    drop(q);
    let t1 = Instant::now();
    unbind(cluster, &vm.pod, &nic.binding, &nic.pod_ifname).await;
    vm.pod = cluster
        .detach_network(&vm.pod, &nic.pod_ifname)
        .await
        .map_err(|source| VmError::LauncherPod {
            vm: name.clone(),
            source,
        })?;
    let detach = t1.elapsed();
    vm.nics.retain(|n| n.interface != iface);
    vm.vm.interfaces.retain(|i| i.name != iface);
    let report = UnplugReport {
        pod_ifname: nic.pod_ifname,
        device_deleted,
        detach,
        total: t0.elapsed(),
    };
    tracing::info!(vm = %name, ?report, "NIC hot-unplugged");
    Ok(report)
}

/// A locally administered MAC for a hot-plugged NIC of `seed`.
pub fn requested_mac(seed: &str) -> String {
    binding::generated_mac(&format!("{seed}/hotplug"))
}
