//! VMs: KubeVirt VirtualMachine fixtures as running guests the scenarios talk to
//! ([`RunningVm`]) whatever runs them. A cluster that can run guests has the
//! [`Guests`] ability and a [`GuestHost`] per guest: on the netns cluster QEMU
//! guests inside their virt-launcher pods ([`start_qemu`]), attached the way
//! KubeVirt's bindings attach them; on a real cluster KubeVirt itself
//! (`cluster::kube`'s `vms`), the same guest booted by `kernelBoot` and reached over
//! the VMI's serial console. Nothing here knows which provider it runs on.
//!
//! - [`image`]: the guest kernel + busybox initramfs, built from Debian packages, cached
//! - [`agent`]: the serial-line protocol to exec in the guest, over any byte stream
//! - [`qemu`]: launching and killing QEMU in a pod's netns
//! - [`binding`]: macvtap (tap fd), bridge (in-pod bridge + tap), masquerade (NAT)
//! - [`kubevirt`]: VM/VMI fixtures, validation against KubeVirt's OpenAPI, launcher pods

pub mod agent;
pub mod binding;
pub mod hotplug;
pub mod image;
pub mod kubevirt;
pub mod kubevirt_api;
pub mod migrate;
pub mod qemu;
pub mod qmp;
pub mod stream;

use std::path::PathBuf;
use std::time::Duration;

use futures::future::BoxFuture;

use crate::contract::ability::LocalTopology;
use crate::contract::{Cluster, ClusterError, DynCluster, PodView};
use crate::objects::NetworkAttachmentDefinition;
use crate::probe::{ip, ping};
use agent::{Agent, AgentError, Reply};
use binding::{BindingError, Bound};
use image::GuestImage;
use kubevirt::{BindingKind, VirtualMachine};
use qemu::{LaunchSpec, Qemu, QemuError};

#[derive(Debug, thiserror::Error)]
pub enum VmError {
    #[error(
        "VM {vm}: interface {interface} uses binding {binding}, which the netns cluster does not emulate (macvtap, bridge, masquerade)"
    )]
    UnsupportedBinding {
        vm: String,
        interface: String,
        binding: String,
    },
    #[error("VM {vm}: virt-launcher pod: {source}")]
    LauncherPod {
        vm: String,
        #[source]
        source: ClusterError,
    },
    #[error("VM {vm}: the virt-launcher pod {pod} is gone")]
    LauncherGone { vm: String, pod: String },
    #[error("VM {vm}: no pod interface for {interface}")]
    NoPodInterface { vm: String, interface: String },
    #[error("VM {vm}: {binding} binding of {interface}: {source}")]
    Binding {
        vm: String,
        binding: String,
        interface: String,
        #[source]
        source: BindingError,
    },
    #[error("VM {vm}: failed to create {dir}: {source}")]
    WorkDir {
        vm: String,
        dir: String,
        #[source]
        source: std::io::Error,
    },
    #[error("VM {vm}: {source}")]
    Launch {
        vm: String,
        #[source]
        source: QemuError,
    },
    /// The guest did not come up; `console` is the tail of its kernel console,
    /// `state` what its host says (QEMU's exit, the VMI's conditions and events).
    #[error(
        "VM {vm} did not boot ({accel}): {source}; {state}\n--- console of {pod} ---\n{console}"
    )]
    Boot {
        vm: String,
        accel: &'static str,
        #[source]
        source: AgentError,
        state: String,
        pod: String,
        console: String,
    },
    #[error("VM {vm}: no guest image: {hint}")]
    NoImage { vm: String, hint: String },
    /// KubeVirt did not run or stop the VM; `state` holds the VMI's conditions, its
    /// events and the virt-launcher pod's state and logs.
    #[error("VM {vm}: failed to {what}: {state}")]
    Kubevirt {
        vm: String,
        what: String,
        state: String,
    },
    #[error("VM {vm}: live migration: {message}")]
    Migration { vm: String, message: String },
    #[error("VM {vm}: NIC hot-plug: {message}")]
    Hotplug { vm: String, message: String },
    #[error("VM {vm}: {what} is still there after stop")]
    Left { vm: String, what: String },
    #[error("VM {vm}: {source}")]
    Agent {
        vm: String,
        #[source]
        source: AgentError,
    },
    #[error("VM {vm}: `{command}` exited {code}: {output}")]
    CommandFailed {
        vm: String,
        command: String,
        code: i32,
        output: String,
    },
    #[error("VM {vm}: no guest interface with MAC {mac}; guest has {links:?}")]
    NoGuestInterface {
        vm: String,
        mac: String,
        links: Vec<(String, String)>,
    },
    #[error("VM {vm}: {source}")]
    Ping {
        vm: String,
        #[source]
        source: ping::PingError,
    },
    /// `guest` is the guest's addresses, routes, neighbours and counters.
    #[error("VM {vm} got no reply from {target} within {timeout:?}; guest: {guest}")]
    NoReply {
        vm: String,
        target: String,
        timeout: Duration,
        guest: String,
    },
}

