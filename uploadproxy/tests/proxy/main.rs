//! The upload proxy end to end: auth and readiness answers through the router, forwarding to a
//! fake mTLS upload server, and serving over TLS, all on 127.0.0.1 with certificates made here.

#[path = "../shared/objects.rs"]
mod objects;

mod common;

mod auth;
mod forwarding;
mod hostile;
mod readiness;
mod serving;
