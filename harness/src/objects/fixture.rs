//! Fixture files: multi-document YAML, each document checked against the kind it
//! claims, errors naming the file, the document and the field path.

use std::path::Path;

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::Object;

#[derive(Debug, thiserror::Error)]
pub enum FixtureError {
    #[error("failed to read fixture {file}: {source}")]
    Read {
        file: String,
        source: std::io::Error,
    },
    #[error("fixture {file} is not valid YAML: {message}")]
    Yaml { file: String, message: String },
    #[error("fixture {file}, document {doc}: {message}")]
    Invalid {
        file: String,
        doc: usize,
        message: String,
    },
}

pub fn load_file(path: &Path) -> Result<Vec<Object>, FixtureError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| FixtureError::Read {
        file: file.clone(),
        source,
    })?;
    load_str(&text, &file)
}

/// Parses every document of `text` (named `file` in errors).
pub fn load_str(text: &str, file: &str) -> Result<Vec<Object>, FixtureError> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(text).map_err(|e| FixtureError::Yaml {
        file: file.to_string(),
        message: e.to_string(),
    })?;
    docs.into_iter()
        .enumerate()
        .filter(|(_, d)| !d.is_null())
        .map(|(i, d)| object(d, file, i + 1))
        .collect()
}

fn object(doc: Value, file: &str, doc_no: usize) -> Result<Object, FixtureError> {
    let invalid = |message: String| FixtureError::Invalid {
        file: file.to_string(),
        doc: doc_no,
        message,
    };
    let kind = doc
        .get("kind")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("has no \"kind\"; add e.g. kind: Pod".into()))?
        .to_string();
    let api = doc.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let expect_api = |want: &str| -> Result<(), FixtureError> {
        if api == want {
            Ok(())
        } else {
            Err(invalid(format!(
                "{kind} needs apiVersion: {want} (found \"{api}\")"
            )))
        }
    };
    Ok(match kind.as_str() {
        "ConfigMap" => {
            expect_api("v1")?;
            Object::ConfigMap(typed(doc, &kind, invalid)?)
        }
        "Pod" => {
            expect_api("v1")?;
            Object::Pod(typed(doc, &kind, invalid)?)
        }
        "NetworkAttachmentDefinition" => {
            expect_api("k8s.cni.cncf.io/v1")?;
            let nad: super::NetworkAttachmentDefinition = typed(doc, &kind, invalid)?;
            if let Err(e) = serde_json::from_str::<Value>(&nad.spec.config) {
                return Err(invalid(format!(
                    "NetworkAttachmentDefinition {}: spec.config is not JSON: {e}",
                    nad.metadata.name
                )));
            }
            Object::Nad(nad)
        }
        "Nad" | "NetworkAttachmentDefinitions" | "Configmap" | "configmap" | "pod" => {
            return Err(invalid(format!(
                "unknown kind \"{kind}\"; kinds are case-sensitive: ConfigMap, Pod, NetworkAttachmentDefinition"
            )));
        }
        _ => {
            let name = doc
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            Object::Other {
                kind,
                name,
                raw: doc,
            }
        }
    })
}

fn typed<T: DeserializeOwned>(
    doc: Value,
    kind: &str,
    invalid: impl Fn(String) -> FixtureError,
) -> Result<T, FixtureError> {
    serde_path_to_error::deserialize(doc).map_err(|e| {
        let path = e.path().to_string();
        invalid(format!("{kind} field {path}: {}", e.into_inner()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(rel: &str) -> String {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
        std::fs::read_to_string(root.join(rel)).unwrap()
    }

    #[test]
    fn seed_pods_nads_and_configmap_load() {
        let pod = &load_str(&fixture("seed/macvtap-pod-with-mac.yaml"), "p").unwrap()[0];
        let Object::Pod(p) = pod else {
            panic!("{pod:?}")
        };
        assert_eq!(p.metadata.namespace, "default");
        assert_eq!(
            p.extended_resources()["macvtap.network.kubevirt.io/dataplane"],
            1
        );
        assert!(
            p.metadata.annotations["k8s.v1.cni.cncf.io/networks"].contains("02:23:45:67:89:01")
        );
        let Object::Nad(n) = &load_str(&fixture("seed/macvtap-nad.yaml"), "n").unwrap()[0] else {
            panic!()
        };
        assert_eq!(
            n.resource_name(),
            Some("macvtap.network.kubevirt.io/dataplane")
        );
        let Object::ConfigMap(c) =
            &load_str(&fixture("seed/macvtap-deviceplugin-config.yaml"), "c").unwrap()[0]
        else {
            panic!()
        };
        assert!(c.data["DP_MACVTAP_CONF"].contains("\"capacity\" : 50"));
        let ds = &load_str(&fixture("seed/macvtap-daemonset.yaml"), "d").unwrap()[0];
        assert_eq!((ds.kind(), ds.name()), ("DaemonSet", "macvtap-cni"));
    }

    #[test]
    fn typos_name_file_document_and_field() {
        let e = load_str("kind: Pod\napiVersion: v1\nmetadata: {name: p}\nspec: {containers: [{name: c, resources: {limits: 3}}]}\n", "pods.yaml").unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("pods.yaml")
                && msg.contains("document 1")
                && msg.contains("spec.containers[0].resources.limits"),
            "{msg}"
        );
        let e = load_str("---\nkind: ConfigMap\napiVersion: v1\nmetadata: {name: a}\n---\nkind: Nad\napiVersion: v1\n", "f.yaml").unwrap_err();
        assert!(
            e.to_string().contains("document 2")
                && e.to_string().contains("NetworkAttachmentDefinition"),
            "{e}"
        );
        let e = load_str(
            "kind: Pod\napiVersion: apps/v1\nmetadata: {name: p}\nspec: {containers: []}\n",
            "f.yaml",
        )
        .unwrap_err();
        assert!(e.to_string().contains("apiVersion: v1"), "{e}");
        let e = load_str("kind: NetworkAttachmentDefinition\napiVersion: k8s.cni.cncf.io/v1\nmetadata: {name: nad1}\nspec: {config: '{\"type\": }'}\n", "f.yaml").unwrap_err();
        assert!(e.to_string().contains("spec.config is not JSON"), "{e}");
        let e = load_str("kind: [unclosed\n", "f.yaml").unwrap_err();
        assert!(
            e.to_string().contains("f.yaml") && e.to_string().contains("not valid YAML"),
            "{e}"
        );
    }

    #[test]
    fn the_seeds_broken_configmap_still_loads_as_yaml() {
        // The breakage is inside DP_MACVTAP_CONF (JSON); the device plugin reports it.
        let Object::ConfigMap(c) = &load_str(
            &fixture("bad/seed-macvtap-config-master-trailing-comma.yaml"),
            "c",
        )
        .unwrap()[0] else {
            panic!()
        };
        assert!(c.data["DP_MACVTAP_CONF"].contains("},\n]"));
    }
}