impl VmError {
    /// Whether the message contains `text` (scenario/vm.rs looks for the console's
    /// kernel panic in a boot failure this way).
    pub fn contains(&self, text: &str) -> bool {
        self.to_string().contains(text)
    }
}

/// What every VM of a run shares.
#[derive(Debug, Clone)]
pub struct VmOptions {
    /// The guest image on this machine (QEMU guests; KubeVirt boots its container
    /// image, `cluster::kube::guest_image`).
    pub(crate) image: Option<GuestImage>,
    /// Console logs and generated files.
    pub(crate) work_dir: PathBuf,
    pub(crate) boot_timeout: Duration,
    /// Appended to the host's kernel command line (tests of boot failures break it).
    pub(crate) extra_cmdline: String,
}

impl VmOptions {
    pub fn new(image: Option<GuestImage>, work_dir: PathBuf) -> VmOptions {
        VmOptions {
            image,
            work_dir,
            boot_timeout: Duration::from_secs(60),
            extra_cmdline: String::new(),
        }
    }

    /// `base` with the extra arguments.
    pub fn cmdline(&self, base: &str) -> String {
        if self.extra_cmdline.is_empty() {
            base.to_string()
        } else {
            format!("{base} {}", self.extra_cmdline)
        }
    }
}

/// One guest NIC as the binding connected it.
#[derive(Debug, Clone)]
pub struct GuestNic {
    /// The VM's interface name (spec.domain.devices.interfaces[].name).
    pub(crate) interface: String,
    pub(crate) binding: BindingKind,
    /// The virt-launcher pod's interface behind it (eth0, net1, …).
    pub(crate) pod_ifname: String,
    pub(crate) mac: String,
    /// The pod interface's MAC after binding, where the host can see it (the netns
    /// cluster; a real cluster's launcher pod is KubeVirt's).
    pub(crate) pod_mac: Option<String>,
    pub(crate) addresses: Vec<String>,
    pub(crate) gateway: Option<String>,
}

/// The ability to run guests on a cluster's networks (Capability::Vm).
pub trait Guests: Send + Sync {
    /// Starts `vm` (on `node`, if given), its networks from `nads`. Does not wait
    /// for the guest: see [`RunningVm::wait_ready`].
    fn start_vm<'a>(
        &'a self,
        vm: &'a VirtualMachine,
        node: Option<&'a str>,
        nads: &'a [NetworkAttachmentDefinition],
        opts: &'a VmOptions,
    ) -> BoxFuture<'a, Result<RunningVm, VmError>>;
    /// Whether the guests boot the image built on this machine (QEMU here) rather
    /// than a container image the nodes pull.
    fn boots_local_image(&self) -> bool;
    /// Moving running guests between nodes, where the cluster can.
    fn live_migration(&self) -> Option<&dyn migrate::LiveMigration> {
        None
    }
    /// Plugging NICs into running guests and out again, where the cluster can.
    fn hotplug(&self) -> Option<&dyn hotplug::NicHotplug> {
        None
    }
}

