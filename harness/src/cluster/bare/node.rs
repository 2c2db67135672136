//! One bare node: a network namespace on the fabric with routes to the other nodes'
//! pods, a private mount view, its own containerd and kubelet in the run's cgroup.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::cgroup::{self, CgroupError};
use super::kubeconfig::Kubeconfig;
use super::pki::{Pki, kubelet_identity};
use super::plan::{NodePlan, Plan};
use super::process::{Daemon, Placement, ProcessError};
use super::view::{NodeView, ViewError};
use crate::cluster::netns::fabric;
use crate::cluster::netns::topology::Topology;
use crate::lab::enter::Enter;
use crate::lab::{Cmd, CommandError, Lab, Ns};

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("node {node}: network: {source}")]
    Network {
        node: String,
        source: Box<CommandError>,
    },
    #[error("node {node}: failed to write {path}: {source}")]
    Write {
        node: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("node {node}: {source}")]
    View {
        node: String,
        source: Box<ViewError>,
    },
    #[error("node {node}: {source}")]
    Cgroup { node: String, source: CgroupError },
    #[error("node {node}: {source}")]
    Process { node: String, source: ProcessError },
    #[error("node {node}: failed to enter its namespaces: {source}")]
    Enter {
        node: String,
        source: std::io::Error,
    },
    #[error(
        "node {node}: containerd did not serve {socket} within {waited:?}; its log {log} ends:\n{tail}"
    )]
    ContainerdNotUp {
        node: String,
        socket: PathBuf,
        waited: Duration,
        log: String,
        tail: String,
    },
    #[error("node {node}: failed to import image {archive} into containerd: {source}")]
    Import {
        node: String,
        archive: PathBuf,
        source: Box<CommandError>,
    },
}

pub struct BareNode {
    pub(crate) plan: NodePlan,
    pub(crate) ns: Ns,
    pub(crate) view: NodeView,
    pub(crate) containerd: Daemon,
    pub(crate) kubelet: Option<Daemon>,
}

/// The node's namespace, its uplink on the fabric, its address and routes.
pub fn network(
    lab: &mut Lab,
    fabric_ns: &Ns,
    cp_ns: &Ns,
    api: std::net::Ipv4Addr,
    node: &NodePlan,
    topo: &Topology,
) -> Result<Ns, NodeError> {
    let net = |source| NodeError::Network {
        node: node.name.clone(),
        source: Box::new(source),
    };
    let ns = lab.netns(&node.name).map_err(net)?;
    management_link(lab, cp_ns, &ns, node, api).map_err(net)?;
    fabric::plug(lab, fabric_ns, &ns, &node.uplink, &node.fabric_port).map_err(net)?;
    let addr = format!("{}/24", node.address);
    lab.ip(&ns, &["addr", "add", &addr, "dev", &node.uplink])
        .map_err(net)?;
    let gw = topo.fabric.gateway.to_string();
    lab.ip(&ns, &["route", "add", "default", "via", &gw])
        .map_err(net)?;
    for (subnet, via) in &node.routes {
        lab.ip(&ns, &["route", "add", subnet, "via", &via.to_string()])
            .map_err(net)?;
    }
    Ok(ns)
}

/// The node's own link to the control plane: the API server's fabric address is
/// routed over it from the node, the node's address over it from the control plane.
fn management_link(
    lab: &Lab,
    cp_ns: &Ns,
    ns: &Ns,
    node: &NodePlan,
    api: std::net::Ipv4Addr,
) -> Result<(), CommandError> {
    lab.veth(ns, &node.mgmt_if, cp_ns, &node.mgmt_peer)?;
    let (mine, theirs) = (node.mgmt_ip.to_string(), node.mgmt_cp_ip.to_string());
    lab.ip(
        ns,
        &["addr", "add", &format!("{mine}/30"), "dev", &node.mgmt_if],
    )?;
    lab.ip(
        cp_ns,
        &[
            "addr",
            "add",
            &format!("{theirs}/30"),
            "dev",
            &node.mgmt_peer,
        ],
    )?;
    lab.ip(
        ns,
        &[
            "route",
            "add",
            &format!("{api}/32"),
            "via",
            &theirs,
            "dev",
            &node.mgmt_if,
            "src",
            &mine,
        ],
    )?;
    lab.ip(
        cp_ns,
        &[
            "route",
            "add",
            &format!("{}/32", node.address),
            "via",
            &mine,
            "dev",
            &node.mgmt_peer,
        ],
    )?;
    Ok(())
}

