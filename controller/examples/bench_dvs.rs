//! Controller benchmark: N DataVolumes created at once against the real apiserver of the test
//! environment; measures, per DataVolume, the time from its creation until its importer pod
//! exists, and the controller's CPU time and peak RSS.
//!
//! `cargo run --release -p cdi-controller --example bench_dvs -- [COUNT] [OUT.md]`
//! (`bench/controller.sh` does this). The kubelet stand-in is given no binaries, so importer
//! pods are created but not run, and it binds each claim itself as soon as it provisions it
//! (the controller-manager's binder manages a few a second): this measures the controller, not
//! the imports or the binder.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use cdi_crds::DataVolume;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{Api, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;

mod support;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let count: usize = args.next().map(|c| c.parse()).transpose()?.unwrap_or(1000);
    let out = args.next().map(PathBuf::from);

    let cluster = cdi_testenv::TestCluster::start(BTreeMap::new()).await?;
    // Bound at once, so that what is timed is the controller, not the binder's pace.
    if let Some(kubelet) = cluster.kubelet() {
        kubelet.bind_claims_at_once();
    }
    let client = cluster.client();
    let crds = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/crds");
    cdi_testenv::crds::apply_dir(&client, &crds).await?;
    let cdi_ns = cluster.create_namespace("cdi").await?;
    let ns = cluster.create_namespace("bench").await?;

    let mut controller = support::start_controller(&cluster, &cdi_ns, &[]).await?;
    let (pid, port, log_path) = (controller.pid(), controller.port, controller.log.clone());
    let profiles: Api<cdi_crds::StorageProfile> = Api::all(client.clone());
    cdi_testenv::wait::eventually(
        "the StorageProfile of the default class",
        Duration::from_secs(60),
        || {
            let profiles = profiles.clone();
            async move {
                let p = profiles.get(cdi_testenv::STORAGE_CLASS).await.ok()?;
                p.status?
                    .claim_property_sets
                    .filter(|s| !s.is_empty())
                    .map(|_| ())
            }
        },
    )
    .await?;
    let (cpu_before, _) = cdi_testenv::process::usage(pid);

    // Record when each importer pod first shows up.
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel::<(String, Instant)>();
    let watch = tokio::spawn(async move {
        let mut stream = watcher(pods, watcher::Config::default())
            .applied_objects()
            .boxed();
        while let Ok(Some(pod)) = stream.try_next().await {
            if let Some(name) = pod.metadata.name {
                let _ = seen_tx.send((name, Instant::now()));
            }
        }
    });

    // And when each claim is first seen Bound (binding is the test environment's work).
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
    let (bound_tx, mut bound_rx) = tokio::sync::mpsc::unbounded_channel::<(String, Instant)>();
    let claim_watch = tokio::spawn(async move {
        let mut stream = watcher(claims, watcher::Config::default())
            .applied_objects()
            .boxed();
        while let Ok(Some(claim)) = stream.try_next().await {
            let bound = claim.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
            if let (true, Some(name)) = (bound, claim.metadata.name) {
                let _ = bound_tx.send((name, Instant::now()));
            }
        }
    });

    let dvs: Api<DataVolume> = Api::namespaced(client.clone(), &ns);
    let started = Instant::now();
    let created: HashMap<String, Instant> = futures::stream::iter(0..count)
        .map(|i| {
            let dvs = dvs.clone();
            async move {
                let name = format!("dv-{i:05}");
                let dv: DataVolume = serde_json::from_value(json!({
                    "apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "DataVolume",
                    "metadata": {"name": name},
                    "spec": {"source": {"blank": {}},
                             "storage": {"resources": {"requests": {"storage": "1Gi"}}}}
                }))?;
                dvs.create(&PostParams::default(), &dv).await?;
                anyhow::Ok((name, Instant::now()))
            }
        })
        .buffer_unordered(32)
        .try_collect()
        .await?;
    let create_wall = started.elapsed();

    let mut first_seen: HashMap<String, Instant> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(600);
    while first_seen.len() < count && Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(5), seen_rx.recv()).await {
            Ok(Some((pod, at))) => {
                if let Some(dv) = pod.strip_prefix("importer-") {
                    first_seen.entry(dv.to_owned()).or_insert(at);
                }
            }
            Ok(None) => break,
            Err(_) => {}
        }
    }
    let wall = started.elapsed();
    watch.abort();
    claim_watch.abort();
    let mut bound_at: HashMap<String, Instant> = HashMap::new();
    while let Ok((name, at)) = bound_rx.try_recv() {
        bound_at.entry(name).or_insert(at);
    }
    let mut after_bound: Vec<Duration> = first_seen
        .iter()
        .filter_map(|(dv, seen)| bound_at.get(dv).map(|b| seen.saturating_duration_since(*b)))
        .collect();
    after_bound.sort();
    let (cpu_after, peak_rss) = cdi_testenv::process::usage(pid);
    let metrics = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await?
        .text()
        .await?;
    controller.stop();

    let mut latencies: Vec<Duration> = created
        .iter()
        .filter_map(|(dv, at)| {
            first_seen
                .get(dv)
                .map(|seen| seen.saturating_duration_since(*at))
        })
        .collect();
    latencies.sort();
    let cpu = cpu_after - cpu_before;
    let ms = |d: Duration| format!("{:.0}", d.as_secs_f64() * 1000.0);
    let table = format!(
        "| DataVolumes | importer pods seen | creates took (s) | all pods by (s) | p50 (ms) | p90 (ms) | p99 (ms) | max (ms) | controller CPU (s) | CPU per DV (ms) | controller peak RSS (MiB) |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n\
         | {count} | {} | {:.1} | {:.1} | {} | {} | {} | {} | {:.2} | {:.2} | {:.0} |\n",
        latencies.len(),
        create_wall.as_secs_f64(),
        wall.as_secs_f64(),
        ms(percentile(&latencies, 50.0)),
        ms(percentile(&latencies, 90.0)),
        ms(percentile(&latencies, 99.0)),
        ms(latencies.last().copied().unwrap_or_default()),
        cpu,
        cpu * 1000.0 / count as f64,
        peak_rss,
    );
    let table = format!(
        "{table}\nOf that, claim Bound → importer pod (the controller's own share): p50 {} ms, p90 {} ms, \
         p99 {} ms, max {} ms ({} claims).\n",
        ms(percentile(&after_bound, 50.0)),
        ms(percentile(&after_bound, 90.0)),
        ms(percentile(&after_bound, 99.0)),
        ms(after_bound.last().copied().unwrap_or_default()),
        after_bound.len(),
    );
    println!("{table}");
    let errors: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("kubevirt_cdi_controller_reconcile_errors_total"))
        .collect();
    let reconciles: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("kubevirt_cdi_controller_reconcile_total"))
        .collect();
    println!("reconciles: {reconciles:?}\nreconcile errors: {errors:?}");
    let log_text = std::fs::read_to_string(&log_path).unwrap_or_default();
    println!("controller log: {}", log_path.display());
    let problems: Vec<&str> = log_text
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .take(10)
        .collect();
    if !problems.is_empty() {
        println!("controller warnings (first 10):");
        for line in problems {
            println!("  {line}");
        }
    }
    if let Some(out) = out {
        std::fs::write(&out, &table)?;
        println!("written to {}", out.display());
    }
    anyhow::ensure!(
        latencies.len() == count,
        "only {} of {count} importer pods appeared",
        latencies.len()
    );
    Ok(())
}
