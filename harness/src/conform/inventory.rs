//! `--inventory FILE` for the `existing` provider: which cluster, its lower device,
//! the nodes secnet may use, and what the cluster's owner installed already
//! (`clusters/inventory.example.yaml`). Flags given on the command line win.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::real::RealOptions;
use crate::cluster::kube::components::{self, ComponentOptions};

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Inventory {
    /// A path; `~/` is the user's home.
    #[serde(default)]
    pub kubeconfig: Option<String>,
    #[serde(default)]
    pub context: Option<String>,
    /// The macvtap/macvlan lower device on every node.
    #[serde(default)]
    pub lower_device: Option<String>,
    /// Nodes secnet may schedule on (empty: all).
    #[serde(default)]
    pub nodes: Vec<String>,
    /// Component sets the cluster already has: secnet does not apply them.
    #[serde(default)]
    pub preinstalled: Vec<String>,
    /// The nodes have /dev/kvm (KubeVirt without software emulation).
    #[serde(default)]
    pub kvm: bool,
}

impl Inventory {
    pub fn load(path: &Path) -> Result<Inventory, String> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read inventory {file}: {e}"))?;
        Inventory::parse(&text, &file)
    }

    pub fn parse(text: &str, file: &str) -> Result<Inventory, String> {
        let value: serde_json::Value =
            serde_saphyr::from_str(text).map_err(|e| format!("inventory {file}: {e}"))?;
        let inv: Inventory = serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            format!("inventory {file}: field {path}: {}", e.into_inner())
        })?;
        let known: Vec<String> = components::sets(&ComponentOptions::default())
            .into_iter()
            .map(|s| s.name)
            .collect();
        if let Some(bad) = inv.preinstalled.iter().find(|p| !known.contains(p)) {
            return Err(format!(
                "inventory {file}: field preinstalled: unknown component {bad:?}; known: {}",
                known.join(", ")
            ));
        }
        if inv.lower_device.as_deref() == Some("") {
            return Err(format!(
                "inventory {file}: field lowerDevice is empty; name the nodes' uplink (e.g. ens33) or leave the field out"
            ));
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
        real.kvm |= self.kvm;
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
            components: vec!["multus".into(), "macvtap".into(), "kubevirt".into()],
            ..RealOptions::default()
        };
        real.context = Some("from-the-flag".into());
        inv.apply_to(&mut real);
        assert_eq!(real.context.as_deref(), Some("from-the-flag"), "flags win");
        assert_eq!(real.components, ["macvtap"], "preinstalled are not applied");
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
        let err = Inventory::parse("lowerDev: eth1\n", "inv.yaml").unwrap_err();
        assert!(
            err.contains("inv.yaml") && err.contains("lowerDev") && err.contains("lowerDevice"),
            "{err}"
        );
        let err = Inventory::parse("preinstalled: [calico]\n", "inv.yaml").unwrap_err();
        assert!(
            err.contains("preinstalled") && err.contains("\"calico\"") && err.contains("multus"),
            "{err}"
        );
        let err = Inventory::parse("nodes: worker-1\n", "inv.yaml").unwrap_err();
        assert!(err.contains("field nodes"), "{err}");
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
