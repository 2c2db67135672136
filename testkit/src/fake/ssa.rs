//! Server-side apply as the fake API server plays it: every field of an object is
//! owned by the field managers that set it (`metadata.managedFields`, `FieldsV1`);
//! applying a field another manager owns with a different value is a conflict (409)
//! unless the apply forces. Lists are atomic (one field), as with `x-kubernetes-list-type`
//! unset; a manager's fields are replaced by what it applies last.

use serde_json::{Map, Value, json};

/// A field's path from the object's root: `["spec", "template", "metadata"]`.
pub type Path = Vec<String>;

/// A field another manager owns and the apply would change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    pub manager: String,
    pub field: String,
}

/// `.spec.replicas`: a path as the API server prints it in conflicts.
pub fn dotted(path: &[String]) -> String {
    path.iter().map(|p| format!(".{p}")).collect()
}

/// The fields a document sets: its leaves (scalars, lists, empty maps), without the
/// identity fields every apply carries.
pub fn leaves(doc: &Value) -> Vec<Path> {
    fn walk(v: &Value, at: &mut Path, out: &mut Vec<Path>) {
        match v {
            Value::Object(m) if !m.is_empty() => {
                for (k, child) in m {
                    at.push(k.clone());
                    walk(child, at, out);
                    at.pop();
                }
            }
            _ => out.push(at.clone()),
        }
    }
    let mut out = Vec::new();
    walk(doc, &mut Vec::new(), &mut out);
    let identity = |p: &Path| {
        matches!(
            p.iter().map(String::as_str).collect::<Vec<_>>().as_slice(),
            ["apiVersion"]
                | ["kind"]
                | ["metadata", "name"]
                | ["metadata", "namespace"]
                | ["status", ..]
                | ["metadata", "managedFields", ..]
        )
    };
    out.retain(|p| !identity(p));
    out
}

/// `FieldsV1` of a set of paths: `{"f:spec": {"f:replicas": {}}}`.
pub fn fields_v1(paths: &[Path]) -> Value {
    let mut root = Map::new();
    for path in paths {
        let mut node = &mut root;
        for part in path {
            node = node
                .entry(format!("f:{part}"))
                .or_insert_with(|| json!({}))
                .as_object_mut()
                .expect("fieldsV1 nodes are maps");
        }
    }
    Value::Object(root)
}

/// The paths a `FieldsV1` names (its leaves).
pub fn paths_of(fields: &Value) -> Vec<Path> {
    fn walk(v: &Value, at: &mut Path, out: &mut Vec<Path>) {
        match v.as_object() {
            Some(m) if !m.is_empty() => {
                for (k, child) in m {
                    let Some(name) = k.strip_prefix("f:") else {
                        continue; // "." and key/value selectors: not played here
                    };
                    at.push(name.to_string());
                    walk(child, at, out);
                    at.pop();
                }
            }
            _ => out.push(at.clone()),
        }
    }
    let mut out = Vec::new();
    walk(fields, &mut Vec::new(), &mut out);
    out
}

/// The managers of an object and the fields each owns, as stored.
pub fn managers(obj: &Value) -> Vec<(String, Vec<Path>)> {
    obj["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            (
                e["manager"].as_str().unwrap_or("").to_string(),
                paths_of(&e["fieldsV1"]),
            )
        })
        .collect()
}

fn set_managers(obj: &mut Value, managers: &[(String, String, Vec<Path>)], api_version: &str) {
    let entries: Vec<Value> = managers
        .iter()
        .filter(|(_, _, paths)| !paths.is_empty())
        .map(|(manager, operation, paths)| {
            json!({"manager": manager, "operation": operation, "apiVersion": api_version,
                "fieldsType": "FieldsV1", "fieldsV1": fields_v1(paths)})
        })
        .collect();
    obj["metadata"]["managedFields"] = Value::Array(entries);
}

fn value_at<'a>(v: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, k| v.get(k))
}

/// One path is the other or inside it.
fn overlaps(a: &[String], b: &[String]) -> bool {
    let n = a.len().min(b.len());
    a[..n] == b[..n]
}

/// `base` with `patch`'s maps merged in; lists and scalars replaced.
fn merge(base: &mut Value, patch: &Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                merge(b.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (b, p) => *b = p.clone(),
    }
}

/// What `manager` records for a create or update that is not an apply (POST).
pub fn record_update(obj: &mut Value, manager: &str) {
    let api_version = obj["apiVersion"].as_str().unwrap_or("v1").to_string();
    let paths = leaves(obj);
    set_managers(
        obj,
        &[(manager.into(), "Update".into(), paths)],
        &api_version,
    );
}

