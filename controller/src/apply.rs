//! Server-side apply of an object's annotations and labels by the controller's field manager.
//! An apply owns exactly the keys it names, so each one names every key the manager already
//! owns (read from `managedFields`) with its current value, plus the changes: nothing the
//! manager set before is dropped, and keys other writers own are left alone.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// The keys of `metadata.<field>` (`annotations` or `labels`) that `manager` owns by apply.
pub fn owned_keys(meta: &ObjectMeta, manager: &str, field: &str) -> BTreeSet<String> {
    let field = format!("f:{field}");
    meta.managed_fields
        .iter()
        .flatten()
        .filter(|m| {
            m.manager.as_deref() == Some(manager) && m.operation.as_deref() == Some("Apply")
        })
        .filter_map(|m| m.fields_v1.as_ref())
        .filter_map(|f| f.0.get("f:metadata")?.get(&field)?.as_object())
        .flat_map(|keys| keys.keys())
        .filter_map(|k| k.strip_prefix("f:"))
        .map(str::to_owned)
        .collect()
}

/// The full set `manager` applies for `metadata.<field>`: what it owns, as it is now, with
/// `update` over it; `None` when `update` changes nothing.
pub fn applied_set(
    meta: &ObjectMeta,
    current: Option<&BTreeMap<String, String>>,
    manager: &str,
    field: &str,
    update: &BTreeMap<String, String>,
) -> Option<BTreeMap<String, String>> {
    let empty = BTreeMap::new();
    let current = current.unwrap_or(&empty);
    if update.iter().all(|(k, v)| current.get(k) == Some(v)) {
        return None;
    }
    let mut set: BTreeMap<String, String> = owned_keys(meta, manager, field)
        .into_iter()
        .filter_map(|k| current.get(&k).map(|v| (k, v.clone())))
        .collect();
    set.extend(update.iter().map(|(k, v)| (k.clone(), v.clone())));
    Some(set)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn meta() -> ObjectMeta {
        serde_json::from_value(json!({
            "name": "disk",
            "annotations": {"a": "1", "b": "2", "user": "x"},
            "labels": {"l": "v"},
            "managedFields": [
                {"manager": "cdi-controller", "operation": "Apply", "apiVersion": "v1",
                 "fieldsType": "FieldsV1",
                 "fieldsV1": {"f:metadata": {"f:annotations": {"f:a": {}, "f:b": {}}}}},
                {"manager": "kubectl", "operation": "Update", "apiVersion": "v1",
                 "fieldsType": "FieldsV1",
                 "fieldsV1": {"f:metadata": {"f:annotations": {"f:user": {}},
                                             "f:labels": {"f:l": {}}}}}
            ]
        }))
        .expect("metadata")
    }

    #[test]
    fn only_the_managers_own_apply_keys_count() {
        let m = meta();
        assert_eq!(
            owned_keys(&m, "cdi-controller", "annotations"),
            BTreeSet::from(["a".to_owned(), "b".to_owned()])
        );
        assert!(owned_keys(&m, "cdi-controller", "labels").is_empty());
        assert!(
            owned_keys(&m, "kubectl", "annotations").is_empty(),
            "not by apply"
        );
    }

    #[test]
    fn an_apply_keeps_what_the_manager_owns_and_leaves_others_keys_out() {
        let m = meta();
        let update = BTreeMap::from([
            ("b".to_owned(), "3".to_owned()),
            ("c".to_owned(), "4".to_owned()),
        ]);
        let set = applied_set(
            &m,
            m.annotations.as_ref(),
            "cdi-controller",
            "annotations",
            &update,
        )
        .expect("a change");
        assert_eq!(
            set,
            BTreeMap::from([
                ("a".to_owned(), "1".to_owned()),
                ("b".to_owned(), "3".to_owned()),
                ("c".to_owned(), "4".to_owned()),
            ])
        );
        let same = BTreeMap::from([("a".to_owned(), "1".to_owned())]);
        assert_eq!(
            applied_set(
                &m,
                m.annotations.as_ref(),
                "cdi-controller",
                "annotations",
                &same
            ),
            None
        );
    }
}
