//! Flags (each also read from the environment) and the configuration they make.
//!
//! | Flag | Env | Default |
//! |---|---|---|
//! | `--listen-address` | `LISTEN_ADDRESS` | `0.0.0.0` |
//! | `--listen-port` | `LISTEN_PORT` | `8443` |
//! | `--tls-cert` | `SERVER_CERT_FILE` | `/var/run/certs/cdi-uploadproxy-server-cert/tls.crt` |
//! | `--tls-key` | `SERVER_KEY_FILE` | `/var/run/certs/cdi-uploadproxy-server-cert/tls.key` |
//! | `--client-cert` | `UPLOAD_CLIENT_CERT_FILE` | `/var/run/certs/cdi-uploadserver-client-cert/tls.crt` |
//! | `--client-key` | `UPLOAD_CLIENT_KEY_FILE` | `/var/run/certs/cdi-uploadserver-client-cert/tls.key` |
//! | `--server-ca` | `UPLOAD_SERVER_CA_FILE` | `/var/run/certs/cdi-uploadserver-signer-bundle/ca-bundle.crt` |
//! | `--token-public-key` | `APISERVER_PUBLIC_KEY_FILE` | `/var/run/certs/cdi-api-public/id_rsa.pub` |
//! | `--page-dir` | `PAGE_DIR` | none (`/` and `/static/*` answer 404) |
//! | `--ready-timeout`, `--ready-interval` | `READY_TIMEOUT`, `READY_INTERVAL` | `10s`, `1s` |
//! | `--connect-timeout` | `CONNECT_TIMEOUT` | `10s` |
//! | `--idle-timeout` | `IDLE_TIMEOUT` | `5m` |
//! | `--response-timeout` | `RESPONSE_TIMEOUT` | `24h` |
//! | `--header-read-timeout` | `HEADER_READ_TIMEOUT` | `30s` |
//! | `--reload-interval` | `RELOAD_INTERVAL` | `5s` |
//! | `--kubeconfig` | `KUBECONFIG` | in-cluster configuration |
//!
//! The environment names of the certificate files are upstream's. Upstream passes the token
//! public key inline (`APISERVER_PUBLIC_KEY`); ours is a file so that it can be a bundle of
//! several keys while they rotate, and be reloaded.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::forward::ForwardTimeouts;
use crate::readiness::ReadinessPolicy;
use crate::server::ServeLimits;

/// The public upload endpoint of CDI: checks the upload token and the claim, then streams the
/// upload to the claim's upload server over mutual TLS.
#[derive(Debug, Parser)]
#[command(name = "cdi-uploadproxy", version)]
pub struct Args {
    /// Address to listen on.
    #[arg(long, env = "LISTEN_ADDRESS", default_value = "0.0.0.0")]
    pub listen_address: IpAddr,
    /// Port to listen on (HTTPS).
    #[arg(long, env = "LISTEN_PORT", default_value_t = 8443)]
    pub listen_port: u16,
    /// Serving certificate chain (PEM); reloaded when it changes.
    #[arg(
        long,
        env = "SERVER_CERT_FILE",
        default_value = "/var/run/certs/cdi-uploadproxy-server-cert/tls.crt"
    )]
    pub tls_cert: PathBuf,
    /// Serving certificate key (PEM).
    #[arg(
        long,
        env = "SERVER_KEY_FILE",
        default_value = "/var/run/certs/cdi-uploadproxy-server-cert/tls.key"
    )]
    pub tls_key: PathBuf,
    /// Client certificate presented to upload servers (PEM).
    #[arg(
        long,
        env = "UPLOAD_CLIENT_CERT_FILE",
        default_value = "/var/run/certs/cdi-uploadserver-client-cert/tls.crt"
    )]
    pub client_cert: PathBuf,
    /// Key of the client certificate (PEM).
    #[arg(
        long,
        env = "UPLOAD_CLIENT_KEY_FILE",
        default_value = "/var/run/certs/cdi-uploadserver-client-cert/tls.key"
    )]
    pub client_key: PathBuf,
    /// CA bundle upload servers' certificates are verified against (PEM).
    #[arg(
        long,
        env = "UPLOAD_SERVER_CA_FILE",
        default_value = "/var/run/certs/cdi-uploadserver-signer-bundle/ca-bundle.crt"
    )]
    pub server_ca: PathBuf,
    /// The API server's token-signing public key(s) (PEM bundle).
    #[arg(
        long,
        env = "APISERVER_PUBLIC_KEY_FILE",
        default_value = "/var/run/certs/cdi-api-public/id_rsa.pub"
    )]
    pub token_public_key: PathBuf,
    /// Directory of the browser page (`index.html`, `static/`).
    #[arg(long, env = "PAGE_DIR")]
    pub page_dir: Option<PathBuf>,
    /// How long to wait for a claim's upload server to become ready.
    #[arg(long, env = "READY_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub ready_timeout: Duration,
    /// How often to look at the claim meanwhile.
    #[arg(long, env = "READY_INTERVAL", default_value = "1s", value_parser = parse_duration)]
    pub ready_interval: Duration,
    /// Longest TCP connect plus TLS handshake toward an upload server.
    #[arg(long, env = "CONNECT_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub connect_timeout: Duration,
    /// Longest pause in a client's upload body.
    #[arg(long, env = "IDLE_TIMEOUT", default_value = "5m", value_parser = parse_duration)]
    pub idle_timeout: Duration,
    /// Longest wait for an upload server's answer (a sync upload answers after converting).
    #[arg(long, env = "RESPONSE_TIMEOUT", default_value = "24h", value_parser = parse_duration)]
    pub response_timeout: Duration,
    /// Longest wait for a request's headers, and for a request on an idle connection.
    #[arg(long, env = "HEADER_READ_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub header_read_timeout: Duration,
    /// Longest TLS handshake of a client.
    #[arg(long, env = "TLS_HANDSHAKE_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub tls_handshake_timeout: Duration,
    /// How often certificate and key files are checked for changes.
    #[arg(long, env = "RELOAD_INTERVAL", default_value = "5s", value_parser = parse_duration)]
    pub reload_interval: Duration,
    /// A kubeconfig file; the in-cluster configuration (or $KUBECONFIG) otherwise.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
}

