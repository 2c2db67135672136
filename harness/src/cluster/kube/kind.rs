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
//!
//! Engines: with docker (kind's default provider) images are loaded straight from
//! docker's store (`kind load docker-image`). With any other engine (podman) every
//! kind command runs with `KIND_EXPERIMENTAL_PROVIDER=<engine>`, and images go
//! through an archive (`<engine> save --format docker-archive`, then
//! `kind load image-archive`), removed afterwards, also on failure.

use std::path::{Path, PathBuf};

use kube::config::{KubeConfigOptions, Kubeconfig, KubeconfigError};
use kube::{Client, Config};

use super::command::{Cmd, CommandError, Runner};
use super::{KubeCluster, KubeOptions};
use crate::cluster::ClusterError;

/// kind v0.32.0's default node image (Kubernetes v1.36.1): `pkg/apis/config/defaults/image.go`
/// at kubernetes-sigs/kind tag v0.32.0. Node images are built for a kind release:
/// with another kind, pass that release's image with `--node-image`.
pub const KIND_NODE_IMAGE: &str =
    "kindest/node:v1.36.1@sha256:3489c7674813ba5d8b1a9977baea8a6e553784dab7b84759d1014dbd78f7ebd5";

/// The engine kind uses without `KIND_EXPERIMENTAL_PROVIDER`.
const DEFAULT_ENGINE: &str = "docker";

#[derive(Debug, Clone)]
pub struct KindOptions {
    pub(crate) run: String,
    /// kind cluster config (`clusters/kind-2node.yaml`).
    pub(crate) config: PathBuf,
    /// Images to load into the nodes (the bundled plugins' image).
    pub(crate) images: Vec<String>,
    /// `--keep`: leave the cluster after the run.
    pub(crate) keep: bool,
    pub(crate) kind_bin: String,
    /// `docker` or `podman` (kind's node provider; it also runs `<engine> exec`).
    pub(crate) engine: String,
    /// `kindest/node:<version>@sha256:...` (`KIND_NODE_IMAGE` by default); `None`:
    /// the kind binary's own default.
    pub(crate) node_image: Option<String>,
    /// Name of the macvtap lower device made in every node.
    pub(crate) lower_device: String,
    /// Where `kind export logs` writes on failure (a run puts it under `--report`).
    pub(crate) logs_dir: PathBuf,
    /// Where image archives are written for engines other than docker (each is
    /// removed once loaded, or once loading failed).
    pub(crate) archive_dir: PathBuf,
    /// Run on this existing kind cluster (`--kind-reuse NAME`): not created, never
    /// deleted; the nodes are prepared and the images loaded as for a new one.
    pub(crate) reuse: Option<String>,
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
            node_image: Some(KIND_NODE_IMAGE.into()),
            lower_device: super::DEFAULT_LOWER_DEVICE.into(),
            logs_dir: PathBuf::from(format!("reports/kind-logs-{run}")),
            archive_dir: std::env::temp_dir(),
            reuse: None,
        }
    }
}

pub struct Kind<R: Runner> {
    pub(crate) opts: KindOptions,
    pub(crate) runner: R,
}

/// How one image gets into the nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageLoad {
    pub(crate) image: String,
    /// `<engine> image inspect`: the image ID the run names (a locally built image
    /// has no registry digest) and a clear error when the image was never built.
    pub(crate) inspect: Cmd,
    /// docker: `kind load docker-image`; other engines: save to an archive, then
    /// `kind load image-archive`.
    pub(crate) steps: Vec<Cmd>,
    /// The archive the steps write, removed after them whatever happened.
    pub(crate) archive: Option<PathBuf>,
}

/// An image loaded into the nodes and the ID its engine gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedImage {
    pub(crate) image: String,
    /// `sha256:...`; empty if the engine printed nothing.
    pub(crate) id: String,
}

