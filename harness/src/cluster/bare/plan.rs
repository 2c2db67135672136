//! The bring-up plan of a bare cluster: every address, path, flag and config file,
//! computed from the topology and the run id before anything starts. Pure data, so a
//! snapshot test shows what a run will do without Kubernetes binaries.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::cluster::netns::topology::Topology;

/// The `kubernetes` Service range and its first address.
pub const SERVICE_CIDR: &str = "10.96.0.0/16";
pub const KUBERNETES_SERVICE_IP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 1);
pub const APISERVER_PORT: u16 = 6443;
/// The bridge of the default pod network on each node.
pub const POD_BRIDGE: &str = "cni0";
/// Debian's reference CNI plugins (containernetworking-plugins).
pub const REFERENCE_CNI_DIR: &str = "/usr/lib/cni";

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(
        "topology {topology}: no free address on fabric {subnet} for the control plane (it takes the highest one not used by a node, the gateway or the DHCP range)"
    )]
    NoControlPlaneAddress { topology: String, subnet: String },
}

/// What the plan is made from.
#[derive(Debug, Clone)]
pub struct PlanInput<'a> {
    pub(crate) run_id: &'a str,
    pub(crate) topology: &'a Topology,
    /// Holds kube-apiserver, kube-controller-manager, kube-scheduler, kubelet.
    pub(crate) k8s_bin_dir: &'a Path,
    /// The run's directory (`/run/secnet/<run id>`): everything lands under `bare/`.
    pub(crate) run_dir: &'a Path,
    /// The image containerd runs as every pod's sandbox (imported beforehand).
    pub(crate) pause_image: &'a str,
    /// Programs from the distribution.
    pub(crate) etcd: &'a Path,
    pub(crate) containerd: &'a Path,
    /// Debian's reference CNI plugins, linked into each node's `/opt/cni/bin`.
    pub(crate) reference_cni_dir: &'a Path,
}

