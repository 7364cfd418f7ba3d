//! Keeps the request-header settings current: watches ConfigMap
//! `kube-system/extension-apiserver-authentication` (RoleBinding to
//! `extension-apiserver-authentication-reader`) and applies each version to the TLS client
//! verifier and to the router's authentication.

use std::sync::Arc;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::watch;

use crate::authn::{AUTH_CONFIG_MAP_NAME, AUTH_CONFIG_MAP_NAMESPACE, RequestHeaderConfig};
use crate::tls::Tls;

/// Runs until the process ends; errors are logged and the watch restarted with back-off.
pub async fn watch_auth_config(
    client: kube::Client,
    tls: Arc<Tls>,
    config: watch::Sender<Option<Arc<RequestHeaderConfig>>>,
) {
    let api: Api<ConfigMap> = Api::namespaced(client, AUTH_CONFIG_MAP_NAMESPACE);
    let selector =
        watcher::Config::default().fields(&format!("metadata.name={AUTH_CONFIG_MAP_NAME}"));
    let mut events = std::pin::pin!(watcher(api, selector).default_backoff().applied_objects());
    while let Some(event) = events.next().await {
        match event {
            Ok(map) => apply(&map, &tls, &config),
            Err(e) => tracing::warn!(
                error = %e,
                "Watching {AUTH_CONFIG_MAP_NAMESPACE}/{AUTH_CONFIG_MAP_NAME} failed; retrying."
            ),
        }
    }
}

/// Applies one version of the ConfigMap: first to TLS (which CA new connections are verified
/// against), then to authentication (which CA a request's connection must have been verified
/// against), so a request is never checked against a CA its connection did not use.
pub fn apply(map: &ConfigMap, tls: &Tls, config: &watch::Sender<Option<Arc<RequestHeaderConfig>>>) {
    let data = map.data.clone().unwrap_or_default();
    let mut parsed = match RequestHeaderConfig::from_config_map(&data) {
        Ok(parsed) => parsed,
        Err(e) => {
            tracing::error!(error = %e, "Ignoring this version of the authentication ConfigMap.");
            return;
        }
    };
    if let Err(e) = tls.set_client_ca(parsed.client_ca_pem.clone()) {
        tracing::error!(error = %e, "The request-header CA cannot be used; no request will be authenticated.");
        parsed.client_ca_pem = None;
    }
    if parsed.client_ca_pem.is_none() {
        tracing::warn!(
            "{AUTH_CONFIG_MAP_NAMESPACE}/{AUTH_CONFIG_MAP_NAME} has no requestheader-client-ca-file: \
             kube-apiserver runs without front-proxy flags, and every API request will be refused."
        );
    }
    config.send_if_modified(|current| {
        if current.as_deref() == Some(&parsed) {
            return false;
        }
        tracing::info!(
            allowed_names = ?parsed.allowed_names,
            username_headers = ?parsed.username_headers,
            group_headers = ?parsed.group_headers,
            "Request-header authentication settings loaded."
        );
        *current = Some(Arc::new(parsed));
        true
    });
}