/// What `bring_up` made: the kubeconfig (YAML) and the images it loaded.
#[derive(Debug, Clone)]
pub struct Up {
    pub(crate) kubeconfig: String,
    pub(crate) images: Vec<LoadedImage>,
}

/// An archive file name for an image: `localhost/secnet-plugins:dev` →
/// `secnet-<run>-localhost_secnet-plugins_dev.tar`.
fn archive_name(run: &str, image: &str) -> String {
    let safe: String = image
        .chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '.' | '-' => c,
            _ => '_',
        })
        .collect();
    format!("secnet-{run}-{safe}.tar")
}

/// Removes an archive; one that was never written is fine.
fn remove_archive(path: &Path) -> Result<(), std::io::Error> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
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

    /// A kind command; with an engine other than docker, with kind's provider variable.
    fn kind(&self, args: &[&str]) -> Cmd {
        let cmd = Cmd::new(&self.opts.kind_bin, args);
        match self.opts.engine.as_str() {
            DEFAULT_ENGINE => cmd,
            engine => cmd.env("KIND_EXPERIMENTAL_PROVIDER", engine),
        }
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

    /// How each image gets into the nodes, in order.
    pub fn image_loads(&self) -> Vec<ImageLoad> {
        let name = self.cluster_name();
        let e = &self.opts.engine;
        self.opts
            .images
            .iter()
            .map(|img| {
                let inspect = Cmd::new(e, &["image", "inspect", "--format", "{{.Id}}", img]);
                if e == DEFAULT_ENGINE {
                    return ImageLoad {
                        image: img.clone(),
                        inspect,
                        steps: vec![self.kind(&["load", "docker-image", img, "--name", &name])],
                        archive: None,
                    };
                }
                let archive = self
                    .opts
                    .archive_dir
                    .join(archive_name(&self.opts.run, img));
                let tar = archive.display().to_string();
                ImageLoad {
                    image: img.clone(),
                    inspect,
                    steps: vec![
                        Cmd::new(e, &["save", "--format", "docker-archive", "-o", &tar, img]),
                        self.kind(&["load", "image-archive", &tar, "--name", &name]),
                    ],
                    archive: Some(archive),
                }
            })
            .collect()
    }

    /// Every command `image_loads` runs, in order (for the plan and tests).
    pub fn load_cmds(&self) -> Vec<Cmd> {
        self.image_loads()
            .into_iter()
            .flat_map(|l| std::iter::once(l.inspect).chain(l.steps))
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
        self.bring_up().map(|up| up.kubeconfig)
    }

    /// `up`, also naming the images loaded and their IDs.
    pub fn bring_up(&self) -> Result<Up, KindError> {
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

    fn prepare(&self) -> Result<Up, CommandError> {
        let nodes = self.runner.run(&self.nodes_cmd())?;
        for node in nodes.lines().map(str::trim).filter(|l| !l.is_empty()) {
            for cmd in self.lower_device_cmds(node) {
                self.runner.run(&cmd)?;
            }
        }
        let mut images = Vec::new();
        for load in self.image_loads() {
            images.push(self.load(&load)?);
        }
        let kubeconfig = self.runner.run(&self.kubeconfig_cmd())?;
        Ok(Up { kubeconfig, images })
    }

    /// Loads one image; its archive (if any) is removed whether or not that worked.
    fn load(&self, load: &ImageLoad) -> Result<LoadedImage, CommandError> {
        let id = self.runner.run(&load.inspect)?.trim().to_string();
        let loaded = load
            .steps
            .iter()
            .try_for_each(|cmd| self.runner.run(cmd).map(drop));
        if let Some(archive) = &load.archive
            && let Err(e) = remove_archive(archive)
        {
            // Not the run's failure, but an archive is as big as the image: say so.
            tracing::warn!(
                "failed to remove the image archive {}: {e}",
                archive.display()
            );
        }
        loaded.map(|()| LoadedImage {
            image: load.image.clone(),
            id,
        })
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

#[cfg(test)]
#[path = "kind_tests.rs"]
mod tests;
