//! Test fixtures for cdi-rs, shared by every crate's tests:
//!
//! - [`qcow2::Qcow2Builder`] writes small qcow2 images field by field, in any layout (L2 tables
//!   before or after their data, compressed, extended L2, zero flags) and with any header
//!   defect, so refusals and odd layouts can be tested without qemu;
//! - [`raw`] makes deterministic sparse raw images;
//! - [`qemu`] wraps `qemu-img` as the conformance oracle;
//! - [`http`] serves files over HTTP(S) and misbehaves on request;
//! - [`pki`] makes a CA and the server and client certificates it signs;
//! - [`relay`] is a TCP relay that cuts connections where a test plans;
//! - [`service`] runs a third-party server process; [`objectstore`] starts moto's S3 and the
//!   GCS emulator and seeds them; [`registry`] runs a registry and pushes images to it;
//! - [`uploadpod`] runs the real upload server as a pod, with its mounts and certificates;
//! - [`rawtls`] speaks HTTP/1.1 over TLS by hand, for requests no HTTP client sends;
//! - [`workspace`] builds and finds another package's binary for a test to run.
#![forbid(unsafe_code)]

pub mod http;
pub mod objectstore;
pub mod pki;
pub mod qcow2;
pub mod qemu;
pub mod raw;
pub mod rawtls;
pub mod registry;
pub mod relay;
pub mod service;
pub mod uploadpod;
pub mod workspace;
