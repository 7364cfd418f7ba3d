//! Applying the checked-in CRDs to a test cluster.

use std::path::Path;
use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, ResourceExt};

use crate::Error;
use crate::wait::eventually;

/// Server-side applies every `*.yaml` CRD in `dir` and waits until each is Established;
/// returns their names.
pub async fn apply_dir(client: &Client, dir: &Path) -> Result<Vec<String>, Error> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(format!("read {}", dir.display()), e))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    let mut documents = Vec::new();
    for path in &files {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::io(format!("read {}", path.display()), e))?;
        documents.push((path.display().to_string(), text));
    }
    apply(client, &documents).await
}

/// Server-side applies CRDs given as `(origin, YAML)` (the origin names the document in
/// errors) and waits until each is Established; returns their names.
pub async fn apply(client: &Client, documents: &[(String, String)]) -> Result<Vec<String>, Error> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let mut names = Vec::new();
    for (origin, text) in documents {
        let crd: CustomResourceDefinition =
            serde_saphyr::from_str(text).map_err(|e| Error::Setup(format!("{origin}: {e}")))?;
        let name = crd.name_any();
        api.patch(
            &name,
            &PatchParams::apply("cdi-testenv").force(),
            &Patch::Apply(&crd),
        )
        .await
        .map_err(|e| Error::Setup(format!("the apiserver refused {origin}: {e}")))?;
        names.push(name);
    }
    for name in &names {
        eventually(
            &format!("CRD {name} to be Established"),
            Duration::from_secs(60),
            || async {
                let crd = api.get(name).await.ok()?;
                crd.status?
                    .conditions?
                    .iter()
                    .any(|c| c.type_ == "Established" && c.status == "True")
                    .then_some(())
            },
        )
        .await?;
    }
    Ok(names)
}
