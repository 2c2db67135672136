//! The `kind` provider: a throwaway Kubernetes in containers, driven with the `kind`
//! CLI. The node config (`clusters/kind-2node.yaml`) mounts the host's `/dev` into
//! every node: a macvtap's `/dev/tapN` appears on the host devtmpfs, not in the
//! node container's own `/dev` (macvtap-cni#39). kind's `eth0` is a veth, which the
//! upstream device plugin's auto-discovery skips, so each node gets an explicit lower
//! device (`ens33` by default, as in the seed: a bridge-mode macvlan on `eth0`;
//! macvtaps made on it attach to `eth0` and reach the other nodes).
//!
//! Every command is built as data first (`Cmd`, see `command.rs`), so tests
//! snapshot exactly what would run; `HostRunner` runs them.

use std::path::PathBuf;

use kube::config::{KubeConfigOptions, Kubeconfig, KubeconfigError};
use kube::{Client, Config};

use super::command::{Cmd, CommandError, Runner};
use super::{KubeCluster, KubeOptions};
use crate::cluster::ClusterError;

#[derive(Debug, Clone)]
pub struct KindOptions {
    pub run: String,
    /// kind cluster config (`clusters/kind-2node.yaml`).
    pub config: PathBuf,
    /// Images to load into the nodes (the bundled plugins' image).
    pub images: Vec<String>,
    /// `--keep`: leave the cluster after the run.
    pub keep: bool,
    pub kind_bin: String,
    /// `docker` or `podman` (kind's node provider; it also runs `<engine> exec`).
    pub engine: String,
    /// `kindest/node:<version>` to pin Kubernetes; kind's default otherwise.
    pub node_image: Option<String>,
    /// Name of the macvtap lower device made in every node.
    pub lower_device: String,
    /// Where `kind export logs` writes on failure.
    pub logs_dir: PathBuf,
    /// Run on this existing kind cluster (`--kind-reuse NAME`): not created, never
    /// deleted; the nodes are prepared and the images loaded as for a new one.
    pub reuse: Option<String>,
}

impl KindOptions {
    pub fn new(run: &str) -> Self {
        KindOptions {
            run: run.to_string(),
            config: PathBuf::from("clusters/kind-2node.yaml"),
            images: vec![super::components::SECNET_IMAGE.to_string()],
            keep: false,
            kind_bin: "kind".into(),
            engine: "docker".into(),
            node_image: None,
            lower_device: super::DEFAULT_LOWER_DEVICE.into(),
            logs_dir: PathBuf::from(format!("reports/kind-logs-{run}")),
            reuse: None,
        }
    }
}

pub struct Kind<R: Runner> {
    pub opts: KindOptions,
    pub runner: R,
}

