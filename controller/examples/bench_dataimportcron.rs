//! DataImportCron benchmark: COUNT crons (default 100) polling one local registry (Debian's
//! `docker-registry` over TLS) on the test environment's real kube-apiserver, and one more cron
//! whose tag is moved. Measures the controller's CPU time and peak RSS over a window of polls,
//! the registry requests per poll (from the registry's access log), and the time from a tag
//! moving to the DataSource pointing at the new import.
//!
//! `cargo run --release -p cdi-controller --example bench_dataimportcron -- [COUNT]
//! [POLL_SECONDS] [WINDOW_SECONDS] [OUT.md]` (`bench/dataimportcron.sh` does this). The COUNT
//! crons import into a StorageClass without a provisioner, so their claims never bind and no
//! importer runs: what is measured is polling. The tag-move cron imports for real.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use cdi_crds::{DataImportCron, DataSource, DataVolume};
use cdi_testdata::registry::{Compression, RegistryConfig, RegistryServer, image, layer};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};
use serde_json::json;

mod support;

/// A containerDisk of 1 MiB whose bytes depend on `version`, pushed as `repository:tag`.
fn push(registry: &RegistryServer, repository: &str, tag: &str, version: u8) -> String {
    let disk: Vec<u8> = (0..(1u32 << 20))
        .map(|i| (i % 251) as u8 ^ version.wrapping_mul(37))
        .collect();
    registry.push(
        repository,
        tag,
        &image(
            vec![layer(&[("disk/disk.img", &disk)], Compression::Gzip)],
            &[],
            "amd64",
        ),
    )
}

fn cron(name: &str, url: &str, class: Option<&str>) -> anyhow::Result<DataImportCron> {
    let mut storage = json!({"resources": {"requests": {"storage": "64Mi"}}});
    if let Some(c) = class {
        storage["storageClassName"] = json!(c);
    }
    Ok(serde_json::from_value(json!({
        "apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "DataImportCron",
        "metadata": {"name": name},
        "spec": {
            "template": {"spec": {"source": {"registry": {"url": url,
                                                          "certConfigMap": "registry-ca"}},
                                  "storage": storage}},
            "schedule": "* * * * *",
            "managedDataSource": name,
        },
    }))?)
}

/// The value of the unlabelled metric `name` in Prometheus text.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

/// Manifest requests (HEAD and GET) in the registry's access log.
fn manifest_requests(registry: &RegistryServer) -> usize {
    registry
        .log()
        .lines()
        .filter(|l| {
            (l.contains("\"HEAD /v2/") || l.contains("\"GET /v2/")) && l.contains("/manifests/")
        })
        .count()
}

