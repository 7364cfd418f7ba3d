//! `cdictl image-upload dv NAME`: virtctl's image-upload flow with the kubeconfig's cluster.
//!
//! ```text
//!  create DataVolume (source.upload) ─► poll every 2 s until UploadReady ─► proxy URL (flag or
//!  CDIConfig status) ─► UploadTokenRequest ─► resumable upload (crate::upload, the token renewed
//!  as it ages) ─► poll until Succeeded (Ctrl-C stops waiting; the server goes on)
//! ```
//!
//! `plan.rs` holds the pure parts (the DataVolume, what each phase means); this file talks to
//! the API server.

mod plan;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use cdi_crds::config::CDI_CONFIG_NAME;
use cdi_crds::{CdiConfig, DataVolume, DataVolumePhase, UploadTokenRequest};
use cdi_datapath::ErrorKind;
use k8s_openapi::api::core::v1::Event;
use kube::Api;
use kube::api::{ListParams, PostParams};
use reqwest::Url;

use crate::exit;
use crate::upload::auth::{Auth, Refresh};
use crate::upload::{self, TransferOptions, UploadError, UploadRequest};
pub use plan::DvOptions;
use plan::{Processing, Readiness, phase_of, processing, readiness, render_dv};

/// The DataVolume's phase is read this often.
const POLL: Duration = Duration::from_secs(2);
/// How long processing after the upload may take (upstream waits as long).
const PROCESSING_WAIT: Duration = Duration::from_secs(24 * 3600);
/// The name of the UploadTokenRequests made.
const TOKEN_REQUEST_NAME: &str = "token-for-cdictl";
/// Events on the claim that explain why a volume does not come.
const TELLING_EVENTS: [&str; 2] = ["ProvisioningFailed", "ErrClaimNotValid"];

/// A validated `cdictl image-upload`.
#[derive(Debug, Clone)]
pub struct ImageUploadRequest {
    pub dv: DvOptions,
    /// The kubeconfig context's namespace when `None`.
    pub namespace: Option<String>,
    pub file: PathBuf,
    pub no_create: bool,
    /// How long to wait for `UploadReady`.
    pub wait: Duration,
    /// CDIConfig's `status.uploadProxyURL` when `None`.
    pub proxy_url: Option<Url>,
    pub options: TransferOptions,
}

pub fn run_image_upload(req: ImageUploadRequest) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            return upload::fail(
                "image-upload",
                &UploadError::new(
                    ErrorKind::Io,
                    format!("starting the async runtime: {e}"),
                    "check the system's limits (threads, file descriptors)",
                ),
            );
        }
    };
    match runtime.block_on(run(req)) {
        Ok(()) => ExitCode::from(exit::OK),
        Err(e) => upload::fail("image-upload", &e),
    }
}

fn note(text: &str) {
    eprintln!("cdictl: {text}");
}

/// An API server error in words, with what to do.
fn kube_error(doing: &str, e: &kube::Error) -> UploadError {
    match e {
        kube::Error::Api(status) if status.code == 401 || status.code == 403 => UploadError::new(
            ErrorKind::Auth,
            format!("{doing}: {}", status.message),
            "ask for the edit or admin role in the namespace, or use another kubeconfig context",
        ),
        kube::Error::Api(status) => UploadError::new(
            if status.code == 404 {
                ErrorKind::NotFound
            } else {
                ErrorKind::Config
            },
            format!("{doing}: {} ({})", status.message, status.code),
            "check the names given, and that CDI is installed (kubectl get cdi)",
        ),
        other => UploadError::new(
            ErrorKind::Network,
            format!("{doing}: {}", upload::tus::chain(other)),
            "check the connection to the cluster (kubectl get dv)",
        ),
    }
}