/// What runs one guest: QEMU in its launcher pod, or KubeVirt's VMI.
pub trait GuestHost: Send + Sync {
    /// After a failed boot: what the host says (QEMU's exit, the VMI's conditions
    /// and events) and the console, `transcript` being what the agent's stream
    /// carried. The guest is stopped.
    fn boot_failed(&mut self, transcript: String) -> BoxFuture<'_, (String, String)>;
    /// Stops the guest and removes its launcher pod from `cluster`, then checks
    /// that nothing of it is left.
    fn stop<'a>(
        &'a mut self,
        vm: &'a str,
        pod: &'a PodView,
        cluster: &'a dyn DynCluster,
    ) -> BoxFuture<'a, Result<(), VmError>>;
    /// The guest's console so far (`transcript`: what the agent's stream carried).
    fn console(&self, transcript: String) -> String;
    /// QEMU's QMP socket, where the host is a QEMU of secnet's.
    fn qmp_socket(&self) -> Option<PathBuf> {
        None
    }
}

impl GuestHost for Qemu {
    fn boot_failed(&mut self, _transcript: String) -> BoxFuture<'_, (String, String)> {
        let exited = self.exited();
        self.kill();
        let state = format!(
            "QEMU {}",
            exited.unwrap_or_else(|| "was still running (killed)".into())
        );
        let console = self.console().trim_end().to_string();
        Box::pin(async move { (state, console) })
    }

    fn stop<'a>(
        &'a mut self,
        vm: &'a str,
        pod: &'a PodView,
        cluster: &'a dyn DynCluster,
    ) -> BoxFuture<'a, Result<(), VmError>> {
        Box::pin(async move {
            let pid = self.pid();
            self.kill();
            if let Some(pid) = pid
                && std::path::Path::new(&format!("/proc/{pid}")).exists()
            {
                return Err(VmError::Left {
                    vm: vm.to_string(),
                    what: format!("QEMU (pid {pid})"),
                });
            }
            match cluster.delete_pod(&pod.namespace, &pod.name).await {
                Ok(()) | Err(ClusterError::NoSuchPod(_)) => Ok(()),
                Err(source) => Err(VmError::LauncherPod {
                    vm: vm.to_string(),
                    source,
                }),
            }
        })
    }

    fn console(&self, _transcript: String) -> String {
        Qemu::console(self)
    }

    fn qmp_socket(&self) -> Option<PathBuf> {
        self.qmp.clone()
    }
}

/// A VM: its virt-launcher pod and the guest inside it, reached by its agent.
pub struct RunningVm {
    pub(crate) vm: VirtualMachine,
    pub(crate) pod: PodView,
    pub(crate) nics: Vec<GuestNic>,
    pub(crate) host: Box<dyn GuestHost>,
    agent: Agent,
    /// When the guest was started (QEMU spawned; the VM created).
    pub(crate) started: std::time::Instant,
    /// `tcg`/`kvm` (QEMU), `kubevirt` (whatever KubeVirt chose).
    pub(crate) accel: &'static str,
    /// Start to agent ready.
    pub(crate) boot: Option<Duration>,
    stopped: bool,
}

/// The devices the kubelet put in a launcher pod's container: every `DeviceSpec` of
/// the device plugins' Allocate answers for the pod, where the host can read them.
pub trait LauncherDevices: Send + Sync {
    fn launcher_devices<'a>(&'a self, pod: &'a PodView) -> BoxFuture<'a, Vec<binding::PodDevice>>;
}

/// The virt-launcher pod's name for `vm` in run `run_id`.
pub fn launcher_name(run_id: &str, vm: &VirtualMachine) -> String {
    let h = xxhash_rust::xxh64::xxh64(format!("{run_id}/{}", vm.name).as_bytes(), 0);
    format!("virt-launcher-{}-{:05x}", vm.name, h & 0xfffff)
}