/// What the proxy runs with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Where to listen.
    pub listen: SocketAddr,
    /// Serving certificate chain and key files.
    pub tls_cert: PathBuf,
    /// See `tls_cert`.
    pub tls_key: PathBuf,
    /// Client certificate and key files toward upload servers.
    pub client_cert: PathBuf,
    /// See `client_cert`.
    pub client_key: PathBuf,
    /// CA bundle file for upload servers' certificates.
    pub server_ca: PathBuf,
    /// Token public key bundle file.
    pub token_public_key: PathBuf,
    /// The browser page's directory.
    pub page_dir: Option<PathBuf>,
    /// Waiting for readiness.
    pub readiness: ReadinessPolicy,
    /// Forwarding bounds.
    pub forward: ForwardTimeouts,
    /// Client bounds.
    pub limits: ServeLimits,
    /// How often files are checked for changes.
    pub reload_interval: Duration,
}

impl Args {
    /// The configuration these flags give.
    pub fn config(&self) -> Config {
        Config {
            listen: SocketAddr::new(self.listen_address, self.listen_port),
            tls_cert: self.tls_cert.clone(),
            tls_key: self.tls_key.clone(),
            client_cert: self.client_cert.clone(),
            client_key: self.client_key.clone(),
            server_ca: self.server_ca.clone(),
            token_public_key: self.token_public_key.clone(),
            page_dir: self.page_dir.clone(),
            readiness: ReadinessPolicy {
                timeout: self.ready_timeout,
                interval: self.ready_interval,
            },
            forward: ForwardTimeouts {
                connect: self.connect_timeout,
                idle: self.idle_timeout,
                response: self.response_timeout,
            },
            limits: ServeLimits {
                header_read: self.header_read_timeout,
                tls_handshake: self.tls_handshake_timeout,
                ..ServeLimits::default()
            },
            reload_interval: self.reload_interval,
        }
    }
}

/// `500ms`, `10s`, `5m`, `24h`, or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 500ms, 10s, 5m or 24h"))?;
    let scale = match unit {
        "ms" => return Ok(Duration::from_millis(n)),
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => return Err(format!("{text:?}: unknown unit {unit:?} (ms, s, m or h)")),
    };
    n.checked_mul(scale)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("{text:?} is too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_the_usual_units() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86400)));
        assert!(parse_duration("1d").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn defaults_are_upstreams() {
        let args = Args::try_parse_from(["cdi-uploadproxy"]).expect("defaults");
        let config = args.config();
        assert_eq!(config.listen, "0.0.0.0:8443".parse().expect("addr"));
        assert_eq!(config.readiness, ReadinessPolicy::default());
        assert_eq!(config.forward, ForwardTimeouts::default());
        assert_eq!(config.limits, ServeLimits::default());
        assert_eq!(
            config.tls_cert,
            PathBuf::from("/var/run/certs/cdi-uploadproxy-server-cert/tls.crt")
        );
        assert_eq!(config.page_dir, None);
    }

    #[test]
    fn flags_override_defaults() {
        let args = Args::try_parse_from([
            "cdi-uploadproxy",
            "--listen-address=127.0.0.1",
            "--listen-port=9443",
            "--ready-timeout=2s",
            "--ready-interval=100ms",
            "--page-dir=/srv/page",
            "--tls-handshake-timeout=1s",
            "--header-read-timeout=2s",
            "--idle-timeout=500ms",
        ])
        .expect("flags");
        let config = args.config();
        assert_eq!(config.listen, "127.0.0.1:9443".parse().expect("addr"));
        assert_eq!(config.readiness.timeout, Duration::from_secs(2));
        assert_eq!(config.readiness.interval, Duration::from_millis(100));
        assert_eq!(config.page_dir, Some(PathBuf::from("/srv/page")));
        assert_eq!(config.limits.tls_handshake, Duration::from_secs(1));
        assert_eq!(config.limits.header_read, Duration::from_secs(2));
        assert_eq!(config.forward.idle, Duration::from_millis(500));
    }
}