/// The claim DataSource `name` points at.
async fn points_at(sources: &Api<DataSource>, name: &str) -> Option<String> {
    Some(sources.get_opt(name).await.ok()??.spec.source.pvc?.name)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let count: usize = args.next().map(|c| c.parse()).transpose()?.unwrap_or(100);
    let poll: u64 = args.next().map(|c| c.parse()).transpose()?.unwrap_or(10);
    let window: u64 = args.next().map(|c| c.parse()).transpose()?.unwrap_or(60);
    let out = args.next().map(PathBuf::from);

    let importer = support::sibling_binary("cdi-importer")?;
    let cluster =
        cdi_testenv::TestCluster::start(BTreeMap::from([("cdi-importer".to_owned(), importer)]))
            .await?;
    let client = cluster.client();
    let crds = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/crds");
    cdi_testenv::crds::apply_dir(&client, &crds).await?;
    let cdi_ns = cluster.create_namespace("cdi").await?;
    let ns = cluster.create_namespace("bench").await?;

    let registry = RegistryServer::start(RegistryConfig {
        tls: true,
        auth: false,
    });
    let ca: ConfigMap = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "registry-ca"},
        "data": {"ca.pem": registry.ca_pem.clone().unwrap_or_default()},
    }))?;
    Api::<ConfigMap>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &ca)
        .await?;
    push(&registry, "bench/disk", "latest", 1);
    push(&registry, "bench/moved", "latest", 1);

    let poll_flag = poll.to_string();
    let mut controller = support::start_controller(
        &cluster,
        &cdi_ns,
        &["--dataimportcron-poll-interval", &poll_flag],
    )
    .await?;
    let pid = controller.pid();
    let metrics_url = format!("http://127.0.0.1:{}/metrics", controller.port);

    let crons: Api<DataImportCron> = Api::namespaced(client.clone(), &ns);
    let sources: Api<DataSource> = Api::namespaced(client.clone(), &ns);
    let dvs: Api<DataVolume> = Api::namespaced(client.clone(), &ns);
    let disk_url = format!("docker://{}/bench/disk:latest", registry.host());
    futures::stream::iter(0..count)
        .map(|i| {
            let (crons, url) = (crons.clone(), disk_url.clone());
            async move {
                let c = cron(&format!("cron-{i:03}"), &url, Some("bench-no-provisioner"))?;
                crons.create(&PostParams::default(), &c).await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<()>>()
        .await?;
    let moved_url = format!("docker://{}/bench/moved:latest", registry.host());
    crons
        .create(&PostParams::default(), &cron("moved", &moved_url, None)?)
        .await?;
    let first = cdi_testenv::wait::eventually(
        "the moved cron's first import to reach its DataSource",
        Duration::from_secs(180),
        || {
            let sources = sources.clone();
            async move { points_at(&sources, "moved").await }
        },
    )
    .await?;
    // Every cron has polled once (its imports wait for a claim that never binds).
    cdi_testenv::wait::eventually(
        "every cron to have polled",
        Duration::from_secs(180),
        || {
            let crons = crons.clone();
            async move {
                let list = crons.list(&Default::default()).await.ok()?;
                list.items
                    .iter()
                    .all(|c| {
                        c.metadata.annotations.as_ref().is_some_and(|a| {
                            a.contains_key(cdi_crds::annotations::import::LAST_CRON_TIME)
                        })
                    })
                    .then_some(())
            }
        },
    )
    .await?;

    // The steady state: polls and nothing new.
    let before = support::http_text(&metrics_url).await.unwrap_or_default();
    let (cpu_before, _) = cdi_testenv::process::usage(pid);
    let requests_before = manifest_requests(&registry);
    tokio::time::sleep(Duration::from_secs(window)).await;
    let after = support::http_text(&metrics_url).await.unwrap_or_default();
    let (cpu_after, peak_rss) = cdi_testenv::process::usage(pid);
    let requests = manifest_requests(&registry) - requests_before;
    let polls = metric(&after, "kubevirt_cdi_dataimportcron_polls_total")
        - metric(&before, "kubevirt_cdi_dataimportcron_polls_total");
    let sent = metric(
        &after,
        "kubevirt_cdi_dataimportcron_registry_requests_total",
    ) - metric(
        &before,
        "kubevirt_cdi_dataimportcron_registry_requests_total",
    );
    let cpu = cpu_after - cpu_before;

    // The tag moves: time until the DataSource points at the new import.
    let moved_at = Instant::now();
    push(&registry, "bench/moved", "latest", 2);
    let import_created = std::sync::Arc::new(std::sync::OnceLock::<Duration>::new());
    let second = cdi_testenv::wait::eventually(
        "the DataSource to follow the moved tag",
        Duration::from_secs(180),
        || {
            let (sources, dvs, first) = (sources.clone(), dvs.clone(), first.clone());
            let created = import_created.clone();
            async move {
                if created.get().is_none() {
                    let list = dvs
                        .list(
                            &kube::api::ListParams::default()
                                .labels("cdi.kubevirt.io/dataImportCron=moved"),
                        )
                        .await
                        .ok()?;
                    if list.items.len() > 1 {
                        let _ = created.set(moved_at.elapsed());
                    }
                }
                points_at(&sources, "moved").await.filter(|p| *p != first)
            }
        },
    )
    .await?;
    let latency = moved_at.elapsed();
    controller.stop();

    let ticks = window as f64 / poll as f64;
    let table = format!(
        "| crons | poll every (s) | window (s) | polls | polls per cron per tick | registry manifest requests | requests per poll | controller CPU (s) | CPU per poll (ms) | peak RSS (MiB) | tag move → import created (s) | tag move → DataSource (s) |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n\
         | {} | {poll} | {window} | {polls:.0} | {:.2} | {requests} (controller counted {sent:.0}) | {:.2} | {cpu:.2} | {:.2} | {peak_rss:.0} | {:.1} | {:.1} |\n",
        count + 1,
        polls / (count as f64 + 1.0) / ticks,
        requests as f64 / polls.max(1.0),
        cpu * 1000.0 / polls.max(1.0),
        import_created.get().map_or(f64::NAN, |d| d.as_secs_f64()),
        latency.as_secs_f64(),
    );
    println!(
        "{table}\nDataSource now on {second}; controller log: {}",
        controller.log.display()
    );
    if let Some(out) = out {
        std::fs::write(&out, &table)?;
        println!("written to {}", out.display());
    }
    Ok(())
}