/// Creates the virt-launcher pod (admission, multus), runs the bindings and starts
/// QEMU in the pod's netns, on a cluster of secnet's own nodes (run `run_id`).
pub async fn start_qemu<C: Cluster + LocalTopology + LauncherDevices>(
    cluster: &C,
    run_id: &str,
    vm: &VirtualMachine,
    node: Option<&str>,
    nads: &[NetworkAttachmentDefinition],
    opts: &VmOptions,
) -> Result<RunningVm, VmError> {
    let launcher = Launcher::create(
        cluster,
        vm,
        &launcher_name(run_id, vm),
        node,
        nads,
        &opts.work_dir,
    )
    .await?;
    let (qemu, agent) = match launcher.spawn(cluster, vm, opts, None).await {
        Ok(q) => q,
        Err(e) => {
            let _ = cluster
                .delete_pod(&launcher.pod.namespace, &launcher.pod.name)
                .await;
            return Err(e);
        }
    };
    let Launcher { pod, nics, .. } = launcher;
    tracing::debug!(vm = %vm.name, pod = %pod.name, accel = qemu.accel, nics = nics.len(), "QEMU started");
    Ok(RunningVm {
        vm: vm.clone(),
        pod,
        nics,
        started: qemu.started,
        accel: qemu.accel,
        host: Box::new(qemu),
        agent,
        boot: None,
        stopped: false,
    })
}

/// A virt-launcher pod with its networks bound, QEMU not started yet.
pub struct Launcher {
    pub(crate) pod: PodView,
    pub(crate) nics: Vec<GuestNic>,
    bound: Vec<Bound>,
}

impl Launcher {
    /// Creates the launcher pod `name` for `vm` (on `node`, if given) and runs the
    /// bindings in it. On failure the pod is deleted again.
    pub async fn create<C: Cluster + LauncherDevices>(
        cluster: &C,
        vm: &VirtualMachine,
        name: &str,
        node: Option<&str>,
        nads: &[NetworkAttachmentDefinition],
        work_dir: &std::path::Path,
    ) -> Result<Launcher, VmError> {
        for i in &vm.interfaces {
            if let BindingKind::Other(b) = &i.binding {
                return Err(VmError::UnsupportedBinding {
                    vm: vm.name.clone(),
                    interface: i.name.clone(),
                    binding: b.clone(),
                });
            }
        }
        let mut pod = vm.launcher_pod(name, |ns, name| {
            nads.iter()
                .find(|n| n.metadata.namespace == ns && n.metadata.name == name)
                .and_then(|n| n.resource_name().map(str::to_string))
        });
        pod.spec.node_name = node.map(str::to_string);
        let pod =
            Cluster::create_pod(cluster, pod)
                .await
                .map_err(|source| VmError::LauncherPod {
                    vm: vm.name.clone(),
                    source,
                })?;
        match bind_all(cluster, vm, &pod, work_dir).await {
            Ok((nics, bound)) => Ok(Launcher { pod, nics, bound }),
            Err(e) => {
                let _ = cluster.delete_pod(&pod.namespace, &pod.name).await;
                Err(e)
            }
        }
    }

    /// Gives every NIC the guest MAC it has in `running` (the source of a
    /// migration): the domain's MACs travel with it, as in KubeVirt's migrated
    /// domain XML. A multus NIC's MAC was requested from the CNI already; the
    /// masquerade binding's is made from the pod's uid and would change.
    pub fn keep_guest_macs(&mut self, running: &[GuestNic]) {
        for (nic, bound) in self.nics.iter_mut().zip(self.bound.iter_mut()) {
            if let Some(old) = running.iter().find(|n| n.interface == nic.interface) {
                nic.mac = old.mac.clone();
                bound.nic.mac = old.mac.clone();
            }
        }
    }

    /// Starts QEMU in the pod's netns with the bound NICs (and, for the target of a
    /// migration, `-incoming <uri>`). The NICs' backends are handed to QEMU.
    pub async fn spawn<C: Cluster + LocalTopology>(
        &self,
        cluster: &C,
        vm: &VirtualMachine,
        opts: &VmOptions,
        incoming: Option<String>,
    ) -> Result<(Qemu, Agent), VmError> {
        let netns = cluster
            .pod_namespace(&self.pod)
            .await
            .map_err(|_| VmError::LauncherGone {
                vm: vm.name.clone(),
                pod: self.pod.name.clone(),
            })?;
        std::fs::create_dir_all(&opts.work_dir).map_err(|source| VmError::WorkDir {
            vm: vm.name.clone(),
            dir: opts.work_dir.display().to_string(),
            source,
        })?;
        let image = opts.image.clone().ok_or_else(|| VmError::NoImage {
            vm: vm.name.clone(),
            hint: "the QEMU guest needs the image built on this machine (vm::image::ensure)".into(),
        })?;
        let mut nics = Vec::new();
        for b in &self.bound {
            nics.push(b.nic.try_clone().map_err(|source| VmError::Launch {
                vm: vm.name.clone(),
                source,
            })?);
        }
        let qmp = opts.work_dir.join(format!("{}.qmp", self.pod.name));
        let _ = std::fs::remove_file(&qmp);
        let spec = LaunchSpec {
            name: format!("{}/{}", vm.namespace, vm.name),
            image,
            netns: Some(netns.path()),
            nics,
            console_log: opts.work_dir.join(format!("{}.console.log", self.pod.name)),
            memory_mb: vm.memory_mb,
            cmdline: opts.cmdline(qemu::CMDLINE),
            qmp: Some(qmp),
            incoming,
        };
        Qemu::spawn(spec).map_err(|source| VmError::Launch {
            vm: vm.name.clone(),
            source,
        })
    }
}