/// The node's uplink made again after it was deleted (a fault): the veth into the
/// fabric bridge, the node's address, its default route and the routes to the other
/// nodes' pods, as [`network`] made them.
pub fn replug(run_id: &str, node: &NodePlan, topo: &Topology) -> Result<(), NodeError> {
    let net = |source| NodeError::Network {
        node: node.name.clone(),
        source: Box::new(source),
    };
    // Namespaces the lab did not create: it removes none of them on drop.
    let lab = Lab::scoped(run_id, "");
    let ns = Ns {
        name: node.netns.clone(),
    };
    let fabric_ns = Ns {
        name: format!("{run_id}-fabric"),
    };
    fabric::plug(&lab, &fabric_ns, &ns, &node.uplink, &node.fabric_port).map_err(net)?;
    let addr = format!("{}/24", node.address);
    lab.ip(&ns, &["addr", "add", &addr, "dev", &node.uplink])
        .map_err(net)?;
    let gw = topo.fabric.gateway.to_string();
    lab.ip(&ns, &["route", "add", "default", "via", &gw])
        .map_err(net)?;
    for (subnet, via) in &node.routes {
        lab.ip(&ns, &["route", "add", subnet, "via", &via.to_string()])
            .map_err(net)?;
    }
    Ok(())
}

fn write(node: &str, path: &Path, text: &str) -> Result<(), NodeError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|source| NodeError::Write {
            node: node.to_string(),
            path: parent.to_path_buf(),
            source,
        })?;
    }
    std::fs::write(path, text).map_err(|source| NodeError::Write {
        node: node.to_string(),
        path: path.to_path_buf(),
        source,
    })
}

/// The backing directory of a private node path.
pub fn backing(node: &NodePlan, node_path: &str) -> PathBuf {
    node.private_dirs
        .iter()
        .find(|(p, _)| p == node_path)
        .map(|(_, b)| b.clone())
        .expect("a private node path of the plan")
}

/// Config files, the default pod network, the reference plugins in `/opt/cni/bin`,
/// the mount view and the cgroups; then containerd.
pub fn start(plan: &Plan, node: &NodePlan, pki: &Pki, ns: Ns) -> Result<BareNode, NodeError> {
    let name = node.name.as_str();
    write(
        name,
        &node.dir.join("containerd.toml"),
        &node.containerd_config,
    )?;
    let kubelet_json = serde_json::to_string_pretty(&node.kubelet_config).expect("json");
    write(name, &node.dir.join("kubelet.json"), &kubelet_json)?;
    let (_, client, _) = pki
        .kubelets
        .iter()
        .find(|(n, _, _)| n == name)
        .expect("the PKI has every node of the plan");
    let kc = Kubeconfig::new(
        &plan.run_id,
        &plan.fabric_server(),
        &pki.ca.cert_pem,
        &kubelet_identity(name).user,
        client,
    );
    write(name, &node.kubeconfig, &kc.to_text())?;
    let view = NodeView::create(&node.dir.join("mnt"), &node.private_dirs).map_err(|source| {
        NodeError::View {
            node: name.to_string(),
            source: Box::new(source),
        }
    })?;
    let conflist = serde_json::to_string_pretty(&node.cni_conflist).expect("json");
    write(
        name,
        &backing(node, "/etc/cni/net.d").join("10-secnet-pods.conflist"),
        &conflist,
    )?;
    // The node administrator's policy for the bundled plugins, as the netns nodes
    // have it: OVS bridge br1 (with trunks) is the pods'.
    write(
        name,
        &backing(node, "/etc/secnet").join("plugins.conf"),
        crate::cluster::netns::view::NODE_POLICY,
    )?;
    link_reference_plugins(node, &plan.reference_cni_dir)?;
    for cg in [&node.cgroup_root, &node.daemons_cgroup] {
        cgroup::create(cg).map_err(|source| NodeError::Cgroup {
            node: name.to_string(),
            source,
        })?;
    }
    let enter = enter(node, &ns, &view)?;
    let containerd = Daemon::spawn(
        &node.containerd,
        Placement {
            enter: Some(&enter),
            cgroup: Some(&node.daemons_cgroup),
        },
    )
    .map_err(|source| NodeError::Process {
        node: name.to_string(),
        source,
    })?;
    Ok(BareNode {
        plan: node.clone(),
        ns,
        view,
        containerd,
        kubelet: None,
    })
}

