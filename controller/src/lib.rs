//! cdi-controller: turns DataVolumes into PersistentVolumeClaims and worker pods, as upstream
//! CDI's `cdi-deployment` does, so existing manifests work unchanged.
//!
//! ```text
//!  DataVolume ──datavolume::plan──► PVC (annotated with the source) ──worker::importer──► importer pod
//!      ▲                              │  ▲                            ──worker::upload────► upload pod,
//!      │                              │  │                                                 service, secret
//!      └──datavolume::status◄─────────┘  └──worker::state◄── pod status, termination message
//!
//!  DataVolume (source.pvc / snapshot / sourceRef) ──clone::flow──► claim with a dataSource,
//!      a VolumeSnapshot first, or a clone target: upload pod ◄── cloner pod on the source
//!  DataSource ──datasource──► Ready + resolved source (what sourceRef clones)
//!  DataImportCron ──dataimportcron──► polls a registry, a DataVolume per new digest, the
//!      managed DataSource on the newest, old imports collected
//!  StorageClass ──storageprofile──► StorageProfile (access/volume modes for `storage` claims)
//!  CDIConfig ────cdiconfig────────► status (filesystem overhead, pod resources, upload proxy URL)
//! ```
//!
//! Two layers, as upstream: the DataVolume controller renders the claim and reads its state back
//! from the claim's annotations; the worker controller watches annotated claims and runs the pod
//! that fills them. A claim annotated by hand (upstream's "legacy" flow) is imported the same way.
//! Every decision is a pure function of the observed objects (`plan`, `status`, `state`,
//! `render`); the reconcilers only fetch, call them and apply the result. State lives in the API
//! objects, so a restarted controller picks up where it was; only back-off is kept in memory.
#![forbid(unsafe_code)]

pub mod apply;
pub mod backoff;
pub mod cdiconfig;
pub mod certs;
pub mod clone;
pub mod context;
pub mod dataimportcron;
pub mod datasource;
pub mod datavolume;
pub mod error;
pub mod leader;
pub mod metrics;
pub mod objects;
pub use cdi_crds::naming;
pub mod progress;
pub mod serve;
pub mod settings;
pub mod storageprofile;
pub mod worker;

#[cfg(test)]
mod fixtures;

pub use context::Context;
pub use error::Error;
pub use settings::Settings;

/// The field manager of every server-side apply the controller makes.
pub const FIELD_MANAGER: &str = "cdi-controller";