/// Runs every interface's binding in the launcher `pod`.
async fn bind_all<C: Cluster + LauncherDevices>(
    cluster: &C,
    vm: &VirtualMachine,
    pod: &PodView,
    work_dir: &std::path::Path,
) -> Result<(Vec<GuestNic>, Vec<Bound>), VmError> {
    let devices = cluster.launcher_devices(pod).await;
    let mut nics = Vec::new();
    let mut bound: Vec<Bound> = Vec::new();
    for iface in &vm.interfaces {
        let pod_ifname = vm
            .pod_ifname(&iface.name)
            .ok_or_else(|| VmError::NoPodInterface {
                vm: vm.name.clone(),
                interface: iface.name.clone(),
            })?;
        let b = bind_one(
            cluster,
            pod,
            &iface.binding,
            &pod_ifname,
            &devices,
            work_dir,
        )
        .await
        .map_err(|source| VmError::Binding {
            vm: vm.name.clone(),
            binding: binding_name(&iface.binding).to_string(),
            interface: iface.name.clone(),
            source,
        })?;
        nics.push(GuestNic {
            interface: iface.name.clone(),
            binding: iface.binding.clone(),
            pod_ifname,
            mac: b.nic.mac.clone(),
            pod_mac: Some(b.pod_mac.clone()),
            addresses: b.addresses.clone(),
            gateway: b.gateway.clone(),
        });
        bound.push(b);
    }
    Ok((nics, bound))
}

/// One interface's binding in `pod`.
pub async fn bind_one<C: Cluster>(
    cluster: &C,
    pod: &PodView,
    kind: &BindingKind,
    pod_ifname: &str,
    devices: &[binding::PodDevice],
    work_dir: &std::path::Path,
) -> Result<Bound, BindingError> {
    match kind {
        BindingKind::Macvtap => binding::macvtap(cluster, pod, pod_ifname, devices).await,
        BindingKind::Bridge => binding::bridge(cluster, pod, pod_ifname).await,
        BindingKind::Masquerade => binding::masquerade(cluster, pod, work_dir).await,
        BindingKind::Other(b) => Err(BindingError::Unsupported(b.clone())),
    }
}

fn binding_name(b: &BindingKind) -> &str {
    match b {
        BindingKind::Macvtap => "macvtap",
        BindingKind::Bridge => "bridge",
        BindingKind::Masquerade => "masquerade",
        BindingKind::Other(o) => o,
    }
}

impl RunningVm {
    /// The NIC of interface `iface`.
    pub(crate) fn nic(&self, iface: &str) -> Option<&GuestNic> {
        self.nics.iter().find(|n| n.interface == iface)
    }

    /// The guest as the report draws it: its launcher pod and each NIC's binding.
    pub fn snap(&self) -> crate::observe::GuestSnap {
        crate::observe::GuestSnap {
            name: self.vm.name.clone(),
            pod: self.pod.name.clone(),
            node: self.pod.node.clone(),
            nics: self
                .nics
                .iter()
                .map(|n| crate::observe::GuestNicSnap {
                    name: n.interface.clone(),
                    binding: binding_name(&n.binding).to_string(),
                    pod_interface: n.pod_ifname.clone(),
                    mac: n.mac.clone(),
                    addresses: n.addresses.clone(),
                })
                .collect(),
        }
    }