/// Why the kind cluster could not be brought up or reached.
#[derive(Debug, thiserror::Error)]
pub enum KindError {
    #[error("kind create cluster failed: {0}")]
    Create(#[source] CommandError),
    /// Preparing the nodes or loading the images failed; `notes` are what taking
    /// the cluster down again said.
    #[error("failed to prepare the kind cluster: {source}{}", notes_suffix(notes))]
    Prepare {
        source: CommandError,
        notes: Vec<String>,
    },
    #[error("kind gave an unreadable kubeconfig: {0}")]
    Kubeconfig(#[source] KubeconfigError),
    #[error("kind's kubeconfig has no usable cluster: {0}")]
    Config(#[source] KubeconfigError),
    #[error("failed to build a client for the kind cluster: {0}")]
    Client(#[source] kube::Error),
    #[error(transparent)]
    Connect(#[from] ClusterError),
}

impl<R: Runner> Kind<R> {
    pub fn new(opts: KindOptions, runner: R) -> Self {
        Kind { opts, runner }
    }

    pub fn cluster_name(&self) -> String {
        match &self.opts.reuse {
            Some(name) => name.clone(),
            None => format!("secnet-{}", self.opts.run),
        }
    }

    fn kind(&self, args: &[&str]) -> Cmd {
        Cmd::new(&self.opts.kind_bin, args)
    }

    pub fn create_cmd(&self) -> Cmd {
        let name = self.cluster_name();
        let config = self.opts.config.display().to_string();
        let mut args = vec!["create", "cluster", "--name", &name, "--config", &config];
        if let Some(img) = &self.opts.node_image {
            args.extend(["--image", img]);
        }
        args.extend(["--wait", "120s"]);
        self.kind(&args)
    }

    pub fn nodes_cmd(&self) -> Cmd {
        self.kind(&["get", "nodes", "--name", &self.cluster_name()])
    }

    pub fn kubeconfig_cmd(&self) -> Cmd {
        self.kind(&["get", "kubeconfig", "--name", &self.cluster_name()])
    }

    pub fn load_cmds(&self) -> Vec<Cmd> {
        let name = self.cluster_name();
        self.opts
            .images
            .iter()
            .map(|img| self.kind(&["load", "docker-image", img, "--name", &name]))
            .collect()
    }

    /// The lower device in one node: a bridge-mode macvlan on eth0, up. On a reused
    /// cluster it may exist from an earlier run: then it is only set up.
    pub fn lower_device_cmds(&self, node: &str) -> Vec<Cmd> {
        let dev = &self.opts.lower_device;
        let e = &self.opts.engine;
        let add = [
            "ip", "link", "add", dev, "link", "eth0", "type", "macvlan", "mode", "bridge",
        ];
        let add_cmd = if self.opts.reuse.is_some() {
            let script = format!(
                "ip link show dev {dev} >/dev/null 2>&1 || {}",
                add.join(" ")
            );
            Cmd::new(e, &["exec", node, "sh", "-c", &script])
        } else {
            let mut args = vec!["exec", node];
            args.extend(add);
            Cmd::new(e, &args)
        };
        vec![
            add_cmd,
            Cmd::new(e, &["exec", node, "ip", "link", "set", dev, "up"]),
        ]
    }

    pub fn export_logs_cmd(&self) -> Cmd {
        let dir = self.opts.logs_dir.display().to_string();
        self.kind(&["export", "logs", &dir, "--name", &self.cluster_name()])
    }

    pub fn delete_cmd(&self) -> Cmd {
        self.kind(&["delete", "cluster", "--name", &self.cluster_name()])
    }

    /// Creates the cluster, prepares the nodes, loads the images; returns the
    /// kubeconfig (YAML). On failure the logs are exported and the cluster deleted
    /// (unless `keep`).
    pub fn up(&self) -> Result<String, KindError> {
        if self.opts.reuse.is_none() {
            self.runner
                .run(&self.create_cmd())
                .map_err(KindError::Create)?;
        }
        self.prepare().map_err(|source| KindError::Prepare {
            source,
            notes: self.down(true),
        })
    }

    fn prepare(&self) -> Result<String, CommandError> {
        let nodes = self.runner.run(&self.nodes_cmd())?;
        for node in nodes.lines().map(str::trim).filter(|l| !l.is_empty()) {
            for cmd in self.lower_device_cmds(node) {
                self.runner.run(&cmd)?;
            }
        }
        for cmd in self.load_cmds() {
            self.runner.run(&cmd)?;
        }
        self.runner.run(&self.kubeconfig_cmd())
    }

    /// After the run: export logs if it failed, delete the cluster unless `keep`.
    /// Returns notes (errors, how to reach a kept cluster); never fails.
    pub fn down(&self, failed: bool) -> Vec<String> {
        let mut notes = Vec::new();
        if failed {
            match self.runner.run(&self.export_logs_cmd()) {
                Ok(_) => notes.push(format!(
                    "kind logs exported to {}",
                    self.opts.logs_dir.display()
                )),
                Err(e) => notes.push(format!("failed to export kind logs: {e}")),
            }
        }
        if self.opts.reuse.is_some() {
            notes.push(format!(
                "reused cluster {} left as it was found (plus the lower devices)",
                self.cluster_name()
            ));
        } else if self.opts.keep {
            notes.push(format!(
                "kept cluster {0}: kubectl --context kind-{0} get pods -A; delete it with: {1}",
                self.cluster_name(),
                self.delete_cmd()
            ));
        } else if let Err(e) = self.runner.run(&self.delete_cmd()) {
            notes.push(format!("failed to delete kind cluster: {e}"));
        }
        notes
    }
}

fn notes_suffix(notes: &[String]) -> String {
    if notes.is_empty() {
        String::new()
    } else {
        format!(" ({})", notes.join("; "))
    }
}

/// Connects to the cluster `up` made.
pub async fn connect(
    kubeconfig_yaml: &str,
    run: &str,
    kopts: KubeOptions,
) -> Result<KubeCluster, KindError> {
    let kc = Kubeconfig::from_yaml(kubeconfig_yaml).map_err(KindError::Kubeconfig)?;
    let cfg = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .map_err(KindError::Config)?;
    let client = Client::try_from(cfg).map_err(KindError::Client)?;
    Ok(KubeCluster::connect(client, "kind", run, kopts).await?)
}