/// One supervised process: program, arguments, log file.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Process {
    pub(crate) name: String,
    pub(crate) program: PathBuf,
    pub(crate) args: Vec<String>,
    pub(crate) log: PathBuf,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ControlPlanePlan {
    pub(crate) netns: String,
    pub(crate) dir: PathBuf,
    /// On the fabric: the address kubelets (and multus) use.
    pub(crate) fabric_ip: Ipv4Addr,
    /// The fabric bridge's port for the control plane, and its end inside.
    pub(crate) fabric_port: String,
    pub(crate) fabric_if: String,
    /// A veth between the host and the control plane, for the harness (a /30 of
    /// 169.254/16 picked from the run id): host end, its address, the inner address.
    pub(crate) host_link: String,
    pub(crate) host_ip: Ipv4Addr,
    pub(crate) inner_ip: Ipv4Addr,
    pub(crate) inner_if: String,
    pub(crate) etcd: Process,
    pub(crate) apiserver: Process,
    pub(crate) controller_manager: Process,
    pub(crate) scheduler: Process,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct NodePlan {
    pub(crate) name: String,
    pub(crate) netns: String,
    pub(crate) uplink: String,
    pub(crate) address: Ipv4Addr,
    pub(crate) fabric_port: String,
    /// The node's own link to the control plane (`mgmt_if` in the node, `mgmt_peer`
    /// in the control plane's namespace, a /30 of 169.254.255.0/24): the kubelet's
    /// and multus's way to the API server, so that the uplink (the macvtap lower
    /// device) can go down or away as a fault without cutting the node off.
    pub(crate) mgmt_if: String,
    pub(crate) mgmt_peer: String,
    pub(crate) mgmt_ip: Ipv4Addr,
    pub(crate) mgmt_cp_ip: Ipv4Addr,
    pub(crate) pod_subnet: String,
    pub(crate) dir: PathBuf,
    /// The kubelet's `cgroupRoot` and the cgroup of the node's daemons (containerd,
    /// its shims, kubelet), both under the run's cgroup.
    pub(crate) cgroup_root: String,
    pub(crate) daemons_cgroup: String,
    /// Other nodes' pod subnets, via their address.
    pub(crate) routes: Vec<(String, Ipv4Addr)>,
    /// Paths the node sees privately (its mount view): node path → backing dir.
    pub(crate) private_dirs: Vec<(String, PathBuf)>,
    pub(crate) containerd_socket: PathBuf,
    pub(crate) containerd: Process,
    pub(crate) containerd_config: String,
    pub(crate) kubelet: Process,
    pub(crate) kubelet_config: Value,
    pub(crate) kubeconfig: PathBuf,
    pub(crate) cni_conflist: Value,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Plan {
    pub(crate) run_id: String,
    pub(crate) dir: PathBuf,
    pub(crate) pki_dir: PathBuf,
    pub(crate) admin_kubeconfig: PathBuf,
    pub(crate) fabric_netns: String,
    /// The run's cgroup (same path in every v1 hierarchy).
    pub(crate) cgroup: String,
    /// Debian's reference CNI plugins, linked into each node's `/opt/cni/bin`.
    pub(crate) reference_cni_dir: PathBuf,
    pub(crate) control_plane: ControlPlanePlan,
    pub(crate) nodes: Vec<NodePlan>,
}

/// Node paths private to each node, and the backing directory names.
pub const NODE_PRIVATE: [(&str, &str); 10] = [
    ("/var/lib/kubelet", "kubelet"),
    ("/var/lib/cni", "cni-state"),
    ("/var/log/pods", "log-pods"),
    ("/var/log/containers", "log-containers"),
    ("/etc/cni/net.d", "cni-conf"),
    ("/opt/cni/bin", "cni-bin"),
    // containerd keeps its shims' sockets in /run/containerd/s whatever its state dir.
    ("/run/containerd", "run-containerd"),
    // The pods' network namespaces (containerd mounts them under /var/run/netns).
    ("/run/netns", "netns"),
    // Open vSwitch's run directory (db.sock), when the run starts OVS on the nodes.
    ("/run/openvswitch", "openvswitch"),
    // The node administrator's policy for the bundled plugins (plugins.conf).
    ("/etc/secnet", "etc-secnet"),
];

fn process(name: &str, program: PathBuf, args: Vec<String>, dir: &Path) -> Process {
    Process {
        name: name.to_string(),
        program,
        args,
        log: dir.join(format!("{name}.log")),
    }
}

fn flag(name: &str, value: impl std::fmt::Display) -> String {
    format!("--{name}={value}")
}

/// The /30 of 169.254/16 for the host ↔ control-plane link: (host, inner).
pub fn host_link_addresses(run_id: &str) -> (Ipv4Addr, Ipv4Addr) {
    let h = xxhash_rust::xxh64::xxh64(run_id.as_bytes(), 0);
    let mut third = 1 + (h % 253) as u8;
    if third == 169 {
        // 169.254.169.254 is the cloud metadata address.
        third = 170;
    }
    let base = ((h >> 16) % 64) as u8 * 4;
    (
        Ipv4Addr::new(169, 254, third, base + 1),
        Ipv4Addr::new(169, 254, third, base + 2),
    )
}

fn control_plane_address(topo: &Topology) -> Option<Ipv4Addr> {
    let [a, b, c, _] = topo
        .fabric
        .subnet
        .split_once('/')?
        .0
        .parse::<Ipv4Addr>()
        .ok()?
        .octets();
    let in_dhcp = |x: Ipv4Addr| match topo.fabric.dhcp_range {
        Some([lo, hi]) => lo <= x && x <= hi,
        None => false,
    };
    (1..=254u8)
        .rev()
        .map(|d| Ipv4Addr::new(a, b, c, d))
        .find(|x| {
            *x != topo.fabric.gateway && !in_dhcp(*x) && topo.nodes.iter().all(|n| n.address != *x)
        })
}

impl Plan {
    pub fn new(input: &PlanInput) -> Result<Plan, PlanError> {
        let run = input.run_id;
        let topo = input.topology;
        let dir = input.run_dir.join("bare");
        let pki = dir.join("pki");
        let bin = |name: &str| input.k8s_bin_dir.join(name);
        let cgroup = format!("/secnet-{run}");
        let fabric_ip =
            control_plane_address(topo).ok_or_else(|| PlanError::NoControlPlaneAddress {
                topology: topo.name.clone(),
                subnet: topo.fabric.subnet.clone(),
            })?;
        let (host_ip, inner_ip) = host_link_addresses(run);
        let cp_dir = dir.join("control-plane");
        let etcd = process(
            "etcd",
            input.etcd.to_path_buf(),
            vec![
                flag("name", format!("{run}-etcd")),
                flag("data-dir", cp_dir.join("etcd").display()),
                flag("listen-client-urls", "http://127.0.0.1:2379"),
                flag("advertise-client-urls", "http://127.0.0.1:2379"),
                flag("listen-peer-urls", "http://127.0.0.1:2380"),
                flag("initial-advertise-peer-urls", "http://127.0.0.1:2380"),
                flag(
                    "initial-cluster",
                    format!("{run}-etcd=http://127.0.0.1:2380"),
                ),
                flag("log-level", "warn"),
            ],
            &cp_dir,
        );
        let p = |name: &str| pki.join(name).display().to_string();
        let apiserver = process(
            "kube-apiserver",
            bin("kube-apiserver"),
            vec![
                flag("etcd-servers", "http://127.0.0.1:2379"),
                flag("bind-address", "0.0.0.0"),
                flag("secure-port", APISERVER_PORT),
                flag("advertise-address", fabric_ip),
                flag("tls-cert-file", p("apiserver.crt")),
                flag("tls-private-key-file", p("apiserver.key")),
                flag("client-ca-file", p("ca.crt")),
                flag("service-cluster-ip-range", SERVICE_CIDR),
                flag(
                    "service-account-issuer",
                    "https://kubernetes.default.svc.cluster.local",
                ),
                flag("service-account-key-file", p("sa.pub")),
                flag("service-account-signing-key-file", p("sa.key")),
                flag("authorization-mode", "Node,RBAC"),
                flag("enable-admission-plugins", "NodeRestriction"),
                flag("allow-privileged", "true"),
                flag(
                    "kubelet-client-certificate",
                    p("apiserver-kubelet-client.crt"),
                ),
                flag("kubelet-client-key", p("apiserver-kubelet-client.key")),
                flag("kubelet-certificate-authority", p("ca.crt")),
                // The kubelets' serving certificates name their InternalIP.
                flag("kubelet-preferred-address-types", "InternalIP"),
                flag("profiling", "false"),
                flag("v", 1),
            ],
            &cp_dir,
        );
        let controller_manager = process(
            "kube-controller-manager",
            bin("kube-controller-manager"),
            vec![
                flag(
                    "kubeconfig",
                    cp_dir.join("controller-manager.kubeconfig").display(),
                ),
                flag("bind-address", "127.0.0.1"),
                flag("leader-elect", "false"),
                flag("use-service-account-credentials", "true"),
                flag("service-account-private-key-file", p("sa.key")),
                flag("root-ca-file", p("ca.crt")),
                flag("cluster-signing-cert-file", p("ca.crt")),
                flag("cluster-signing-key-file", p("ca.key")),
                flag("service-cluster-ip-range", SERVICE_CIDR),
                // Each controller's client is made with a token of its own account
                // at start: the default 20 requests/s spaces those out by seconds.
                flag("kube-api-qps", 200),
                flag("kube-api-burst", 400),
                flag("v", 1),
            ],
            &cp_dir,
        );
        let scheduler = process(
            "kube-scheduler",
            bin("kube-scheduler"),
            vec![
                flag("kubeconfig", cp_dir.join("scheduler.kubeconfig").display()),
                flag("bind-address", "127.0.0.1"),
                flag("leader-elect", "false"),
                flag("v", 1),
            ],
            &cp_dir,
        );
        let control_plane = ControlPlanePlan {
            netns: format!("{run}-cp"),
            dir: cp_dir,
            fabric_ip,
            fabric_port: "portcp".into(),
            fabric_if: "eth0".into(),
            host_link: format!("{run}cp"),
            host_ip,
            inner_ip,
            inner_if: "host0".into(),
            etcd,
            apiserver,
            controller_manager,
            scheduler,
        };
        let nodes = topo
            .nodes
            .iter()
            .enumerate()
            .map(|(i, spec)| {
                let node_dir = dir.join("nodes").join(&spec.name);
                let routes = topo
                    .nodes
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| *j != i)
                    .map(|(j, other)| (topo.pod_subnet(j), other.address))
                    .collect();
                let private_dirs = NODE_PRIVATE
                    .iter()
                    .map(|(node_path, backing)| (node_path.to_string(), node_dir.join(backing)))
                    .collect();
                let socket = node_dir.join("containerd.sock");
                let containerd_config = containerd_config(&node_dir, &socket, input.pause_image);
                let containerd = process(
                    "containerd",
                    input.containerd.to_path_buf(),
                    vec![flag("config", node_dir.join("containerd.toml").display())],
                    &node_dir,
                );
                let cgroup_root = format!("{cgroup}/{}", spec.name);
                let kubeconfig = node_dir.join("kubelet.kubeconfig");
                let kubelet_config = kubelet_config(&KubeletInput {
                    node: &spec.name,
                    address: spec.address,
                    cgroup_root: &cgroup_root,
                    pki: &pki,
                    node_dir: &node_dir,
                    socket: &socket,
                });
                let kubelet = process(
                    "kubelet",
                    bin("kubelet"),
                    vec![
                        flag("config", node_dir.join("kubelet.json").display()),
                        flag("kubeconfig", kubeconfig.display()),
                        flag("hostname-override", &spec.name),
                        flag("node-ip", spec.address),
                        flag("v", 1),
                    ],
                    &node_dir,
                );
                NodePlan {
                    name: spec.name.clone(),
                    netns: format!("{run}-{}", spec.name),
                    uplink: spec.uplink.clone(),
                    address: spec.address,
                    fabric_port: format!("port{i}"),
                    mgmt_if: "k8s0".into(),
                    mgmt_peer: format!("mg{i}"),
                    mgmt_cp_ip: Ipv4Addr::new(169, 254, 255, (4 * i + 1) as u8),
                    mgmt_ip: Ipv4Addr::new(169, 254, 255, (4 * i + 2) as u8),
                    pod_subnet: topo.pod_subnet(i),
                    dir: node_dir,
                    daemons_cgroup: format!("{cgroup}/{}-daemons", spec.name),
                    cgroup_root,
                    routes,
                    private_dirs,
                    containerd_socket: socket,
                    containerd,
                    containerd_config,
                    kubelet,
                    kubelet_config,
                    kubeconfig,
                    cni_conflist: pod_network(&topo.pod_subnet(i)),
                }
            })
            .collect();
        Ok(Plan {
            run_id: run.to_string(),
            pki_dir: pki,
            admin_kubeconfig: dir.join("admin.kubeconfig"),
            dir,
            fabric_netns: format!("{run}-fabric"),
            cgroup,
            reference_cni_dir: input.reference_cni_dir.to_path_buf(),
            control_plane,
            nodes,
        })
    }

    /// The API server's URL for clients on the fabric (kubelets, multus).
    pub fn fabric_server(&self) -> String {
        format!("https://{}:{APISERVER_PORT}", self.control_plane.fabric_ip)
    }

    /// The API server's URL for the harness on the host.
    pub fn host_server(&self) -> String {
        format!("https://{}:{APISERVER_PORT}", self.control_plane.inner_ip)
    }

    /// The addresses the API server's certificate must name.
    pub fn apiserver_ips(&self) -> Vec<Ipv4Addr> {
        vec![
            self.control_plane.fabric_ip,
            self.control_plane.inner_ip,
            Ipv4Addr::LOCALHOST,
            KUBERNETES_SERVICE_IP,
        ]
    }
}

struct KubeletInput<'a> {
    node: &'a str,
    address: Ipv4Addr,
    cgroup_root: &'a str,
    pki: &'a Path,
    node_dir: &'a Path,
    socket: &'a Path,
}

