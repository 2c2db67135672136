//! `--inventory FILE` for the `existing` provider: which cluster, its lower device,
//! the nodes secnet may use, and what the cluster's owner installed already
//! (`clusters/inventory.example.yaml`). Flags given on the command line win.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::real::RealOptions;
use crate::cluster::capability::Capability;
use crate::cluster::kube::components::Component;

/// Why an inventory cannot be used; every message names the file.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error("cannot read inventory {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("inventory {file}: {source}")]
    Yaml {
        file: String,
        source: Box<serde_saphyr::Error>,
    },
    #[error("inventory {file}: field {field}: {source}")]
    Field {
        file: String,
        field: String,
        source: serde_json::Error,
    },
    #[error(
        "inventory {file}: field lowerDevice is empty; name the nodes' uplink (e.g. ens33) or leave the field out"
    )]
    EmptyLowerDevice { file: String },
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Inventory {
    /// A path; `~/` is the user's home.
    #[serde(default)]
    pub(crate) kubeconfig: Option<String>,
    #[serde(default)]
    pub(crate) context: Option<String>,
    /// The macvtap/macvlan lower device on every node.
    #[serde(default)]
    pub(crate) lower_device: Option<String>,
    /// Nodes secnet may schedule on (empty: all).
    #[serde(default)]
    pub(crate) nodes: Vec<String>,
    /// Component sets the cluster already has: secnet does not apply them.
    #[serde(default)]
    pub(crate) preinstalled: Vec<Component>,
    /// The nodes have /dev/kvm (KubeVirt without software emulation).
    #[serde(default)]
    pub(crate) kvm: bool,
    /// How secnet may read the nodes themselves.
    #[serde(default)]
    pub(crate) node_access: NodeAccessMode,
}

/// `nodeAccess`: how secnet reads the nodes' links, sandboxes and kubelet state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NodeAccessMode {
    /// Short-lived privileged hostNetwork/hostPID pods, one per node, in the run's
    /// namespace (`kubectl debug node`'s way).
    #[default]
    ProbePods,
    /// No node access: the scenarios that need it are skipped, naming it.
    None,
}

impl Inventory {
    pub fn load(path: &Path) -> Result<Inventory, InventoryError> {
        let text = std::fs::read_to_string(path).map_err(|source| InventoryError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Inventory::parse(&text, &path.display().to_string())
    }

    pub fn parse(text: &str, file: &str) -> Result<Inventory, InventoryError> {
        let value: serde_json::Value =
            serde_saphyr::from_str(text).map_err(|source| InventoryError::Yaml {
                file: file.to_string(),
                source: Box::new(source),
            })?;
        let inv: Inventory =
            serde_path_to_error::deserialize(value).map_err(|e| InventoryError::Field {
                file: file.to_string(),
                field: e.path().to_string(),
                source: e.into_inner(),
            })?;
        if inv.lower_device.as_deref() == Some("") {
            return Err(InventoryError::EmptyLowerDevice {
                file: file.to_string(),
            });
        }
        Ok(inv)
    }

    /// Fills what the command line left open; drops preinstalled sets.
    pub fn apply_to(&self, real: &mut RealOptions) {
        if real.kubeconfig.is_none() {
            real.kubeconfig = self.kubeconfig.as_deref().map(expand_home);
        }
        if real.context.is_none() {
            real.context = self.context.clone();
        }
        if let Some(dev) = self
            .lower_device
            .as_ref()
            .filter(|_| !real.lower_device_given)
        {
            real.lower_device = dev.clone();
        }
        if real.nodes.is_empty() {
            real.nodes = self.nodes.clone();
        }
        real.components.retain(|c| !self.preinstalled.contains(c));
        real.preinstalled = self.preinstalled.clone();
        real.kvm |= self.kvm;
        if self.node_access == NodeAccessMode::None {
            real.withheld.insert(Capability::NodeAccess);
        }
    }
}

fn expand_home(path: &str) -> PathBuf {
    match (path.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => PathBuf::from(path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_inventory_parses_and_fills_the_options() {
        let path = crate::bins::fixtures_dir().join("../clusters/inventory.example.yaml");
        let inv = Inventory::load(&path).unwrap();
        assert_eq!(inv.context.as_deref(), Some("lab-cluster"));
        let mut real = RealOptions {
            components: vec![Component::Multus, Component::Macvtap, Component::Kubevirt],
            ..RealOptions::default()
        };
        real.context = Some("from-the-flag".into());
        inv.apply_to(&mut real);
        assert_eq!(real.context.as_deref(), Some("from-the-flag"), "flags win");
        assert_eq!(
            real.components,
            [Component::Macvtap],
            "preinstalled are not applied"
        );
        assert_eq!(real.lower_device, "ens33");
        assert!(real.kvm);
        let kubeconfig = real.kubeconfig.unwrap();
        assert!(
            kubeconfig.ends_with(".kube/config") && !kubeconfig.starts_with("~"),
            "{}",
            kubeconfig.display()
        );
    }

    #[test]
    fn typos_name_the_file_and_field() {
        let err = Inventory::parse("lowerDev: eth1\n", "inv.yaml")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("inv.yaml") && err.contains("lowerDev") && err.contains("lowerDevice"),
            "{err}"
        );
        let err = Inventory::parse("preinstalled: [calico]\n", "inv.yaml")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("preinstalled") && err.contains("\"calico\"") && err.contains("multus"),
            "{err}"
        );
        let err = Inventory::parse("nodes: worker-1\n", "inv.yaml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("field nodes"), "{err}");
        let err = Inventory::parse("lowerDevice: \"\"\n", "inv.yaml").unwrap_err();
        assert!(
            matches!(&err, InventoryError::EmptyLowerDevice { file } if file == "inv.yaml"),
            "{err}"
        );
    }

    #[test]
    fn node_access_none_takes_node_access_from_the_offer() {
        let inv = Inventory::parse("nodeAccess: probe-pods\n", "inv.yaml").unwrap();
        assert_eq!(inv.node_access, NodeAccessMode::ProbePods);
        assert_eq!(Inventory::parse("kvm: false\n", "inv.yaml").unwrap(), inv);
        let none = Inventory::parse("nodeAccess: none\n", "inv.yaml").unwrap();
        let mut real = RealOptions::default();
        none.apply_to(&mut real);
        assert_eq!(real.withheld, [Capability::NodeAccess].into());
        let offer =
            crate::cluster::kube::base_offer("existing").without(real.withheld.iter().copied());
        assert!(!offer.offers(Capability::NodeAccess));
        let err = Inventory::parse("nodeAccess: ssh\n", "inv.yaml")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("nodeAccess") && err.contains("probe-pods") && err.contains("none"),
            "{err}"
        );
    }

    #[test]
    fn a_lower_device_flag_beats_the_inventory() {
        let inv = Inventory::parse("lowerDevice: eth1\nnodes: [w1]\n", "inv.yaml").unwrap();
        let mut real = RealOptions {
            lower_device: "bond0".into(),
            lower_device_given: true,
            ..RealOptions::default()
        };
        inv.apply_to(&mut real);
        assert_eq!(real.lower_device, "bond0");
        assert_eq!(real.nodes, ["w1"]);
        let mut real = RealOptions::default();
        inv.apply_to(&mut real);
        assert_eq!(real.lower_device, "eth1");
    }
}
