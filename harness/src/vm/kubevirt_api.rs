//! What secnet would ask of KubeVirt's own API on a real cluster to move and change
//! a VM (the netns cluster does both itself: [`super::migrate`], [`super::hotplug`]):
//!
//! - a live migration is a `VirtualMachineInstanceMigration` naming the VMI, its
//!   target node pinned through `addedNodeSelector` (it can only narrow what the
//!   VM allows, never widen it);
//! - an interface is hot-plugged by a JSON patch of the `VirtualMachine` that adds
//!   the interface and its multus network to the template, and unplugged by one
//!   that sets the interface's `state: absent` (KubeVirt applies either to the
//!   running VMI, by a migration where the binding needs it).
//!
//! Only the objects so far: no KubeVirt runs where this was written, so none of it
//! has met a real one; the tests hold it to KubeVirt's OpenAPI document.

use serde_json::{Value, json};

use super::kubevirt::{BindingKind, KubevirtError, NetworkSource, VirtualMachine, VmInterface};

/// The template's spec inside a `VirtualMachine`, as a JSON pointer.
const TEMPLATE: &str = "/spec/template/spec";

/// A `VirtualMachineInstanceMigration` of `vm`'s instance to `target_node`.
pub fn migration(vm: &VirtualMachine, name: &str, target_node: &str) -> Value {
    json!({
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachineInstanceMigration",
        "metadata": {"name": name, "namespace": vm.namespace},
        "spec": {
            "vmiName": vm.name,
            "addedNodeSelector": {"kubernetes.io/hostname": target_node},
        }
    })
}

/// The interface as KubeVirt's template lists it.
fn interface_value(iface: &VmInterface) -> Result<Value, KubevirtError> {
    let mut v = json!({"name": iface.name});
    match &iface.binding {
        BindingKind::Bridge => v["bridge"] = json!({}),
        // The macvtap binding is a binding plugin since KubeVirt v1.3.
        BindingKind::Macvtap => v["binding"] = json!({"name": "macvtap"}),
        other => {
            return Err(KubevirtError::NotHotpluggable {
                interface: iface.name.clone(),
                why: format!(
                    "binding {other:?}: KubeVirt hot-plugs bridge and binding-plugin interfaces"
                ),
            });
        }
    }
    if let Some(mac) = &iface.mac {
        v["macAddress"] = Value::from(mac.clone());
    }
    Ok(v)
}

fn only_vms(vm: &VirtualMachine, iface: &str) -> Result<(), KubevirtError> {
    if vm.kind == "VirtualMachine" {
        return Ok(());
    }
    Err(KubevirtError::NotHotpluggable {
        interface: iface.to_string(),
        why: format!(
            "{} {} is a {}: interfaces are hot-plugged by patching a VirtualMachine",
            vm.kind, vm.name, vm.kind
        ),
    })
}

/// The JSON patch (RFC 6902) that hot-plugs `iface` (a multus network) into `vm`.
pub fn plug_patch(vm: &VirtualMachine, iface: &VmInterface) -> Result<Value, KubevirtError> {
    only_vms(vm, &iface.name)?;
    let NetworkSource::Multus { namespace, name } = &iface.network else {
        return Err(KubevirtError::NotHotpluggable {
            interface: iface.name.clone(),
            why: "only multus networks are hot-plugged".into(),
        });
    };
    Ok(json!([
        {
            "op": "add",
            "path": format!("{TEMPLATE}/domain/devices/interfaces/-"),
            "value": interface_value(iface)?,
        },
        {
            "op": "add",
            "path": format!("{TEMPLATE}/networks/-"),
            "value": {"name": iface.name, "multus": {"networkName": format!("{namespace}/{name}")}},
        },
    ]))
}

