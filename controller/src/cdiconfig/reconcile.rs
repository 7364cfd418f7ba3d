//! Keeps the CDIConfig singleton present and its status current.

use std::sync::Arc;
use std::time::Duration;

use cdi_crds::config::{CDI_CONFIG_NAME, CdiConfig};
use futures::StreamExt;
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::api::storage::v1::StorageClass;
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;

use crate::{Context, Error, FIELD_MANAGER};

const CONTROLLER: &str = "cdiconfig";

/// Creates the CDIConfig `config` if it is missing (there is no operator to do it).
pub async fn ensure_exists(client: &kube::Client) -> Result<(), Error> {
    let api: Api<CdiConfig> = Api::all(client.clone());
    match api.get_opt(CDI_CONFIG_NAME).await {
        Ok(Some(_)) => return Ok(()),
        Ok(None) => {}
        // The whole resource is unknown (not just the object): the CRDs are missing.
        Err(kube::Error::Api(s)) if s.code == 404 => {
            return Err(Error::CrdsMissing);
        }
        Err(e) => return Err(e.into()),
    }
    let mut config = CdiConfig::new(CDI_CONFIG_NAME, Default::default());
    config.metadata.labels = Some(crate::datavolume::plan::cdi_labels());
    match api.create(&PostParams::default(), &config).await {
        Ok(_) => {
            tracing::info!(name = CDI_CONFIG_NAME, "Created the CDIConfig.");
            Ok(())
        }
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Runs the CDIConfig controller until `shutdown` resolves.
pub async fn run(
    ctx: Context,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let configs: Api<CdiConfig> = Api::all(ctx.client.clone());
    let classes: Api<StorageClass> = Api::all(ctx.client.clone());
    Controller::new(configs, watcher::Config::default())
        .trigger_backoff(crate::backoff::watch_backoff())
        .watches(classes, watcher::Config::default(), |_| {
            Some(ObjectRef::new(CDI_CONFIG_NAME))
        })
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, Arc::new(ctx))
        .for_each(|_| futures::future::ready(()))
        .await;
}

async fn reconcile(config: Arc<CdiConfig>, ctx: Arc<Context>) -> Result<Action, Error> {
    ctx.reconciled(
        CONTROLLER,
        &config.name_any(),
        reconcile_inner(&config, &ctx),
    )
    .await
}

async fn reconcile_inner(config: &CdiConfig, ctx: &Context) -> Result<Action, Error> {
    let name = config
        .metadata
        .name
        .as_deref()
        .ok_or(Error::MissingObjectKey(".metadata.name"))?;
    if name != CDI_CONFIG_NAME {
        return Ok(Action::await_change());
    }
    let classes: Vec<String> = ctx
        .stores
        .storage_classes
        .state()
        .iter()
        .filter_map(|c| c.metadata.name.clone())
        .collect();
    // Without an upload proxy Ingress (or RBAC to read one) there is simply no derived URL.
    let ingresses: Api<Ingress> = Api::namespaced(ctx.client.clone(), &ctx.settings.namespace);
    let proxy_url = match ingresses.list(&ListParams::default()).await {
        Ok(list) => {
            super::upload_proxy_url_from_ingresses(&list.items, &ctx.settings.uploadproxy_service)
        }
        Err(e) => {
            tracing::debug!(error = %e, "Could not list Ingresses for the upload proxy URL.");
            None
        }
    };
    let status = super::status_for(&config.spec, &classes, proxy_url);
    if config.status.as_ref() != Some(&status) {
        let api: Api<CdiConfig> = Api::all(ctx.client.clone());
        let patch = serde_json::json!({
            "apiVersion": "cdi.kubevirt.io/v1beta1",
            "kind": "CDIConfig",
            "status": status,
        });
        // Like upstream's, the CDIConfig CRD has no status subresource: status is part of the
        // object.
        api.patch(
            name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await?;
        tracing::info!(name, "CDIConfig status updated.");
    }
    // Ingresses are not watched: look again now and then.
    Ok(Action::requeue(Duration::from_secs(60)))
}

fn error_policy(config: Arc<CdiConfig>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.retry_after(CONTROLLER, &config.name_any(), error)
}
