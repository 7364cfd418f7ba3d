//! Progress in Prometheus text format, and the HTTPS server the importer and the cloner serve it on at
//! `:8443/metrics` (a self-signed certificate made at start). `<prefix>_progress_total{ownerUID}`
//! is the percentage of the source consumed (we convert while streaming, so it moves through
//! the whole transfer): `kubevirt_cdi_import_progress_total` from the importer, as upstream,
//! and `kubevirt_cdi_upload_progress_total` from the upload server, which serves it on its own
//! listener.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use cdi_datapath::Progress;

/// Counters the server reports besides the datapath's progress.
#[derive(Debug, Default)]
pub struct Extra {
    pub resumes: AtomicU32,
}

/// The importer's metric names start with this.
pub const IMPORT_PREFIX: &str = "kubevirt_cdi_import";
/// The upload server's.
pub const UPLOAD_PREFIX: &str = "kubevirt_cdi_upload";
/// The cloner's (`kubevirt_cdi_clone_progress_total`, as upstream).
pub const CLONE_PREFIX: &str = "kubevirt_cdi_clone";

/// Renders the metrics text; every name starts with `prefix`.
pub fn render(prefix: &str, owner_uid: &str, progress: &Progress, extra: &Extra) -> String {
    let s = progress.snapshot();
    let pct = s.percent().unwrap_or(0.0);
    let uid = owner_uid.replace('\\', "\\\\").replace('"', "\\\"");
    let mut out = String::new();
    let mut metric = |name: &str, help: &str, value: String| {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} counter\n{name}{{ownerUID=\"{uid}\"}} {value}\n"
        ));
    };
    metric(
        &format!("{prefix}_progress_total"),
        "The import progress in percentage",
        format!("{pct:.2}"),
    );
    metric(
        &format!("{prefix}_source_bytes_total"),
        "Bytes read from the source",
        s.source_read.to_string(),
    );
    metric(
        &format!("{prefix}_written_bytes_total"),
        "Image bytes written to the target",
        s.written.to_string(),
    );
    metric(
        &format!("{prefix}_hole_bytes_total"),
        "Image bytes left as holes",
        s.holes.to_string(),
    );
    metric(
        &format!("{prefix}_resumes_total"),
        "Transfers resumed after a dropped or stalled connection",
        extra.resumes.load(Ordering::Relaxed).to_string(),
    );
    out
}

/// [`serve`], logging where it listens, or why it could not (the work goes on without it).
pub fn start(
    addr: &str,
    prefix: &'static str,
    owner_uid: String,
    progress: &Arc<Progress>,
    extra: &Arc<Extra>,
) {
    match serve(
        addr,
        prefix,
        owner_uid,
        Arc::clone(progress),
        Arc::clone(extra),
    ) {
        Ok(addr) => tracing::info!(%addr, "Serving metrics over HTTPS."),
        Err(e) => tracing::warn!(error = %e, %addr, "Metrics server not started."),
    }
}

/// Starts the HTTPS metrics server on `addr` in a background thread; returns the bound address.
pub fn serve(
    addr: &str,
    prefix: &'static str,
    owner_uid: String,
    progress: Arc<Progress>,
    extra: Arc<Extra>,
) -> anyhow::Result<std::net::SocketAddr> {
    let cert = rcgen::generate_simple_self_signed(vec![
        "localhost".to_string(),
        "cdi-importer".to_string(),
        "cdi-cloner".to_string(),
    ])?;
    let key = rustls::pki_types::PrivateKeyDer::try_from(cert.signing_key.serialize_der())
        .map_err(|e| anyhow::anyhow!("metrics key: {e}"))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert.der().clone()], key)?;
    let tls = Arc::new(tls);
    let listener = TcpListener::bind(addr)?;
    let bound = listener.local_addr()?;
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let (tls, uid, progress, extra) = (
                Arc::clone(&tls),
                owner_uid.clone(),
                Arc::clone(&progress),
                Arc::clone(&extra),
            );
            std::thread::spawn(move || {
                let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(5)));
                let Ok(conn) = rustls::ServerConnection::new(tls) else {
                    return;
                };
                let mut tls_stream = rustls::StreamOwned::new(conn, stream);
                let mut reader = BufReader::new(&mut tls_stream);
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    return;
                }
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).map_or(true, |n| n == 0) || h == "\r\n" {
                        break;
                    }
                }
                let path = line.split_whitespace().nth(1).unwrap_or("");
                let (status, body) = if path == "/metrics" {
                    ("200 OK", render(prefix, &uid, &progress, &extra))
                } else {
                    ("404 Not Found", String::new())
                };
                let _ = write!(
                    tls_stream,
                    "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls_stream.flush();
                tls_stream.conn.send_close_notify();
                let _ = tls_stream.flush();
            });
        }
    });
    Ok(bound)
}