    /// A guest some host started (the provider's `start`).
    pub fn new(
        vm: VirtualMachine,
        pod: PodView,
        nics: Vec<GuestNic>,
        host: Box<dyn GuestHost>,
        agent: Agent,
        started: std::time::Instant,
        accel: &'static str,
    ) -> RunningVm {
        RunningVm {
            vm,
            pod,
            nics,
            host,
            agent,
            started,
            accel,
            boot: None,
            stopped: false,
        }
    }

    /// Reaches the guest anew after its host moved it (KubeVirt: the console of
    /// the VMI on its new node), with what now hosts it.
    pub fn reattach(&mut self, agent: Agent, host: Box<dyn GuestHost>) {
        self.agent = agent;
        self.host = host;
    }

    /// Waits for the agent. On failure the guest is stopped (QEMU killed, the
    /// KubeVirt VM deleted) and the error carries its console.
    pub async fn wait_ready(&mut self, timeout: Duration) -> Result<Duration, VmError> {
        match self.agent.wait_ready(timeout).await {
            Ok(_) => {
                let t = self.started.elapsed();
                self.boot = Some(t);
                tracing::info!(vm = %self.vm.name, boot = ?t, accel = self.accel, "guest booted");
                Ok(t)
            }
            Err(source) => {
                let (state, console) = self.host.boot_failed(self.agent.transcript()).await;
                Err(VmError::Boot {
                    vm: self.vm.name.clone(),
                    accel: self.accel,
                    source,
                    state,
                    pod: self.pod.name.clone(),
                    console,
                })
            }
        }
    }

    /// Runs a shell command in the guest.
    pub async fn exec(&mut self, command: &str) -> Result<Reply, VmError> {
        self.agent
            .exec(command, Duration::from_secs(30))
            .await
            .map_err(|source| VmError::Agent {
                vm: self.vm.name.clone(),
                source,
            })
    }

    /// Runs a command that must succeed; returns its output.
    pub async fn run(&mut self, command: &str) -> Result<String, VmError> {
        let r = self.exec(command).await?;
        if !r.success() {
            return Err(VmError::CommandFailed {
                vm: self.vm.name.clone(),
                command: command.to_string(),
                code: r.code,
                output: r.output.trim().to_string(),
            });
        }
        Ok(r.output)
    }

    /// The guest's interfaces: (name, MAC), from `ip -o link`.
    pub async fn guest_links(&mut self) -> Result<Vec<(String, String)>, VmError> {
        let out = self.run("ip -o link").await?;
        Ok(ip::ether_links(&out))
    }

    /// The guest interface with `mac`.
    pub async fn guest_ifname(&mut self, mac: &str) -> Result<String, VmError> {
        let links = self.guest_links().await?;
        match links.iter().find(|(_, m)| m.eq_ignore_ascii_case(mac)) {
            Some((name, _)) => Ok(name.clone()),
            None => Err(VmError::NoGuestInterface {
                vm: self.vm.name.clone(),
                mac: mac.to_string(),
                links,
            }),
        }
    }

    /// Brings the guest NICs up with the addresses their bindings gave them (what
    /// KubeVirt's DHCP server would hand out), plus `extra` addresses per NIC index.
    pub async fn configure(&mut self, extra: &[(usize, &str)]) -> Result<(), VmError> {
        for (i, nic) in self.nics.clone().iter().enumerate() {
            let dev = self.guest_ifname(&nic.mac).await?;
            self.run(&format!("ip link set dev {dev} up")).await?;
            let mut addrs = nic.addresses.clone();
            addrs.extend(
                extra
                    .iter()
                    .filter(|(n, _)| *n == i)
                    .map(|(_, a)| a.to_string()),
            );
            for a in addrs {
                self.run(&format!("ip addr add {a} dev {dev}")).await?;
            }
            if let Some(gw) = &nic.gateway {
                self.run(&format!("ip route add default via {gw} dev {dev}"))
                    .await?;
            }
        }
        Ok(())
    }

