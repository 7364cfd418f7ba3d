//! The CEL rules in the generated CRDs accept upstream's valid manifests and refuse the ones
//! upstream's webhook refuses, with the intended message.
//!
//! Rules are evaluated client-side by kube-cel (the same CEL dialect and Kubernetes extension
//! functions as the API server) against each CRD's generated `openAPIV3Schema`.

mod common;

use cdi_crds::generate;
use serde_json::{Value, json};

fn schema_for(kind: &str) -> Value {
    let crd = generate::crds()
        .into_iter()
        .find(|crd| crd.spec.names.kind == kind)
        .unwrap_or_else(|| panic!("no CRD for {kind}"));
    let schema = crd.spec.versions[0]
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.clone())
        .expect("CRD has a schema");
    serde_json::to_value(schema).expect("schema serialises")
}

/// The messages of every rule `object` breaks.
fn violations(kind: &str, object: &Value) -> Vec<String> {
    match kube_cel::validate(&schema_for(kind), object, None) {
        Ok(()) => Vec::new(),
        Err(errors) => errors.iter().map(|e| e.to_string()).collect(),
    }
}

/// Asserts `spec` is refused with exactly one violation, which contains `expected`.
fn assert_refused(spec: Value, expected: &str) {
    let found = violations("DataVolume", &dv(spec));
    assert!(
        found.len() == 1 && found[0].contains(expected),
        "expected one violation containing {expected:?}, got {found:?}"
    );
}

fn dv(spec: Value) -> Value {
    json!({
        "apiVersion": "cdi.kubevirt.io/v1beta1",
        "kind": "DataVolume",
        "metadata": {"name": "dv", "namespace": "default"},
        "spec": spec,
    })
}

fn storage() -> Value {
    json!({"resources": {"requests": {"storage": "1Gi"}}})
}

fn with_source(source: Value) -> Value {
    json!({"source": source, "storage": storage()})
}

mod valid_manifests_pass {
    use super::*;

    #[test]
    fn every_fixture_passes_its_kinds_rules() {
        for name in common::fixture_names() {
            let object = common::fixture_json(&name);
            let kind = object["kind"]
                .as_str()
                .expect("fixture has a kind")
                .to_owned();
            assert_eq!(violations(&kind, &object), Vec::<String>::new(), "{name}");
        }
    }

    #[test]
    fn uppercase_checksum_and_scheme_pass() {
        let digest = "9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08";
        let spec = with_source(json!({"http": {
            "url": "HTTPS://images.example.com/disk.img",
            "checksum": format!("SHA256:{digest}"),
        }}));
        assert_eq!(violations("DataVolume", &dv(spec)), Vec::<String>::new());
    }

    #[test]
    fn archive_over_http_passes() {
        let mut spec = with_source(json!({"http": {"url": "http://x/files.tar"}}));
        spec["contentType"] = json!("archive");
        assert_eq!(violations("DataVolume", &dv(spec)), Vec::<String>::new());
    }

    #[test]
    fn registry_image_stream_with_node_pull_passes() {
        let spec =
            with_source(json!({"registry": {"imageStream": "fedora", "pullMethod": "node"}}));
        assert_eq!(violations("DataVolume", &dv(spec)), Vec::<String>::new());
    }
}

mod source_and_claim {
    use super::*;

    #[test]
    fn missing_source_and_source_ref_is_refused() {
        assert_refused(json!({"storage": storage()}), "no data source");
    }

    #[test]
    fn source_and_source_ref_together_are_refused() {
        let spec = json!({
            "source": {"blank": {}},
            "sourceRef": {"kind": "DataSource", "name": "golden"},
            "storage": storage(),
        });
        assert_refused(spec, "source and sourceRef are both set");
    }

    #[test]
    fn missing_claim_spec_is_refused() {
        assert_refused(json!({"source": {"blank": {}}}), "no claim spec");
    }

    #[test]
    fn pvc_and_storage_together_are_refused() {
        let spec = json!({
            "source": {"blank": {}},
            "pvc": {"accessModes": ["ReadWriteOnce"]},
            "storage": storage(),
        });
        assert_refused(spec, "duplicate storage definition");
    }

    #[test]
    fn empty_source_is_refused() {
        assert_refused(with_source(json!({})), "no source kind is set");
    }

    #[test]
    fn two_source_kinds_are_refused() {
        let source = json!({"blank": {}, "http": {"url": "http://x/y"}});
        assert_refused(with_source(source), "more than one source kind is set");
    }

    #[test]
    fn source_ref_to_a_pvc_is_refused() {
        let spec = json!({
            "sourceRef": {"kind": "PersistentVolumeClaim", "name": "disk"},
            "storage": storage(),
        });
        assert_refused(spec, "sourceRef.kind must be DataSource");
    }
}

mod content_type {
    use super::*;

    #[test]
    fn unknown_content_type_is_refused() {
        let mut spec = with_source(json!({"http": {"url": "http://x/y"}}));
        spec["contentType"] = json!("zip");
        assert_refused(spec, "contentType must be 'kubevirt'");
    }