async fn run(req: ImageUploadRequest) -> Result<(), UploadError> {
    let client = kube::Client::try_default().await.map_err(|e| {
        UploadError::new(
            ErrorKind::Config,
            format!("no usable kubeconfig: {}", upload::tus::chain(&e)),
            "set KUBECONFIG (or ~/.kube/config) to a cluster where CDI is installed",
        )
    })?;
    let ns = req
        .namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_string());
    let name = req.dv.name.clone();
    let dvs: Api<DataVolume> = Api::namespaced(client.clone(), &ns);
    if req.no_create {
        match dvs.get_opt(&name).await {
            Ok(Some(_)) => note(&format!("uploading into DataVolume {ns}/{name}")),
            Ok(None) => {
                return Err(UploadError::new(
                    ErrorKind::NotFound,
                    format!("DataVolume {ns}/{name} does not exist"),
                    "drop --no-create (and give --size) to create it",
                ));
            }
            Err(e) => return Err(kube_error("reading the DataVolume", &e)),
        }
    } else {
        match dvs
            .create(&PostParams::default(), &render_dv(&req.dv, &ns))
            .await
        {
            Ok(_) => note(&format!("created DataVolume {ns}/{name}")),
            Err(kube::Error::Api(s)) if s.code == 409 => {
                return Err(UploadError::new(
                    ErrorKind::Config,
                    format!("DataVolume {ns}/{name} already exists"),
                    "pass --no-create to upload into it, or choose another name",
                ));
            }
            Err(e) => return Err(kube_error("creating the DataVolume", &e)),
        }
    }
    let events: Api<Event> = Api::namespaced(client.clone(), &ns);
    wait_until_ready(&dvs, &events, &ns, &name, req.dv.force_bind, req.wait).await?;
    let url = match req.proxy_url.clone() {
        Some(url) => url,
        None => proxy_url_from_config(&client).await?,
    };
    let tokens: Api<UploadTokenRequest> = Api::namespaced(client.clone(), &ns);
    let token = request_token(&tokens, &name).await?;
    let refresh: Refresh = {
        let name = name.clone();
        Box::new(move || {
            let tokens = tokens.clone();
            let name = name.clone();
            Box::pin(async move { request_token(&tokens, &name).await })
        })
    };
    let mut auth = Auth::refreshing(token, refresh);
    let request = UploadRequest {
        url: url.clone(),
        file: req.file.clone(),
        token: None,
        options: req.options.clone(),
    };
    note(&format!("uploading {} to {url}", req.file.display()));
    let done = upload::upload(&request, &mut auth).await?;
    println!("{}", upload::summary(&req.file, &url, &done));
    wait_until_processed(&dvs, &ns, &name).await
}

/// CDIConfig `config`'s `status.uploadProxyURL`.
async fn proxy_url_from_config(client: &kube::Client) -> Result<Url, UploadError> {
    let configs: Api<CdiConfig> = Api::all(client.clone());
    let config = configs
        .get(CDI_CONFIG_NAME)
        .await
        .map_err(|e| kube_error("reading CDIConfig config", &e))?;
    let raw = config
        .status
        .and_then(|s| s.upload_proxy_url)
        .filter(|u| !u.is_empty())
        .ok_or_else(|| {
            UploadError::new(
                ErrorKind::Config,
                "CDIConfig config has no status.uploadProxyURL",
                "pass --uploadproxy-url (for example after kubectl port-forward -n cdi service/cdi-uploadproxy 8443:443, https://127.0.0.1:8443)",
            )
        })?;
    upload::normalize_url(&raw).map_err(|why| {
        UploadError::new(
            ErrorKind::Config,
            format!("CDIConfig's uploadProxyURL: {why}"),
            "pass --uploadproxy-url",
        )
    })
}

/// A fresh upload token for the claim `pvc`.
async fn request_token(tokens: &Api<UploadTokenRequest>, pvc: &str) -> Result<String, UploadError> {
    let request = UploadTokenRequest::new(TOKEN_REQUEST_NAME, pvc);
    let response = tokens
        .create(&PostParams::default(), &request)
        .await
        .map_err(|e| match &e {
            kube::Error::Api(s) if s.code == 404 => UploadError::new(
                ErrorKind::NotFound,
                format!(
                    "the cluster does not serve UploadTokenRequests: {}",
                    s.message
                ),
                "check that CDI's API server (cdi-apiserver) is installed and available",
            ),
            _ => kube_error("requesting an upload token", &e),
        })?;
    response
        .status
        .and_then(|s| s.token)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            UploadError::new(
                ErrorKind::Auth,
                "the UploadTokenRequest came back without a token",
                "check cdi-apiserver's log",
            )
        })
}

fn phase_name(phase: &DataVolumePhase) -> String {
    match phase {
        DataVolumePhase::Unset => "no phase yet".into(),
        p => p.to_string(),
    }
}

