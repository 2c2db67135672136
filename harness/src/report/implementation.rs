//! The implementation under test as people read it: one row per plugin (its file,
//! why that file, the CNI versions it claims) and the run's other facts, read from
//! the `implementation` object of report.json or compare.json.

use serde_json::Value;

/// One plugin of the implementation under test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginRow {
    pub(crate) name: String,
    /// The binary (or device plugin command); empty when it is missing.
    pub(crate) path: String,
    /// Why that file: bundled, --cni-bin-dir, --plugin, --device-plugin.
    pub(crate) from: String,
    /// The CNI versions it claims (its VERSION answer), or why it is missing.
    pub(crate) versions: String,
}

/// Every plugin in `implementation.plugins`, in its order.
pub fn plugins(implementation: &Value) -> Vec<PluginRow> {
    let Some(map) = implementation["plugins"].as_object() else {
        return Vec::new();
    };
    map.iter()
        .map(|(name, p)| {
            let versions = match (&p["cni_versions"], &p["missing"]) {
                (Value::Array(v), _) => v
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(", "),
                (_, Value::String(missing)) => format!("missing: {missing}"),
                _ => String::new(),
            };
            PluginRow {
                name: name.clone(),
                path: p["path"].as_str().unwrap_or_default().to_string(),
                from: p["from"].as_str().unwrap_or_default().to_string(),
                versions,
            }
        })
        .collect()
}

/// The other facts of the implementation (run id, bin dirs, image, components),
/// as `key: value` text; what the plugin rows already say is left out.
pub fn facts(implementation: &Value) -> Vec<(String, String)> {
    let Some(map) = implementation.as_object() else {
        return Vec::new();
    };
    let has_plugins = map.contains_key("plugins");
    map.iter()
        .filter(|(k, _)| {
            // The plugin rows say these already.
            let repeated = has_plugins && matches!(k.as_str(), "macvtap" | "device_plugin");
            !(repeated || matches!(k.as_str(), "plugins" | "run_id"))
        })
        .map(|(k, v)| {
            let text = match v {
                Value::String(s) => s.clone(),
                Value::Array(items) => items
                    .iter()
                    .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_string))
                    .collect::<Vec<_>>()
                    .join(", "),
                other => other.to_string(),
            };
            (k.clone(), text)
        })
        .collect()
}

/// The run id, when the implementation records it.
pub fn run_id(implementation: &Value) -> Option<&str> {
    implementation["run_id"].as_str()
}

/// One line: `macvtap=PATH (bundled), ovs=…`, for headers and properties.
pub fn summary(implementation: &Value) -> String {
    let rows = plugins(implementation);
    if rows.is_empty() {
        return facts(implementation)
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", ");
    }
    rows.iter()
        .map(|p| {
            if p.path.is_empty() {
                format!("{}: {}", p.name, p.versions)
            } else {
                format!("{}={} ({})", p.name, p.path, p.from)
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn plugins_and_facts_read_what_conform_writes() {
        let imp = json!({
            "cni_bin_dir": "/opt/secnet/bin",
            "device_plugin": "/opt/secnet/bin/macvtap-deviceplugin",
            "macvtap": "/opt/secnet/bin/macvtap",
            "run_id": "sn0a1b2c",
            "plugins": {
                "macvtap": {"path": "/opt/secnet/bin/macvtap", "from": "bundled", "cni_versions": ["0.3.1", "1.0.0"]},
                "ovs": {"path": null, "from": "--cni-bin-dir", "missing": "not in /x"},
                "macvtap-deviceplugin": {"path": "/opt/secnet/bin/macvtap-deviceplugin", "from": "bundled"}
            }
        });
        let rows = plugins(&imp);
        let row = |name: &str| rows.iter().find(|r| r.name == name).unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(row("macvtap").versions, "0.3.1, 1.0.0");
        assert_eq!(row("ovs").versions, "missing: not in /x");
        assert_eq!(row("ovs").path, "");
        assert_eq!(row("macvtap-deviceplugin").from, "bundled");
        assert_eq!(
            facts(&imp),
            [("cni_bin_dir".to_string(), "/opt/secnet/bin".to_string())]
        );
        assert_eq!(run_id(&imp), Some("sn0a1b2c"));
        let line = summary(&imp);
        assert!(
            line.starts_with("macvtap=/opt/secnet/bin/macvtap (bundled), ")
                && line.ends_with("ovs: missing: not in /x"),
            "{line}"
        );
        let real = json!({"run_id": "sn1", "image": "img", "components": ["multus", "macvtap"]});
        assert_eq!(summary(&real), "components=multus, macvtap, image=img");
    }
}