    /// One ping from the guest (2 s wait): whether `target` replied.
    pub async fn ping(&mut self, target: &str) -> Result<bool, VmError> {
        let r = self.exec(&ping::command(target, 2)).await?;
        ping::replied(r.success(), target, &r.output).map_err(|source| VmError::Ping {
            vm: self.vm.name.clone(),
            source,
        })
    }

    /// Pings until the first reply or `timeout`; returns the time since QEMU started.
    pub async fn first_ping(&mut self, ip: &str, timeout: Duration) -> Result<Duration, VmError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.ping(ip).await? {
                return Ok(self.started.elapsed());
            }
            if tokio::time::Instant::now() > deadline {
                return Err(VmError::NoReply {
                    vm: self.vm.name.clone(),
                    target: ip.to_string(),
                    timeout,
                    guest: self.guest_state().await,
                });
            }
        }
    }

    /// The guest's addresses, routes, neighbours and NIC counters, for failure reports.
    pub async fn guest_state(&mut self) -> String {
        let cmd = "ip -o addr; ip route; ip neigh; for d in /sys/class/net/*; do echo ${d##*/} rx $(cat $d/statistics/rx_packets) tx $(cat $d/statistics/tx_packets); done";
        match self.exec(cmd).await {
            Ok(r) => r.output.replace('\n', " | "),
            Err(e) => e.to_string(),
        }
    }

    /// Stops the guest and removes its virt-launcher pod, then checks that nothing
    /// is left: QEMU's process gone (netns), the VMI and its pod gone (KubeVirt).
    /// Idempotent.
    pub async fn stop(&mut self, cluster: &dyn DynCluster) -> Result<(), VmError> {
        if self.stopped {
            return Ok(());
        }
        self.host.stop(&self.vm.name, &self.pod, cluster).await?;
        self.stopped = true;
        Ok(())
    }

    /// The guest's console so far: QEMU's console log, or what the console stream
    /// carried.
    pub fn console(&self) -> String {
        self.host.console(self.agent.transcript())
    }
}

#[cfg(test)]
mod boot_tests {
    use std::time::{Duration, Instant};

    use super::*;

    /// Boots the guest without NICs and runs a command through the agent. Needs QEMU
    /// and a kernel package, not root.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn guest_boots_and_the_agent_answers() {
        let what = "vm::guest_boots_and_the_agent_answers";
        if !crate::prereq::require_program(what, qemu::QEMU, "qemu-system-x86")
            || !crate::prereq::require(what, image::Inputs::discover().err().map(|e| e.to_string()))
        {
            return;
        }
        // Removed also when an assertion below fails.
        let scratch = crate::lab::ScratchDir::new("secnet-image-test").unwrap();
        let cache = scratch.path();
        let t = Instant::now();
        let img = image::ensure(cache).unwrap();
        let cold = t.elapsed();
        let t = Instant::now();
        let again = image::ensure(cache).unwrap();
        let cached = t.elapsed();
        assert!(img.built && !again.built);
        eprintln!("image: cold {cold:?}, cached {cached:?}, {:?}", img.format);
        let log = cache.join("console.log");
        let (mut q, mut agent) = qemu::Qemu::spawn(qemu::LaunchSpec {
            name: "boot-test".into(),
            image: img.clone(),
            netns: None,
            nics: vec![],
            console_log: log.clone(),
            memory_mb: 128,
            cmdline: qemu::CMDLINE.into(),
            qmp: None,
            incoming: None,
        })
        .unwrap();
        let ready = agent.wait_ready(Duration::from_secs(60)).await;
        let boot = q.started.elapsed();
        let ready =
            ready.unwrap_or_else(|e| panic!("{e} {:?}\nconsole:\n{}", q.exited(), q.console()));
        assert_eq!(ready, img.kernel_version);
        let r = agent
            .exec("echo hi; false", Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!((r.output.as_str(), r.code), ("hi\n", 1));
        let r = agent
            .exec("cat /proc/modules | cut -d' ' -f1", Duration::from_secs(10))
            .await
            .unwrap();
        assert!(
            r.output.contains("virtio_net"),
            "{}\nconsole:\n{}",
            r.output,
            q.console()
        );
        eprintln!("boot to agent ready: {boot:?} ({})", q.accel);
        q.kill();
    }
}
