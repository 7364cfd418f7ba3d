//! The upload server's environment contract (upstream's names, plus our own `CDI_UPLOAD_*`
//! timeouts), validated into a [`Config`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use cdi_datapath::sink::CacheMode;
use cdi_worker::env::{ConfigError, Env, bad};
use cdi_worker::{Destination, Paths, TargetSpec};

/// Upstream's default target on a Filesystem volume.
const DEFAULT_DESTINATION: &str = "/data/disk.img";

/// What an upload holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentType {
    /// A disk image (raw, qcow2, optionally compressed).
    Kubevirt,
    /// A tar archive unpacked into the volume.
    Archive,
    /// A clone stream from `cdi-cloner` (ours: `cdi_formats::clonestream`), on every upload
    /// route that takes a body; the target becomes the source's exact copy.
    Clone,
}

/// The TLS material, as files.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub key: PathBuf,
    pub cert: PathBuf,
    /// CA bundle client certificates must chain to.
    pub client_ca: PathBuf,
    /// `TLS_MIN_VERSION` (`VersionTLS12`, `VersionTLS13`).
    pub min_version: Option<String>,
    /// `TLS_CIPHERS`: TLS 1.2 cipher suites by IANA name, comma separated.
    pub ciphers: Vec<String>,
}

/// How long a slow or silent client may hold a connection, in whole seconds from
/// `CDI_UPLOAD_HANDSHAKE_TIMEOUT`, `CDI_UPLOAD_HEADER_TIMEOUT` and `CDI_UPLOAD_BODY_IDLE_TIMEOUT`
/// (ours, not upstream's; tests shorten them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// The TLS handshake must finish within this (10 s).
    pub handshake: Duration,
    /// A request's headers must arrive within this, and a connection with no request in
    /// progress is closed after it (30 s).
    pub header: Duration,
    /// A request body that sends nothing for this long fails (60 s).
    pub body_idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            handshake: Duration::from_secs(10),
            header: Duration::from_secs(30),
            body_idle: Duration::from_secs(60),
        }
    }
}

/// Longest timeout the variables take: a day.
const MAX_TIMEOUT_SECS: u64 = 86_400;

