//! Registering admission webhooks served by a local process on 127.0.0.1.
//!
//! kube-apiserver calls a webhook at its `clientConfig.url` or through its
//! `clientConfig.service`; here the manifests of `deploy/` (which name a Service) are applied
//! with the Service replaced by `https://127.0.0.1:<port><path>`, the path kept, and the
//! serving CA as `caBundle`. Everything else (rules, failure policy, ...) is applied as written,
//! so a test exercises the deployed configuration.

use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration, WebhookClientConfig,
};
use kube::Client;
use kube::api::{Api, Patch, PatchParams};

use crate::Error;

const FIELD_MANAGER: &str = "cdi-testenv";

/// `config` pointed at `https://127.0.0.1:port` (keeping its service's path), trusting `ca_pem`.
pub fn local_client_config(
    config: &WebhookClientConfig,
    port: u16,
    ca_pem: &str,
) -> WebhookClientConfig {
    let path = config
        .service
        .as_ref()
        .and_then(|s| s.path.clone())
        .unwrap_or_default();
    WebhookClientConfig {
        url: Some(format!("https://127.0.0.1:{port}{path}")),
        service: None,
        ca_bundle: Some(ByteString(ca_pem.as_bytes().to_vec())),
    }
}

/// Applies every Mutating- and ValidatingWebhookConfiguration of the YAML `manifests` with
/// each webhook pointed at the local server on `port` (see [`local_client_config`]); other
/// documents are skipped. Returns the names applied. kube-apiserver starts calling the webhooks
/// a moment later (its informer must see them): probe before relying on them.
pub async fn apply_local(
    client: &Client,
    manifests: &str,
    port: u16,
    ca_pem: &str,
) -> Result<Vec<String>, Error> {
    let docs: Vec<serde_json::Value> =
        serde_saphyr::from_str_multiple::<serde_json::Value, Vec<_>>(manifests)
            .map_err(|e| Error::Setup(format!("webhook manifests: {e}")))?;
    let mut names = Vec::new();
    for doc in docs.into_iter().filter(|d| !d.is_null()) {
        let local = |config: &WebhookClientConfig| local_client_config(config, port, ca_pem);
        let name = match doc["kind"].as_str().unwrap_or("") {
            "MutatingWebhookConfiguration" => {
                apply(client, doc, |c: &mut MutatingWebhookConfiguration| {
                    for hook in c.webhooks.iter_mut().flatten() {
                        hook.client_config = local(&hook.client_config);
                    }
                })
                .await?
            }
            "ValidatingWebhookConfiguration" => {
                apply(client, doc, |c: &mut ValidatingWebhookConfiguration| {
                    for hook in c.webhooks.iter_mut().flatten() {
                        hook.client_config = local(&hook.client_config);
                    }
                })
                .await?
            }
            _ => continue,
        };
        names.push(name);
    }
    Ok(names)
}

/// Server-side applies the cluster-scoped object `doc` as a `K`, changed by `retarget`;
/// returns its name.
async fn apply<K>(
    client: &Client,
    doc: serde_json::Value,
    retarget: impl FnOnce(&mut K),
) -> Result<String, Error>
where
    K: kube::Resource<Scope = kube::core::ClusterResourceScope, DynamicType = ()>
        + k8s_openapi::serde::Serialize
        + k8s_openapi::serde::de::DeserializeOwned
        + Clone
        + std::fmt::Debug,
{
    let mut object: K =
        serde_json::from_value(doc).map_err(|e| Error::Setup(format!("{}: {e}", K::kind(&()))))?;
    retarget(&mut object);
    let name = object.meta().name.clone().unwrap_or_default();
    Api::<K>::all(client.clone())
        .patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&object),
        )
        .await?;
    Ok(name)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::admissionregistration::v1::ServiceReference;

    use super::*;

    #[test]
    fn service_reference_becomes_a_loopback_url_with_its_path_and_the_ca() {
        let deployed = WebhookClientConfig {
            service: Some(ServiceReference {
                name: "cdi-api".into(),
                namespace: "cdi".into(),
                path: Some("/datavolume-mutate".into()),
                port: Some(443),
            }),
            ..WebhookClientConfig::default()
        };
        let local = local_client_config(&deployed, 8443, "CA PEM");
        assert_eq!(
            local.url.as_deref(),
            Some("https://127.0.0.1:8443/datavolume-mutate")
        );
        assert_eq!(local.service, None);
        assert_eq!(local.ca_bundle, Some(ByteString(b"CA PEM".to_vec())));
    }
}
