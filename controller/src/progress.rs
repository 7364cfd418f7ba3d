//! Transfer progress, read from the worker's metrics as upstream does: GET
//! `https://<podIP>:8443/metrics` and take `kubevirt_cdi_import_progress_total{ownerUID="<uid>"}`
//! (or the clone counter), written as the DataVolume's `"45.32%"`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;

use crate::worker::pod::METRICS_PORT;

/// Annotation the test kubelet stand-in puts on pods: container port → the loopback port it is
/// really served on (JSON). Honoured so the same controller runs against the stand-in.
pub const STANDIN_PORTS_ANNOTATION: &str = "kubelet-standin.cdi-rs.io/ports";

/// The metrics carrying a progress percentage.
const PROGRESS_METRICS: [&str; 3] = [
    "kubevirt_cdi_import_progress_total",
    "kubevirt_cdi_upload_progress_total",
    "kubevirt_cdi_clone_progress_total",
];

/// The progress percentage for `owner_uid` in a Prometheus text exposition, if present.
pub fn parse_progress(text: &str, owner_uid: &str) -> Option<f64> {
    let wanted = format!("{{ownerUID=\"{owner_uid}\"}}");
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|line| {
            let rest = PROGRESS_METRICS.iter().find_map(|m| line.strip_prefix(m))?;
            let value = rest.strip_prefix(wanted.as_str())?.trim();
            let v: f64 = value.split_whitespace().next()?.parse().ok()?;
            (0.0..=100.0).contains(&v).then_some(v)
        })
}

/// `45.3211` → `"45.32%"`, as upstream formats it.
pub fn format_progress(percent: f64) -> String {
    format!("{percent:.2}%")
}

/// Where a worker pod's port 8443 is reached, `ip:port` (IPv6 in brackets), if it has an IP:
/// the pod's IP and 8443, or under the test kubelet stand-in the loopback port it mapped.
pub fn worker_address(pod: &Pod) -> Option<String> {
    let ip = pod.status.as_ref()?.pod_ip.as_deref()?;
    let port = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(STANDIN_PORTS_ANNOTATION))
        .and_then(|json| serde_json::from_str::<BTreeMap<String, u16>>(json).ok())
        .and_then(|ports| ports.get(&METRICS_PORT.to_string()).copied())
        .map_or(METRICS_PORT, i32::from);
    Some(if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    })
}

/// The metrics URL of a running worker pod, if it has an IP.
pub fn metrics_url(pod: &Pod) -> Option<String> {
    worker_address(pod).map(|addr| format!("https://{addr}/metrics"))
}

/// Reads the progress of `owner_uid` from `pod`; `None` if it cannot be read right now.
pub async fn scrape(client: &reqwest::Client, pod: &Pod, owner_uid: &str) -> Option<f64> {
    let url = metrics_url(pod)?;
    let response = client.get(&url).send().await.ok()?;
    if !response.status().is_success() {
        return None;
    }
    let text = response.text().await.ok()?;
    parse_progress(&text, owner_uid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PodStatus;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    const TEXT: &str = "# HELP kubevirt_cdi_import_progress_total The import progress in percentage\n\
        # TYPE kubevirt_cdi_import_progress_total counter\n\
        kubevirt_cdi_import_progress_total{ownerUID=\"other\"} 99.00\n\
        kubevirt_cdi_import_progress_total{ownerUID=\"abc\"} 45.3211\n";

    #[test]
    fn progress_of_the_right_owner_is_read() {
        assert_eq!(parse_progress(TEXT, "abc"), Some(45.3211));
        assert_eq!(parse_progress(TEXT, "missing"), None);
        assert_eq!(format_progress(45.3211), "45.32%");
    }

    #[test]
    fn clone_progress_counts_too_and_garbage_does_not() {
        assert_eq!(
            parse_progress("kubevirt_cdi_clone_progress_total{ownerUID=\"u\"} 12", "u"),
            Some(12.0)
        );
        assert_eq!(
            parse_progress(
                "kubevirt_cdi_import_progress_total{ownerUID=\"u\"} NaN-ish",
                "u"
            ),
            None
        );
    }

    #[test]
    fn metrics_url_uses_pod_ip_and_the_standin_port() {
        let mut pod = Pod {
            metadata: ObjectMeta::default(),
            spec: None,
            status: Some(PodStatus {
                pod_ip: Some("10.0.0.7".into()),
                ..Default::default()
            }),
        };
        assert_eq!(
            metrics_url(&pod).as_deref(),
            Some("https://10.0.0.7:8443/metrics")
        );
        pod.metadata.annotations = Some(BTreeMap::from([(
            STANDIN_PORTS_ANNOTATION.to_string(),
            "{\"8443\":41234}".to_string(),
        )]));
        assert_eq!(
            metrics_url(&pod).as_deref(),
            Some("https://10.0.0.7:41234/metrics")
        );
    }
}