/// The kubelet's configuration file. What this machine forces: cgroup v1
/// (`failCgroupV1: false`, cgroupfs driver); no swap accounting, no iptables chains.
fn kubelet_config(k: &KubeletInput) -> Value {
    let pki = |name: &str| k.pki.join(name).display().to_string();
    json!({
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "failCgroupV1": false,
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": k.cgroup_root,
        "cgroupsPerQOS": true,
        "enforceNodeAllocatable": ["pods"],
        "failSwapOn": false,
        "containerRuntimeEndpoint": format!("unix://{}", k.socket.display()),
        "address": k.address.to_string(),
        "port": 10250,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": 10248,
        "tlsCertFile": pki(&format!("kubelet-{}-serving.crt", k.node)),
        "tlsPrivateKeyFile": pki(&format!("kubelet-{}-serving.key", k.node)),
        "rotateCertificates": false,
        "serverTLSBootstrap": false,
        "authentication": {
            "anonymous": {"enabled": false},
            "webhook": {"enabled": true},
            "x509": {"clientCAFile": pki("ca.crt")}
        },
        "authorization": {"mode": "Webhook"},
        "makeIPTablesUtilChains": false,
        "protectKernelDefaults": false,
        "resolvConf": "/etc/resolv.conf",
        "volumePluginDir": k.node_dir.join("volume-plugins").display().to_string(),
        // A shared build machine's disk and memory are not this node's to defend.
        "evictionHard": {
            "memory.available": "1Mi",
            "nodefs.available": "1%",
            "imagefs.available": "1%",
            "nodefs.inodesFree": "1%"
        },
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        // A device plugin's registration shows in the Node's capacity at the next
        // status update: every second, so that bring-up and the faults' capacity
        // waits do not sit out a period; a status written only when it changed.
        "nodeStatusUpdateFrequency": "1s",
        "nodeStatusReportFrequency": "1m",
        "syncFrequency": "10s",
        "serializeImagePulls": false,
        "shutdownGracePeriod": "0s",
        "logging": {"format": "text"}
    })
}