/// Polls until `UploadReady`, printing phase changes and the claim's telling events.
async fn wait_until_ready(
    dvs: &Api<DataVolume>,
    events: &Api<Event>,
    ns: &str,
    name: &str,
    force_bind: bool,
    wait: Duration,
) -> Result<(), UploadError> {
    let deadline = Instant::now() + wait;
    let mut last: Option<DataVolumePhase> = None;
    let mut seen_events = BTreeSet::new();
    loop {
        match dvs.get(name).await {
            Ok(dv) => {
                let phase = phase_of(dv.status.as_ref());
                if last.as_ref() != Some(&phase) {
                    note(&format!("DataVolume {ns}/{name}: {}", phase_name(&phase)));
                    last = Some(phase.clone());
                }
                match readiness(dv.status.as_ref(), force_bind) {
                    Readiness::Ready => return Ok(()),
                    Readiness::Fail(why) => {
                        return Err(UploadError::new(
                            ErrorKind::Config,
                            format!("DataVolume {ns}/{name} cannot take the upload: {why}"),
                            format!("see kubectl describe dv -n {ns} {name}"),
                        ));
                    }
                    Readiness::Wait => {}
                }
            }
            Err(e) => note(&format!(
                "reading DataVolume {ns}/{name} failed ({e}); trying again"
            )),
        }
        show_events(events, name, &mut seen_events).await;
        if Instant::now() >= deadline {
            return Err(UploadError::new(
                ErrorKind::Network,
                format!(
                    "DataVolume {ns}/{name} was not ready for the upload within {} s (phase: {})",
                    wait.as_secs(),
                    last.as_ref().map_or_else(|| "unknown".into(), phase_name)
                ),
                format!(
                    "see kubectl describe dv -n {ns} {name} and its claim's events; raise --wait-secs if the storage is slow, then run again with --no-create"
                ),
            ));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Prints the claim's ProvisioningFailed and ErrClaimNotValid events not shown yet.
async fn show_events(events: &Api<Event>, claim: &str, seen: &mut BTreeSet<String>) {
    let params = ListParams::default().fields(&format!(
        "involvedObject.kind=PersistentVolumeClaim,involvedObject.name={claim}"
    ));
    let Ok(list) = events.list(&params).await else {
        return;
    };
    for e in list.items {
        let reason = e.reason.clone().unwrap_or_default();
        if !TELLING_EVENTS.contains(&reason.as_str()) {
            continue;
        }
        let key = format!(
            "{}/{}",
            e.metadata.uid.clone().unwrap_or_default(),
            e.count.unwrap_or(1)
        );
        if seen.insert(key) {
            note(&format!(
                "claim {claim}: {reason}: {}",
                e.message.unwrap_or_default()
            ));
        }
    }
}

/// Polls until `Succeeded`, printing phase changes; Ctrl-C stops waiting without harm.
async fn wait_until_processed(
    dvs: &Api<DataVolume>,
    ns: &str,
    name: &str,
) -> Result<(), UploadError> {
    note("waiting for the image to be processed; Ctrl-C stops waiting, the processing goes on");
    let deadline = Instant::now() + PROCESSING_WAIT;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut last: Option<DataVolumePhase> = None;
    loop {
        match dvs.get(name).await {
            Ok(dv) => {
                let phase = phase_of(dv.status.as_ref());
                if last.as_ref() != Some(&phase) {
                    note(&format!("DataVolume {ns}/{name}: {}", phase_name(&phase)));
                    last = Some(phase);
                }
                match processing(dv.status.as_ref()) {
                    Processing::Done => {
                        println!("DataVolume {ns}/{name} succeeded");
                        return Ok(());
                    }
                    Processing::Failed(why) => {
                        return Err(UploadError::new(
                            ErrorKind::InvalidImage,
                            format!("DataVolume {ns}/{name}: {why}"),
                            format!(
                                "see kubectl describe dv -n {ns} {name} and the upload pod's log"
                            ),
                        ));
                    }
                    Processing::Wait => {}
                }
            }
            Err(e) => note(&format!(
                "reading DataVolume {ns}/{name} failed ({e}); trying again"
            )),
        }
        if Instant::now() >= deadline {
            return Err(UploadError::new(
                ErrorKind::Network,
                format!("DataVolume {ns}/{name} did not succeed within 24 hours"),
                format!("see kubectl describe dv -n {ns} {name}"),
            ));
        }
        tokio::select! {
            _ = &mut ctrl_c => {
                note(&format!(
                    "stopped waiting; DataVolume {ns}/{name} goes on being processed (kubectl get dv -n {ns} {name} -w)"
                ));
                return Ok(());
            }
            _ = tokio::time::sleep(POLL) => {}
        }
    }
}