/// Applies `doc` as `manager` onto `existing` (none: a create). The result, or the
/// fields other managers own that the apply would change (without `force`).
pub fn apply(
    existing: Option<&Value>,
    doc: &Value,
    manager: &str,
    force: bool,
) -> Result<Value, Vec<Conflict>> {
    let api_version = doc["apiVersion"].as_str().unwrap_or("v1").to_string();
    let applied = leaves(doc);
    let Some(old) = existing else {
        let mut obj = doc.clone();
        set_managers(
            &mut obj,
            &[(manager.into(), "Apply".into(), applied)],
            &api_version,
        );
        return Ok(obj);
    };
    let stored = old["metadata"]["managedFields"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut owners: Vec<(String, String, Vec<Path>)> = stored
        .iter()
        .map(|e| {
            (
                e["manager"].as_str().unwrap_or("").to_string(),
                e["operation"].as_str().unwrap_or("Update").to_string(),
                paths_of(&e["fieldsV1"]),
            )
        })
        .collect();
    let mut conflicts = Vec::new();
    for (other, _, owned) in owners.iter().filter(|(m, _, _)| m != manager) {
        for field in &applied {
            let clash = owned
                .iter()
                .any(|o| overlaps(o, field) && value_at(old, o) != value_at(doc, o));
            if clash {
                conflicts.push(Conflict {
                    manager: other.clone(),
                    field: dotted(field),
                });
            }
        }
    }
    if !conflicts.is_empty() && !force {
        return Err(conflicts);
    }
    // Forced (or no clash): the applied fields leave every other manager.
    for (other, _, owned) in owners.iter_mut().filter(|(m, _, _)| m != manager) {
        let _ = other;
        owned.retain(|o| !applied.iter().any(|f| overlaps(o, f)));
    }
    owners.retain(|(m, op, _)| !(m == manager && op == "Apply"));
    owners.push((manager.into(), "Apply".into(), applied));
    let mut obj = old.clone();
    let mut patch = doc.clone();
    if let Some(meta) = patch["metadata"].as_object_mut() {
        meta.remove("managedFields");
    }
    merge(&mut obj, &patch);
    set_managers(&mut obj, &owners, &api_version);
    Ok(obj)
}

/// The API server's message for a refused apply, e.g. `Apply failed with 1 conflict:
/// conflict with "kubectl" using apps/v1: .spec.replicas`.
pub fn conflict_message(conflicts: &[Conflict], api_version: &str) -> String {
    let n = conflicts.len();
    let mut by_manager: Vec<(&str, Vec<&str>)> = Vec::new();
    for c in conflicts {
        match by_manager.iter_mut().find(|(m, _)| *m == c.manager) {
            Some((_, fields)) => fields.push(&c.field),
            None => by_manager.push((&c.manager, vec![&c.field])),
        }
    }
    let parts: Vec<String> = by_manager
        .iter()
        .map(|(m, fields)| match fields.as_slice() {
            [one] => format!("conflict with \"{m}\" using {api_version}: {one}"),
            many => format!(
                "conflicts with \"{m}\" using {api_version}:\n- {}",
                many.join("\n- ")
            ),
        })
        .collect();
    format!(
        "Apply failed with {n} conflict{}: {}",
        if n == 1 { "" } else { "s" },
        parts.join("\n")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cm(data: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c", "namespace": "n"}, "data": data})
    }

    #[test]
    fn a_field_owned_by_another_manager_conflicts_unless_forced_or_equal() {
        let made = apply(None, &cm(json!({"a": "1", "b": "2"})), "kubectl", false).unwrap();
        assert_eq!(managers(&made)[0].0, "kubectl");
        // The same values: shared ownership, no conflict.
        let same = apply(Some(&made), &cm(json!({"a": "1"})), "secnet", false).unwrap();
        assert_eq!(managers(&same).len(), 2);
        let err = apply(Some(&made), &cm(json!({"a": "9"})), "secnet", false).unwrap_err();
        assert_eq!(
            err,
            [Conflict {
                manager: "kubectl".into(),
                field: ".data.a".into()
            }]
        );
        assert_eq!(
            conflict_message(&err, "v1"),
            "Apply failed with 1 conflict: conflict with \"kubectl\" using v1: .data.a"
        );
        let forced = apply(Some(&made), &cm(json!({"a": "9"})), "secnet", true).unwrap();
        assert_eq!(forced["data"], json!({"a": "9", "b": "2"}));
        let owners = managers(&forced);
        assert_eq!(
            owners[0],
            ("kubectl".into(), vec![vec!["data".to_string(), "b".into()]])
        );
        assert_eq!(owners[1].0, "secnet");
    }

    #[test]
    fn fields_v1_round_trips_and_skips_identity_fields() {
        let doc = cm(json!({"a": "1"}));
        let paths = leaves(&doc);
        assert_eq!(paths, [vec!["data".to_string(), "a".into()]]);
        assert_eq!(paths_of(&fields_v1(&paths)), paths);
    }
}