fn enter(node: &NodePlan, ns: &Ns, view: &NodeView) -> Result<Enter, NodeError> {
    Enter::net(ns.path())
        .and_then(|e| e.with_mnt(&view.ns_file))
        .map_err(|source| NodeError::Enter {
            node: node.name.clone(),
            source,
        })
}

/// Symlinks of the reference plugins (bridge, host-local, loopback, …) in the node's
/// `/opt/cni/bin`, where the DaemonSets' install steps add theirs.
fn link_reference_plugins(node: &NodePlan, reference: &Path) -> Result<(), NodeError> {
    let bin = backing(node, "/opt/cni/bin");
    let entries = std::fs::read_dir(reference).map_err(|source| NodeError::Write {
        node: node.name.clone(),
        path: reference.to_path_buf(),
        source,
    })?;
    for e in entries.flatten() {
        let link = bin.join(e.file_name());
        if !link.exists() {
            std::os::unix::fs::symlink(e.path(), &link).map_err(|source| NodeError::Write {
                node: node.name.clone(),
                path: link.clone(),
                source,
            })?;
        }
    }
    Ok(())
}

/// Imports an OCI archive into the CRI's image namespace (`k8s.io`) of `node`'s
/// containerd.
pub fn import(node: &NodePlan, archive: &Path) -> Result<(), NodeError> {
    let socket = node.containerd_socket.display().to_string();
    Cmd::new("ctr")
        .args(["--address", &socket, "-n", "k8s.io", "images", "import"])
        .arg(archive)
        .timeout(Duration::from_secs(60))
        .run()
        .map(|_| ())
        .map_err(|source| NodeError::Import {
            node: node.name.clone(),
            archive: archive.to_path_buf(),
            source: Box::new(source),
        })
}

impl BareNode {
    /// Waits for containerd's socket to answer (`ctr version`).
    pub async fn wait_containerd(&mut self, timeout: Duration) -> Result<(), NodeError> {
        let start = Instant::now();
        let socket = self.plan.containerd_socket.display().to_string();
        loop {
            if self.plan.containerd_socket.exists() {
                let ok = Cmd::new("ctr")
                    .args(["--address", &socket, "version"])
                    .timeout(Duration::from_secs(5))
                    .run()
                    .is_ok();
                if ok {
                    return Ok(());
                }
            }
            if self.containerd.exited().is_some() || start.elapsed() > timeout {
                return Err(NodeError::ContainerdNotUp {
                    node: self.plan.name.clone(),
                    socket: self.plan.containerd_socket.clone(),
                    waited: start.elapsed(),
                    log: self.containerd.log.display().to_string(),
                    tail: self.containerd.log_tail(20),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn start_kubelet(&mut self) -> Result<(), NodeError> {
        let enter = enter(&self.plan, &self.ns, &self.view)?;
        let kubelet = Daemon::spawn(
            &self.plan.kubelet,
            Placement {
                enter: Some(&enter),
                cgroup: Some(&self.plan.daemons_cgroup),
            },
        )
        .map_err(|source| NodeError::Process {
            node: self.plan.name.clone(),
            source,
        })?;
        self.kubelet = Some(kubelet);
        Ok(())
    }

    /// Stops the kubelet (SIGTERM, then SIGKILL after `grace`): the node's pods keep
    /// running, as on a real node whose kubelet restarts.
    pub fn stop_kubelet(&mut self, grace: Duration) {
        if let Some(mut k) = self.kubelet.take() {
            k.stop(grace);
        }
    }
}