    #[test]
    fn archive_with_blank_or_registry_is_refused() {
        for source in [
            json!({"blank": {}}),
            json!({"registry": {"url": "docker://quay.io/x"}}),
        ] {
            let mut spec = with_source(source);
            spec["contentType"] = json!("archive");
            assert_refused(spec, "contentType archive cannot be used");
        }
    }
}

mod http {
    use super::*;

    #[test]
    fn empty_url_is_refused() {
        assert_refused(with_source(json!({"http": {"url": ""}})), "url is empty");
    }

    #[test]
    fn non_http_scheme_is_refused() {
        let source = json!({"http": {"url": "ftp://example.com/disk.img"}});
        assert_refused(
            with_source(source),
            "url must start with http:// or https://",
        );
    }

    #[test]
    fn malformed_checksums_are_refused() {
        for checksum in [
            "sha256:abc",                                      // too short
            "crc32:deadbeef",                                  // unknown algorithm
            "9f86d081884c7d659a2feaa0c55ad015",                // no algorithm
            "md5:9f86d081884c7d659a2feaa0c55ad01z",            // not hex
            "sha1:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b", // too long
        ] {
            let source = json!({"http": {"url": "http://x/y", "checksum": checksum}});
            assert_refused(with_source(source), "checksum must be ALGORITHM:HEX");
        }
    }
}

mod registry {
    use super::*;

    #[test]
    fn registry_without_url_or_image_stream_is_refused() {
        assert_refused(
            with_source(json!({"registry": {}})),
            "neither url nor imageStream",
        );
    }

    #[test]
    fn registry_with_url_and_image_stream_is_refused() {
        let registry = json!({"url": "docker://x", "imageStream": "s", "pullMethod": "node"});
        assert_refused(
            with_source(json!({"registry": registry})),
            "url and imageStream are both set",
        );
    }

    #[test]
    fn image_stream_without_node_pull_is_refused() {
        let source = json!({"registry": {"imageStream": "fedora"}});
        assert_refused(with_source(source), "imageStream needs pullMethod: node");
    }
}

mod migration_sources {
    use super::*;

    #[test]
    fn imageio_without_secret_is_refused() {
        let source = json!({"imageio": {
            "url": "https://engine/ovirt-engine/api", "diskId": "d", "certConfigMap": "ca",
        }});
        assert_refused(with_source(source), "secretRef is required");
    }

    #[test]
    fn imageio_without_trust_is_refused() {
        let source = json!({"imageio": {
            "url": "https://engine/ovirt-engine/api", "diskId": "d", "secretRef": "s",
        }});
        assert_refused(with_source(source), "set certConfigMap");
    }

    #[test]
    fn vddk_without_thumbprint_is_refused() {
        let source = json!({"vddk": {
            "url": "https://vcenter", "uuid": "u", "backingFile": "[ds] vm.vmdk", "secretRef": "s",
        }});
        assert_refused(with_source(source), "thumbprint is required");
    }
}

mod other_kinds {
    use super::*;

    #[test]
    fn data_import_cron_template_is_checked_like_a_datavolume() {
        let mut cron = common::fixture_json("dataimportcron.yaml");
        cron["spec"]["template"]["spec"]["pvc"] = json!({"accessModes": ["ReadWriteOnce"]});
        let found = violations("DataImportCron", &cron);
        assert!(
            found.len() == 1 && found[0].contains("duplicate storage definition"),
            "{found:?}"
        );
    }

    #[test]
    fn data_import_cron_template_with_source_ref_is_refused() {
        let mut cron = common::fixture_json("dataimportcron.yaml");
        let template = &mut cron["spec"]["template"]["spec"];
        template["sourceRef"] = json!({"kind": "DataSource", "name": "other"});
        template
            .as_object_mut()
            .expect("spec is an object")
            .remove("source");
        let found = violations("DataImportCron", &cron);
        assert!(
            found.len() == 1 && found[0].contains("template.spec must not set sourceRef"),
            "{found:?}"
        );
    }

    #[test]
    fn data_import_cron_with_bad_garbage_collect_or_count_is_refused() {
        let mut cron = common::fixture_json("dataimportcron.yaml");
        cron["spec"]["garbageCollect"] = json!("Sometimes");
        cron["spec"]["importsToKeep"] = json!(-1);
        let found = violations("DataImportCron", &cron);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(
            found.iter().any(|m| m.contains("garbageCollect must be")),
            "{found:?}"
        );
        assert!(
            found.iter().any(|m| m.contains("importsToKeep must be")),
            "{found:?}"
        );
    }

    #[test]
    fn volume_import_source_with_two_kinds_is_refused() {
        let mut source = common::fixture_json("volumeimportsource.yaml");
        source["spec"]["source"]["blank"] = json!({});
        let found = violations("VolumeImportSource", &source);
        assert!(
            found.len() == 1 && found[0].contains("more than one source kind"),
            "{found:?}"
        );
    }

    #[test]
    fn storage_profile_with_unknown_access_mode_is_refused() {
        let mut profile = common::fixture_json("storageprofile.yaml");
        profile["spec"]["claimPropertySets"][0]["accessModes"] = json!(["ReadWriteSometimes"]);
        let found = violations("StorageProfile", &profile);
        assert!(
            found.len() == 1 && found[0].contains("unknown access mode"),
            "{found:?}"
        );
    }
}
