//! The DataImportCron controller: golden-image pipelines. Each cron polls its registry image
//! on its schedule (a manifest `HEAD`, nothing pulled), imports every new digest once into a
//! DataVolume named from the digest, points its managed DataSource at the newest import and
//! deletes imports beyond `importsToKeep` ([`schedule`], [`poll`], [`imports`] and [`status`]
//! decide; [`reconcile`] observes and writes).
//!
//! ```text
//!  schedule tick ─► poll (HEAD manifest) ─► annotation sourceDesiredDigest
//!       new digest ─► DataVolume <dataSource>-<digest[:12]> ─Succeeded─► DataSource.spec.source.pvc
//!                                                          └─► GC beyond importsToKeep
//! ```

pub mod imports;
pub mod poll;
pub mod reconcile;
pub mod schedule;
pub mod status;

#[cfg(test)]
mod reconcile_tests;
