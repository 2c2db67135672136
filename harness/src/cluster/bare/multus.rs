//! Thin multus on a bare cluster, installed as its node-side install step would: the
//! `multus` binary in each node's `/opt/cni/bin`, its kubeconfig, and
//! `00-multus.conf` (first in `/etc/cni/net.d`, so containerd uses it) delegating the
//! pod network to the node's bridge conflist; plus the NetworkAttachmentDefinition CRD.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::kubeconfig::Kubeconfig;
use super::node::backing;
use super::pki::CertPair;
use super::plan::Plan;

#[derive(Debug, thiserror::Error)]
pub enum MultusError {
    #[error("failed to install {what} at {path}: {source}")]
    Install {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("multus binary {path} not found: build or download multus-cni and pass its directory")]
    NoBinary { path: PathBuf },
}

/// The NetworkAttachmentDefinition CRD (k8s.cni.cncf.io/v1), as multus defines it:
/// a namespaced kind whose `spec.config` is a CNI config string.
pub fn nad_crd() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "network-attachment-definitions.k8s.cni.cncf.io"},
        "spec": {
            "group": "k8s.cni.cncf.io",
            "scope": "Namespaced",
            "names": {
                "plural": "network-attachment-definitions",
                "singular": "network-attachment-definition",
                "kind": "NetworkAttachmentDefinition",
                "shortNames": ["net-attach-def"]
            },
            "versions": [{
                "name": "v1",
                "served": true,
                "storage": true,
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "properties": {
                        "apiVersion": {"type": "string"},
                        "kind": {"type": "string"},
                        "metadata": {"type": "object"},
                        "spec": {
                            "type": "object",
                            "properties": {"config": {"type": "string"}}
                        }
                    }
                }}
            }]
        }
    })
}

/// The thin plugin's config on a node: the pod network as its one delegate.
pub fn multus_conf(pod_network: &Value) -> Value {
    json!({
        "cniVersion": "0.3.1",
        "name": "multus-cni-network",
        "type": "multus",
        "kubeconfig": "/etc/cni/net.d/multus.d/multus.kubeconfig",
        "confDir": "/etc/cni/multus/net.d",
        "cniDir": "/var/lib/cni/multus",
        "binDir": "/opt/cni/bin",
        "logFile": "/var/log/pods/multus.log",
        "logLevel": "verbose",
        "delegates": [pod_network]
    })
}

/// Installs thin multus on every node of `plan`. `cred` is multus's client
/// certificate (it reads pods and NADs and writes the network-status annotation).
pub fn install_thin(
    plan: &Plan,
    multus_bin: &Path,
    ca_pem: &str,
    cred: &CertPair,
) -> Result<(), MultusError> {
    if !multus_bin.is_file() {
        return Err(MultusError::NoBinary {
            path: multus_bin.to_path_buf(),
        });
    }
    let install = |what, path: &Path, r: std::io::Result<()>| {
        r.map_err(|source| MultusError::Install {
            what,
            path: path.to_path_buf(),
            source,
        })
    };
    for node in &plan.nodes {
        let bin = backing(node, "/opt/cni/bin").join("multus");
        install(
            "the multus binary",
            &bin,
            std::fs::copy(multus_bin, &bin).map(|_| ()),
        )?;
        let conf_dir = backing(node, "/etc/cni/net.d");
        let kc_dir = conf_dir.join("multus.d");
        let kc = Kubeconfig::new(&plan.run_id, &plan.fabric_server(), ca_pem, "multus", cred);
        install(
            "multus's kubeconfig",
            &kc_dir,
            std::fs::create_dir_all(&kc_dir)
                .and_then(|()| kc.write(&kc_dir.join("multus.kubeconfig"))),
        )?;
        let conf = conf_dir.join("00-multus.conf");
        let text = serde_json::to_string_pretty(&multus_conf(&node.cni_conflist)).expect("json");
        // Written last and atomically: containerd picks it up as it appears.
        let tmp = conf_dir.join(".00-multus.conf.tmp");
        install(
            "multus's CNI config",
            &conf,
            std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, &conf)),
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multus_delegates_to_the_nodes_pod_network() {
        let net = super::super::plan::pod_network("10.244.1.0/24");
        let conf = multus_conf(&net);
        assert_eq!(conf["type"], "multus");
        assert_eq!(conf["delegates"][0]["plugins"][0]["type"], "bridge");
        assert_eq!(
            conf["delegates"][0]["plugins"][0]["ipam"]["ranges"][0][0]["subnet"],
            "10.244.1.0/24"
        );
        assert_eq!(
            nad_crd()["spec"]["names"]["kind"],
            "NetworkAttachmentDefinition"
        );
    }
}