/// containerd's configuration: private root, state and socket; the CRI plugin with
/// what this machine forces (root lacks CAP_SYS_RESOURCE: `restrict_oom_score_adj`),
/// runc with cgroupfs, CNI from the node's own `/opt/cni/bin` and `/etc/cni/net.d`.
fn containerd_config(node_dir: &Path, socket: &Path, pause_image: &str) -> String {
    let d = |name: &str| node_dir.join(name).display().to_string();
    format!(
        r#"version = 2
root = "{root}"
state = "{state}"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "{socket}"

[ttrpc]
  address = "{socket}.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "{opt}"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause_image}"
  restrict_oom_score_adj = true
  disable_apparmor = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/opt/cni/bin"
    conf_dir = "/etc/cni/net.d"
    max_conf_num = 1
"#,
        root = d("containerd/root"),
        state = d("containerd/state"),
        socket = socket.display(),
        opt = d("containerd/opt"),
    )
}

/// The default pod network of a node: Debian's bridge + host-local on the node's /24.
pub fn pod_network(subnet: &str) -> Value {
    json!({
        "cniVersion": "1.0.0",
        "name": "secnet-pods",
        "plugins": [{
            "type": "bridge",
            "bridge": POD_BRIDGE,
            "isGateway": true,
            "ipMasq": false,
            "hairpinMode": true,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": subnet}]],
                "routes": [{"dst": "0.0.0.0/0"}],
                "dataDir": "/var/lib/cni/networks"
            }
        }]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> Plan {
        let topo = Topology::builtin();
        Plan::new(&PlanInput {
            run_id: "sn000042",
            topology: &topo,
            k8s_bin_dir: Path::new("/opt/k8s/bin"),
            run_dir: Path::new("/run/secnet/sn000042"),
            pause_image: "secnet.local/pause:1",
            etcd: Path::new("/usr/bin/etcd"),
            containerd: Path::new("/usr/bin/containerd"),
            reference_cni_dir: Path::new("/usr/lib/cni"),
        })
        .unwrap()
    }

    #[test]
    fn the_bring_up_plan_of_the_default_topology() {
        let plan = plan();
        let mut text = serde_json::to_string_pretty(&plan).unwrap();
        text.push('\n');
        for n in &plan.nodes {
            text.push_str(&format!(
                "--- {} containerd.toml\n{}",
                n.name, n.containerd_config
            ));
        }
        insta::assert_snapshot!("bare_plan_default_topology", text);
    }

    #[test]
    fn the_control_plane_takes_a_free_fabric_address() {
        let plan = plan();
        // .254 is free in the default topology (gateway .2, nodes .137/.138, DHCP .150-.199).
        assert_eq!(
            plan.control_plane.fabric_ip,
            Ipv4Addr::new(192, 168, 159, 254)
        );
        assert!(plan.apiserver_ips().contains(&plan.control_plane.inner_ip));
        let mut topo = Topology::builtin();
        topo.fabric.dhcp_range = Some([
            Ipv4Addr::new(192, 168, 159, 3),
            Ipv4Addr::new(192, 168, 159, 254),
        ]);
        topo.nodes[0].address = Ipv4Addr::new(192, 168, 159, 1);
        let e = Plan::new(&PlanInput {
            topology: &topo,
            ..PlanInput {
                run_id: "sn000042",
                topology: &topo,
                k8s_bin_dir: Path::new("/b"),
                run_dir: Path::new("/r"),
                pause_image: "p",
                etcd: Path::new("/e"),
                containerd: Path::new("/c"),
                reference_cni_dir: Path::new("/l"),
            }
        })
        .unwrap_err();
        assert!(e.to_string().contains("no free address"), "{e}");
    }

    #[test]
    fn host_links_of_runs_differ_and_avoid_the_metadata_address() {
        let a = host_link_addresses("sn000001");
        let b = host_link_addresses("sn000002");
        assert_ne!(a, b);
        for i in 0..5000 {
            let (h, c) = host_link_addresses(&format!("sn{i:06x}"));
            assert_eq!(h.octets()[..2], [169, 254]);
            assert_ne!(h.octets()[2], 169);
            assert_eq!(u32::from(c), u32::from(h) + 1);
            assert_eq!(h.octets()[3] % 4, 1);
        }
    }

    #[test]
    fn nodes_route_to_each_others_pods() {
        let plan = plan();
        assert_eq!(
            plan.nodes[0].routes,
            vec![(
                "10.244.2.0/24".to_string(),
                Ipv4Addr::new(192, 168, 159, 138)
            )]
        );
        assert_eq!(plan.nodes[1].pod_subnet, "10.244.2.0/24");
        assert_eq!(
            plan.nodes[1].kubelet_config["cgroupRoot"],
            "/secnet-sn000042/node2"
        );
        assert!(
            plan.nodes[0]
                .containerd_config
                .contains("restrict_oom_score_adj = true")
        );
    }
}
