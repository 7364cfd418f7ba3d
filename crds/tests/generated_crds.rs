//! The CRD YAML checked in under `deploy/crds/` is exactly what the types generate, and it reads
//! back as the same CRDs.

use std::path::{Path, PathBuf};

use cdi_crds::generate;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;

const REFRESH: &str = "run `cargo run -p cdi-crds --bin crdgen` to refresh deploy/crds";

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/crds")
}

#[test]
fn checked_in_crds_match_the_types() {
    let rendered = generate::render_all().expect("every CRD renders");
    let mut outdated = Vec::new();
    for (file, yaml) in &rendered {
        let on_disk = std::fs::read_to_string(deploy_dir().join(file)).ok();
        if on_disk.as_deref() != Some(yaml.as_str()) {
            outdated.push(file.clone());
        }
    }
    assert!(outdated.is_empty(), "out of date: {outdated:?}; {REFRESH}");
}

#[test]
fn no_stale_crd_files_are_checked_in() {
    let rendered = generate::render_all().expect("every CRD renders");
    let stale: Vec<String> = std::fs::read_dir(deploy_dir())
        .expect("deploy/crds is readable")
        .map(|entry| entry.expect("directory entry").file_name())
        .map(|name| name.to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".cdi.kubevirt.io.yaml"))
        .filter(|name| !rendered.iter().any(|(file, _)| file == name))
        .collect();
    assert!(
        stale.is_empty(),
        "no longer generated: {stale:?}; {REFRESH}"
    );
}

#[test]
fn generated_yaml_reads_back_as_the_same_crds() {
    for crd in generate::crds() {
        let yaml = generate::to_yaml(&crd).expect("renders");
        let parsed: CustomResourceDefinition =
            serde_saphyr::from_str(&yaml).expect("generated YAML parses");
        assert_eq!(parsed, crd, "{}", generate::file_name(&crd));
    }
}

#[test]
fn file_names_are_plural_dot_group() {
    let names: Vec<String> = generate::crds().iter().map(generate::file_name).collect();
    assert_eq!(
        names,
        [
            "datavolumes.cdi.kubevirt.io.yaml",
            "datasources.cdi.kubevirt.io.yaml",
            "dataimportcrons.cdi.kubevirt.io.yaml",
            "storageprofiles.cdi.kubevirt.io.yaml",
            "cdiconfigs.cdi.kubevirt.io.yaml",
            "cdis.cdi.kubevirt.io.yaml",
            "volumeimportsources.cdi.kubevirt.io.yaml",
            "volumeuploadsources.cdi.kubevirt.io.yaml",
            "volumeclonesources.cdi.kubevirt.io.yaml",
        ]
    );
}