/// The JSON patch that unplugs interface `iface` of `vm`: its `state` set to
/// `absent`, guarded by a test that the index still names it.
pub fn unplug_patch(vm: &VirtualMachine, iface: &str) -> Result<Value, KubevirtError> {
    only_vms(vm, iface)?;
    let i = vm
        .interfaces
        .iter()
        .position(|x| x.name == iface)
        .ok_or_else(|| KubevirtError::NoInterface(iface.to_string()))?;
    let at = format!("{TEMPLATE}/domain/devices/interfaces/{i}");
    Ok(json!([
        {"op": "test", "path": format!("{at}/name"), "value": iface},
        {"op": "add", "path": format!("{at}/state"), "value": "absent"},
    ]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::kubevirt::{Swagger, swagger_path};

    fn swagger() -> Option<Swagger> {
        let path = swagger_path();
        if !crate::prereq::require(
            "vm::kubevirt_api objects against KubeVirt's OpenAPI",
            path.is_none().then(|| {
                "kubevirt-swagger.json not found (shared/schemas next to the repository or SECNET_KUBEVIRT_SWAGGER)".to_string()
            }),
        ) {
            return None;
        }
        Some(Swagger::load(&path.unwrap()).unwrap())
    }

    fn vm() -> VirtualMachine {
        VirtualMachine::from_value(&json!({
            "apiVersion": "kubevirt.io/v1",
            "kind": "VirtualMachine",
            "metadata": {"name": "vm-a", "namespace": "run-1"},
            "spec": {"runStrategy": "Always", "template": {"spec": {
                "domain": {"devices": {"interfaces": [
                    {"name": "dataplane", "binding": {"name": "macvtap"}}
                ]}, "resources": {"requests": {"memory": "128Mi"}}},
                "networks": [{"name": "dataplane", "multus": {"networkName": "run-1/dataplane"}}]
            }}}
        }))
        .unwrap()
    }

    /// RFC 6902 `add` (an object member, an array index or `-`) and `test`.
    fn apply(doc: &mut Value, patch: &Value) {
        for op in patch.as_array().unwrap() {
            let path = op["path"].as_str().unwrap();
            let (parent, last) = path.rsplit_once('/').unwrap();
            match op["op"].as_str().unwrap() {
                "test" => assert_eq!(doc.pointer(path), Some(&op["value"]), "{path}"),
                "add" => match doc.pointer_mut(parent).unwrap() {
                    Value::Array(a) if last == "-" => a.push(op["value"].clone()),
                    Value::Array(a) => a.insert(last.parse().unwrap(), op["value"].clone()),
                    Value::Object(o) => {
                        o.insert(last.to_string(), op["value"].clone());
                    }
                    other => panic!("add under {other}"),
                },
                other => panic!("op {other}"),
            }
        }
    }

    fn hot() -> VmInterface {
        VmInterface {
            name: "hot".into(),
            binding: BindingKind::Bridge,
            mac: Some("02:00:00:00:00:0b".into()),
            network: NetworkSource::Multus {
                namespace: "run-1".into(),
                name: "ovs-vlan-100".into(),
            },
        }
    }

    #[test]
    fn the_migration_names_the_vmi_and_pins_the_target_node() {
        let m = migration(&vm(), "vm-a-mig-1", "node2");
        assert_eq!(m["spec"]["vmiName"], "vm-a");
        assert_eq!(m["metadata"]["namespace"], "run-1");
        assert_eq!(
            m["spec"]["addedNodeSelector"]["kubernetes.io/hostname"],
            "node2"
        );
        let Some(s) = swagger() else { return };
        assert_eq!(
            s.validate("v1.VirtualMachineInstanceMigration", &m),
            Vec::<String>::new()
        );
    }

    #[test]
    fn a_plug_adds_the_interface_and_its_network_and_an_unplug_marks_it_absent() {
        let before = vm();
        let mut raw = before.raw.clone();
        apply(&mut raw, &plug_patch(&before, &hot()).unwrap());
        let plugged = VirtualMachine::from_value(&raw).unwrap();
        assert_eq!(plugged.interfaces.len(), 2);
        assert_eq!(plugged.interfaces[1], hot());
        let swagger = swagger();
        if let Some(s) = &swagger {
            assert_eq!(s.validate("v1.VirtualMachine", &raw), Vec::<String>::new());
        }
        apply(&mut raw, &unplug_patch(&plugged, "hot").unwrap());
        assert_eq!(
            raw.pointer("/spec/template/spec/domain/devices/interfaces/1/state"),
            Some(&json!("absent"))
        );
        // The first interface is left alone.
        assert_eq!(
            raw.pointer("/spec/template/spec/domain/devices/interfaces/0/state"),
            None
        );
        if let Some(s) = &swagger {
            assert_eq!(s.validate("v1.VirtualMachine", &raw), Vec::<String>::new());
        }
    }

    #[test]
    fn what_kubevirt_cannot_hot_plug_is_refused_naming_why() {
        let mut masq = hot();
        masq.binding = BindingKind::Masquerade;
        let e = plug_patch(&vm(), &masq).unwrap_err().to_string();
        assert!(e.contains("hot") && e.contains("Masquerade"), "{e}");
        let mut pod = hot();
        pod.network = NetworkSource::Pod;
        let e = plug_patch(&vm(), &pod).unwrap_err().to_string();
        assert!(e.contains("only multus networks"), "{e}");
        let mut vmi = vm();
        vmi.kind = "VirtualMachineInstance".into();
        let e = unplug_patch(&vmi, "dataplane").unwrap_err().to_string();
        assert!(e.contains("patching a VirtualMachine"), "{e}");
        assert!(unplug_patch(&vm(), "nope").is_err());
    }
}