impl Timeouts {
    fn from_env(env: &Env) -> Result<Timeouts, ConfigError> {
        let d = Timeouts::default();
        let secs = |var: &str, default: Duration| -> Result<Duration, ConfigError> {
            let Some(v) = env.get(var) else {
                return Ok(default);
            };
            v.trim()
                .parse::<u64>()
                .ok()
                .filter(|s| (1..=MAX_TIMEOUT_SECS).contains(s))
                .map(Duration::from_secs)
                .ok_or_else(|| {
                    bad(
                        var,
                        format!(
                            "{v:?} is not a whole number of seconds from 1 to {MAX_TIMEOUT_SECS}"
                        ),
                    )
                })
        };
        Ok(Timeouts {
            handshake: secs("CDI_UPLOAD_HANDSHAKE_TIMEOUT", d.handshake)?,
            header: secs("CDI_UPLOAD_HEADER_TIMEOUT", d.header)?,
            body_idle: secs("CDI_UPLOAD_BODY_IDLE_TIMEOUT", d.body_idle)?,
        })
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub tls: TlsFiles,
    /// `CLIENT_NAME`: the common name a client certificate must carry.
    pub client_name: String,
    pub target: TargetSpec,
    /// `CONTENT_TYPE`: what a resumable (tus) upload holds; the plain routes say it by path.
    pub content_type: ContentType,
    /// `DEADLINE`: when an idle server exits so its pod gets fresh certificates.
    pub deadline: Option<SystemTime>,
    pub listen: SocketAddr,
    /// Label of the progress metrics (`OWNER_UID`).
    pub owner_uid: String,
    /// Where a qcow2 stream may spill clusters it cannot place yet.
    pub spill_dir: PathBuf,
    pub timeouts: Timeouts,
}

impl Config {
    pub fn from_env(
        lookup: &dyn Fn(&str) -> Option<String>,
        paths: &Paths,
    ) -> Result<Config, ConfigError> {
        let env = Env::new(lookup);
        let file = |var: &str| -> Result<PathBuf, ConfigError> {
            Ok(paths.container(&env.require(var, "(the upload server only serves TLS)")?))
        };
        let tls = TlsFiles {
            key: file("TLS_KEY_FILE")?,
            cert: file("TLS_CERT_FILE")?,
            client_ca: file("CLIENT_CERT_FILE")?,
            min_version: env.get("TLS_MIN_VERSION"),
            ciphers: env
                .get("TLS_CIPHERS")
                .map(|c| {
                    c.split(',')
                        .map(|s| s.trim().to_owned())
                        .filter(|s| !s.is_empty())
                        .collect()
                })
                .unwrap_or_default(),
        };
        let client_name = env.require("CLIENT_NAME", "to check client certificates")?;
        let destination = env
            .get("DESTINATION")
            .unwrap_or_else(|| DEFAULT_DESTINATION.into());
        let destination = Destination::from_path(paths, &destination);
        let target = TargetSpec {
            image_size: env.size("UPLOAD_IMAGE_SIZE")?,
            filesystem_overhead: if destination.is_block() {
                0.0
            } else {
                env.filesystem_overhead()?
            },
            preallocation: env.bool("PREALLOCATION", false)?,
            cache: CacheMode::Auto,
            destination,
        };
        let content_type = match env.get("CONTENT_TYPE").as_deref() {
            None | Some("kubevirt") => ContentType::Kubevirt,
            Some("archive") => ContentType::Archive,
            Some("clone") => ContentType::Clone,
            Some(other) => {
                return Err(bad(
                    "CONTENT_TYPE",
                    format!("{other:?} is not kubevirt, archive or clone"),
                ));
            }
        };
        if content_type == ContentType::Archive && target.destination.is_block() {
            return Err(bad(
                "CONTENT_TYPE",
                "archive content needs a Filesystem volume, not a Block volume",
            ));
        }
        let deadline = env
            .get("DEADLINE")
            .map(|v| {
                parse_rfc3339(&v)
                    .ok_or_else(|| bad("DEADLINE", format!("{v:?} is not an RFC 3339 time")))
            })
            .transpose()?;
        let port = env.get("LISTEN_PORT").unwrap_or_else(|| "8443".into());
        // The test kubelet stand-in maps each container port to a loopback port of its own.
        let listen = match env.get(&format!("CDI_PORT_{port}")) {
            Some(mapped) => mapped,
            None => {
                let address = env
                    .get("LISTEN_ADDRESS")
                    .unwrap_or_else(|| "0.0.0.0".into());
                if address.contains(':') {
                    format!("[{address}]:{port}")
                } else {
                    format!("{address}:{port}")
                }
            }
        };
        let listen = listen.parse().map_err(|_| {
            bad(
                "LISTEN_ADDRESS",
                format!("{listen:?} is not an address and port"),
            )
        })?;
        let spill_dir = if paths.scratch.is_dir() {
            paths.scratch.clone()
        } else {
            paths.data_dir.clone()
        };
        Ok(Config {
            tls,
            client_name,
            target,
            content_type,
            deadline,
            listen,
            owner_uid: env.get("OWNER_UID").unwrap_or_default(),
            spill_dir,
            timeouts: Timeouts::from_env(&env)?,
        })
    }
}

/// `2026-12-02T16:20:00Z` or with an offset (`+01:00`), fractions allowed; as Go's RFC 3339.
pub fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    let s = s.trim();
    let (date, time) = s.split_once(['T', 't', ' '])?;
    let mut d = date.splitn(3, '-');
    let (year, month, day): (i64, i64, i64) = (
        d.next()?.parse().ok()?,
        d.next()?.parse().ok()?,
        d.next()?.parse().ok()?,
    );
    let (clock, offset) = if let Some(c) = time.strip_suffix(['Z', 'z']) {
        (c, 0i64)
    } else {
        let at = time.rfind(['+', '-'])?;
        let (c, o) = time.split_at(at);
        let sign = if o.starts_with('-') { -1 } else { 1 };
        let (oh, om) = o[1..].split_once(':')?;
        (
            c,
            sign * (oh.parse::<i64>().ok()? * 3600 + om.parse::<i64>().ok()? * 60),
        )
    };
    let (hms, fraction) = clock.split_once('.').unwrap_or((clock, ""));
    let mut t = hms.splitn(3, ':');
    let (h, m, sec): (i64, i64, i64) = (
        t.next()?.parse().ok()?,
        t.next()?.parse().ok()?,
        t.next()?.parse().ok()?,
    );
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || h > 23 || m > 59 || sec > 60 {
        return None;
    }
    if !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let nanos: u32 = if fraction.is_empty() {
        0
    } else {
        format!("{:0<9}", &fraction[..fraction.len().min(9)])
            .parse()
            .ok()?
    };
    // Days since 1970-01-01 (proleptic Gregorian; Howard Hinnant's civil-from-days inverse).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + m * 60 + sec - offset;
    let secs = u64::try_from(secs).ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::new(secs, nanos))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let paths = Paths::from_env(&|n| (n == "CDI_ROOT").then(|| "/nonexistent-root".into()));
        Config::from_env(&|n| map.get(n).cloned(), &paths)
    }

    const TLS: [(&str, &str); 4] = [
        ("TLS_KEY_FILE", "/etc/tls/tls.key"),
        ("TLS_CERT_FILE", "/etc/tls/tls.crt"),
        ("CLIENT_CERT_FILE", "/etc/tls/ca.crt"),
        ("CLIENT_NAME", "client.upload-server.cdi.kubevirt.io"),
    ];

    #[test]
    fn upstreams_upload_pod_env_is_accepted() {
        let mut vars = TLS.to_vec();
        vars.extend([
            ("UPLOAD_IMAGE_SIZE", "1138166334"),
            ("FILESYSTEM_OVERHEAD", "0.055"),
            ("PREALLOCATION", "false"),
            ("TLS_MIN_VERSION", "VersionTLS12"),
            ("TLS_CIPHERS", ""),
            ("DEADLINE", "2026-12-03T04:20:00Z"),
        ]);
        let c = config(&vars).expect("valid");
        assert_eq!(c.target.image_size, Some(1_138_166_334));
        assert_eq!(
            c.target.destination,
            Destination::File("/nonexistent-root/data/disk.img".into())
        );
        assert_eq!(
            c.tls.key,
            PathBuf::from("/nonexistent-root/etc/tls/tls.key")
        );
        assert_eq!(c.listen, "0.0.0.0:8443".parse().expect("addr"));
        assert_eq!(c.deadline, parse_rfc3339("2026-12-03T05:20:00+01:00"));
        assert_eq!(c.timeouts, Timeouts::default());
    }

    #[test]
    fn timeouts_are_whole_seconds_from_our_own_variables() {
        let mut vars = TLS.to_vec();
        vars.extend([
            ("CDI_UPLOAD_HANDSHAKE_TIMEOUT", "2"),
            ("CDI_UPLOAD_HEADER_TIMEOUT", " 3 "),
            ("CDI_UPLOAD_BODY_IDLE_TIMEOUT", "600"),
        ]);
        let t = config(&vars).expect("valid").timeouts;
        assert_eq!(t.handshake, Duration::from_secs(2));
        assert_eq!(t.header, Duration::from_secs(3));
        assert_eq!(t.body_idle, Duration::from_secs(600));
        for value in ["0", "1.5", "10s", "-1", "86401"] {
            let mut vars = TLS.to_vec();
            vars.push(("CDI_UPLOAD_BODY_IDLE_TIMEOUT", value));
            let e = config(&vars).expect_err(value);
            assert_eq!(e.var, "CDI_UPLOAD_BODY_IDLE_TIMEOUT");
            assert!(e.message.contains("whole number of seconds"), "{e}");
        }
    }

    #[test]
    fn block_destination_has_no_filesystem_overhead() {
        let mut vars = TLS.to_vec();
        vars.extend([
            ("DESTINATION", "/dev/cdi-block-volume"),
            ("FILESYSTEM_OVERHEAD", "0.1"),
        ]);
        let c = config(&vars).expect("valid");
        assert!(c.target.destination.is_block());
        assert_eq!(c.target.filesystem_overhead, 0.0);
    }

    #[test]
    fn clone_content_goes_to_either_volume_mode() {
        for destination in ["/data/disk.img", "/dev/cdi-block-volume"] {
            let mut vars = TLS.to_vec();
            vars.extend([("CONTENT_TYPE", "clone"), ("DESTINATION", destination)]);
            assert_eq!(
                config(&vars).expect("valid").content_type,
                ContentType::Clone
            );
        }
    }

    #[test]
    fn missing_tls_files_and_bad_values_name_their_variable() {
        assert_eq!(config(&TLS[1..]).expect_err("no key").var, "TLS_KEY_FILE");
        for (var, value) in [
            ("DEADLINE", "tomorrow"),
            ("UPLOAD_IMAGE_SIZE", "big"),
            ("CONTENT_TYPE", "iso"),
            ("LISTEN_ADDRESS", "not an address"),
        ] {
            let mut vars = TLS.to_vec();
            vars.push((var, value));
            assert_eq!(config(&vars).expect_err(var).var, var);
        }
    }

    #[test]
    fn rfc3339_times_convert_exactly() {
        let t = |s| {
            parse_rfc3339(s)
                .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
                .map(|d| (d.as_secs(), d.subsec_nanos()))
        };
        assert_eq!(t("1970-01-01T00:00:00Z"), Some((0, 0)));
        assert_eq!(
            t("2000-02-29T12:00:00.5Z"),
            Some((951_825_600, 500_000_000))
        );
        assert_eq!(t("2026-12-02T17:20:00+01:00"), Some((1_796_228_400, 0)));
        assert_eq!(t("2026-13-02T17:20:00Z"), None);
        assert_eq!(t("2026-12-02"), None);
    }
}
