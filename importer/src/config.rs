//! CDI's importer environment contract, validated into a [`Config`]. Every invalid value is an
//! error that names its variable.

use std::path::PathBuf;

use cdi_datapath::Checksum;
use cdi_worker::env::{ConfigError, Env, bad};
use cdi_worker::paths::Paths;

/// Where the data comes from (`IMPORTER_SOURCE`), with the settings only that source uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceKind {
    Http {
        url: String,
        /// `IMPORTER_ACCESS_KEY_ID` / `IMPORTER_SECRET_KEY`: basic auth.
        basic_auth: Option<(String, String)>,
        /// `IMPORTER_EXTRA_HEADER_<i>` and the files in `/extraheaders/`.
        extra_headers: Vec<(String, String)>,
    },
    S3 {
        url: String,
        /// `IMPORTER_ACCESS_KEY_ID` / `IMPORTER_SECRET_KEY` (the secret's `accessKeyId`,
        /// `secretKey`); none for a public object.
        credentials: Option<(String, String)>,
    },
    Gcs {
        url: String,
        /// `GOOGLE_APPLICATION_CREDENTIALS`: the service-account key CDI mounts at
        /// `/google/credentials.json`; none for a public object.
        credentials_file: Option<PathBuf>,
    },
    Registry {
        url: String,
        /// `IMPORTER_ACCESS_KEY_ID` / `IMPORTER_SECRET_KEY`: the registry's user and password.
        credentials: Option<(String, String)>,
        /// `IMPORTER_REGISTRY_IMAGE_ARCHITECTURE`: which image of an index.
        architecture: Option<String>,
    },
    /// `IMPORTER_PULL_METHOD=node`: the kubelet runs the image as another container of this
    /// pod, where `cdi-containerimage-server` serves its disk file on localhost.
    NodePull {
        /// `IMPORTER_READY_FILE`: holds the file's name once the server listens.
        ready_file: PathBuf,
        /// `IMPORTER_DONE_FILE`: made when the import ends, so that the server exits.
        done_file: PathBuf,
        /// The server's port: 8100 as upstream (`CDI_IMAGE_SERVER_PORT` for tests).
        port: u16,
    },
    /// `none`: a blank disk.
    Blank,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentType {
    Kubevirt,
    Archive,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub source: SourceKind,
    pub content_type: ContentType,
    /// `IMPORTER_IMAGE_SIZE`: the PVC request (after inflation).
    pub image_size: Option<u64>,
    pub owner_uid: String,
    pub filesystem_overhead: f64,
    pub preallocation: bool,
    pub insecure_tls: bool,
    pub cert_dirs: Vec<PathBuf>,
    pub checksum: Option<Checksum>,
    /// `CACHE_MODE=TRYNONE` (set by the controller after an OOM kill): write with direct I/O
    /// where the volume supports it, even where io_uring is not available.
    pub cache_mode_try_none: bool,
}

impl Config {
    /// `env` reads one variable; `vars` lists all (for `IMPORTER_EXTRA_HEADER_<i>`).
    pub fn from_env(
        env: &dyn Fn(&str) -> Option<String>,
        vars: &[(String, String)],
        paths: &Paths,
    ) -> Result<Config, ConfigError> {
        let env = Env::new(env);
        let get = |n: &str| env.get(n);
        let credentials = match (get("IMPORTER_ACCESS_KEY_ID"), get("IMPORTER_SECRET_KEY")) {
            (Some(u), Some(p)) => Some((u, p)),
            (None, None) => None,
            _ => {
                return Err(bad(
                    "IMPORTER_ACCESS_KEY_ID",
                    "IMPORTER_ACCESS_KEY_ID and IMPORTER_SECRET_KEY must be given together",
                ));
            }
        };
        let endpoint = |why: &str, schemes: &[&str]| -> Result<String, ConfigError> {
            let url = env.require("IMPORTER_ENDPOINT", why)?;
            let lower = url.to_ascii_lowercase();
            if !schemes
                .iter()
                .any(|s| lower.starts_with(&format!("{s}://")))
            {
                return Err(bad(
                    "IMPORTER_ENDPOINT",
                    format!("{url:?} is not a {} URL", schemes.join(" or ")),
                ));
            }
            Ok(url)
        };
        let source = match get("IMPORTER_SOURCE").as_deref().unwrap_or("http") {
            "http" => SourceKind::Http {
                url: endpoint("for the http source", &["http", "https"])?,
                basic_auth: credentials,
                extra_headers: extra_headers(vars, paths)?,
            },
            "s3" => SourceKind::S3 {
                url: endpoint("for the s3 source", &["s3", "http", "https"])?,
                credentials,
            },
            "gcs" => SourceKind::Gcs {
                url: endpoint("for the gcs source", &["gs", "http", "https"])?,
                credentials_file: get("GOOGLE_APPLICATION_CREDENTIALS")
                    .map(|f| paths.container(&f)),
            },
            "registry" => match get("IMPORTER_PULL_METHOD").as_deref() {
                None | Some("pod") => SourceKind::Registry {
                    url: endpoint("for the registry source", &["docker"])?,
                    credentials,
                    architecture: get("IMPORTER_REGISTRY_IMAGE_ARCHITECTURE"),
                },
                Some("node") => SourceKind::NodePull {
                    ready_file: paths
                        .container(&env.require("IMPORTER_READY_FILE", "for pullMethod node")?),
                    done_file: paths
                        .container(&env.require("IMPORTER_DONE_FILE", "for pullMethod node")?),
                    port: match get("CDI_IMAGE_SERVER_PORT") {
                        None => 8100,
                        Some(p) => p.parse().map_err(|_| {
                            bad("CDI_IMAGE_SERVER_PORT", format!("{p:?} is not a port"))
                        })?,
                    },
                },
                Some(other) => {
                    return Err(bad(
                        "IMPORTER_PULL_METHOD",
                        format!("{other:?} is not pod or node"),
                    ));
                }
            },
            "none" => SourceKind::Blank,
            s @ ("imageio" | "vddk") => {
                return Err(bad(
                    "IMPORTER_SOURCE",
                    format!("source {s:?} is not supported by this importer yet"),
                ));
            }
            other => {
                return Err(bad(
                    "IMPORTER_SOURCE",
                    format!("unknown data source {other:?}"),
                ));
            }
        };
        let content_type = match get("IMPORTER_CONTENTTYPE").as_deref().unwrap_or("kubevirt") {
            "kubevirt" => ContentType::Kubevirt,
            "archive" => ContentType::Archive,
            other => {
                return Err(bad(
                    "IMPORTER_CONTENTTYPE",
                    format!("{other:?} is not kubevirt or archive"),
                ));
            }
        };
        if content_type == ContentType::Archive && source == SourceKind::Blank {
            return Err(bad(
                "IMPORTER_CONTENTTYPE",
                "archive content cannot be used with a blank disk",
            ));
        }
        let image_size = env.size("IMPORTER_IMAGE_SIZE")?;
        let filesystem_overhead = env.filesystem_overhead()?;
        // Upstream requires PREALLOCATION; a missing value means false here.
        let preallocation = env.bool("PREALLOCATION", false)?;
        let insecure_tls = env.bool("INSECURE_TLS", false)?;
        let cert_dirs = ["IMPORTER_CERT_DIR", "IMPORTER_PROXY_CERT_DIR"]
            .iter()
            .filter_map(|v| get(v).map(|d| paths.container(&d)))
            .collect();
        let checksum = get("IMPORTER_CHECKSUM")
            .map(|v| {
                v.parse::<Checksum>()
                    .map_err(|e| bad("IMPORTER_CHECKSUM", e.to_string()))
            })
            .transpose()?;
        let cache_mode_try_none = match get("CACHE_MODE").as_deref() {
            None => false,
            Some("TRYNONE") => true,
            Some(other) => return Err(bad("CACHE_MODE", format!("{other:?} is not TRYNONE"))),
        };
        Ok(Config {
            source,
            content_type,
            image_size,
            owner_uid: get("OWNER_UID").unwrap_or_default(),
            filesystem_overhead,
            preallocation,
            insecure_tls,
            cert_dirs,
            checksum,
            cache_mode_try_none,
        })
    }
}

/// `IMPORTER_EXTRA_HEADER_<i>` in index order, then the files in `/extraheaders/`.
fn extra_headers(
    vars: &[(String, String)],
    paths: &Paths,
) -> Result<Vec<(String, String)>, ConfigError> {
    let mut extra_headers = Vec::new();
    let mut numbered: Vec<(u32, &String, &String)> = vars
        .iter()
        .filter_map(|(k, v)| k.strip_prefix("IMPORTER_EXTRA_HEADER_").map(|i| (i, k, v)))
        .map(|(i, k, v)| {
            i.parse::<u32>()
                .map(|i| (i, k, v))
                .map_err(|_| bad(k, "the suffix must be a number"))
        })
        .collect::<Result<_, _>>()?;
    numbered.sort();
    for (_, k, v) in numbered {
        extra_headers.push(parse_header(k, v)?);
    }
    if let Ok(dir) = std::fs::read_dir(&paths.extra_headers) {
        let mut files: Vec<_> = dir
            .flatten()
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .collect();
        files.sort_by_key(|e| e.file_name());
        for f in files {
            if f.path().is_file() {
                let v = std::fs::read_to_string(f.path())
                    .map_err(|e| bad("/extraheaders", e.to_string()))?;
                extra_headers.push(parse_header("/extraheaders", v.trim())?);
            }
        }
    }
    Ok(extra_headers)
}

fn parse_header(var: &str, v: &str) -> Result<(String, String), ConfigError> {
    let (name, value) = v
        .split_once(':')
        .ok_or_else(|| bad(var, "expected \"Name: value\""))?;
    if name.trim().is_empty() || name.contains(char::is_whitespace) {
        return Err(bad(var, "the header name is empty or has spaces"));
    }
    Ok((name.trim().to_string(), value.trim().to_string()))
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
        let list: Vec<(String, String)> = map.clone().into_iter().collect();
        let paths = Paths::from_env(&|n| {
            if n == "CDI_ROOT" {
                Some("/nonexistent-root".into())
            } else {
                None
            }
        });
        Config::from_env(&|n| map.get(n).cloned(), &list, &paths)
    }

    #[test]
    fn upstreams_http_env_is_accepted() {
        let c = config(&[
            ("IMPORTER_SOURCE", "http"),
            ("IMPORTER_ENDPOINT", "http://127.0.0.1/disk.qcow2"),
            ("IMPORTER_CONTENTTYPE", "kubevirt"),
            ("IMPORTER_IMAGE_SIZE", "1138166334"),
            ("OWNER_UID", "uid-1"),
            ("FILESYSTEM_OVERHEAD", "0.06"),
            ("INSECURE_TLS", "false"),
            ("PREALLOCATION", "false"),
            ("IMPORTER_EXTRA_HEADER_1", "X-B: 2"),
            ("IMPORTER_EXTRA_HEADER_0", "X-A: 1"),
            ("CACHE_MODE", ""),
            ("IMPORTER_CERT_DIR", "/certs"),
        ])
        .expect("valid");
        assert_eq!(c.image_size, Some(1_138_166_334));
        let SourceKind::Http { extra_headers, .. } = &c.source else {
            panic!("http: {:?}", c.source);
        };
        assert_eq!(
            extra_headers,
            &vec![
                ("X-A".to_owned(), "1".to_owned()),
                ("X-B".to_owned(), "2".to_owned())
            ]
        );
        assert_eq!(c.cert_dirs, vec![PathBuf::from("/nonexistent-root/certs")]);
    }

    #[test]
    fn each_invalid_value_names_its_variable() {
        let base = [("IMPORTER_ENDPOINT", "http://x/")];
        let cases: [(&str, &str); 9] = [
            ("PREALLOCATION", "maybe"),
            ("INSECURE_TLS", "2"),
            ("FILESYSTEM_OVERHEAD", "1.5"),
            ("IMPORTER_IMAGE_SIZE", "10X"),
            ("IMPORTER_CHECKSUM", "sha256:123"),
            ("IMPORTER_CONTENTTYPE", "iso"),
            ("IMPORTER_SOURCE", "vddk"),
            ("IMPORTER_PULL_METHOD", "sideways"),
            ("CACHE_MODE", "FAST"),
        ];
        for (var, value) in cases {
            let mut vars = base.to_vec();
            if var == "IMPORTER_PULL_METHOD" {
                vars = vec![
                    ("IMPORTER_SOURCE", "registry"),
                    ("IMPORTER_ENDPOINT", "docker://quay.io/x/y"),
                ];
            }
            vars.push((var, value));
            let err = config(&vars).expect_err(var);
            assert_eq!(err.var, var, "{err}");
        }
        assert_eq!(
            config(&[("IMPORTER_SOURCE", "http")])
                .expect_err("no url")
                .var,
            "IMPORTER_ENDPOINT"
        );
    }

    #[test]
    fn object_stores_and_registries_take_their_own_settings() {
        let keys = [
            ("IMPORTER_ACCESS_KEY_ID", "AKID"),
            ("IMPORTER_SECRET_KEY", "secret"),
        ];
        let with = |extra: &[(&'static str, &'static str)]| {
            let mut vars = keys.to_vec();
            vars.extend_from_slice(extra);
            config(&vars).expect("valid").source
        };
        assert_eq!(
            with(&[
                ("IMPORTER_SOURCE", "s3"),
                (
                    "IMPORTER_ENDPOINT",
                    "https://s3.eu-west-1.amazonaws.com/b/k.img"
                ),
            ]),
            SourceKind::S3 {
                url: "https://s3.eu-west-1.amazonaws.com/b/k.img".into(),
                credentials: Some(("AKID".into(), "secret".into())),
            }
        );
        assert_eq!(
            config(&[
                ("IMPORTER_SOURCE", "gcs"),
                ("IMPORTER_ENDPOINT", "gs://b/o.img"),
                ("GOOGLE_APPLICATION_CREDENTIALS", "/google/credentials.json"),
            ])
            .expect("gcs")
            .source,
            SourceKind::Gcs {
                url: "gs://b/o.img".into(),
                credentials_file: Some(PathBuf::from("/nonexistent-root/google/credentials.json")),
            }
        );
        assert_eq!(
            with(&[
                ("IMPORTER_SOURCE", "registry"),
                (
                    "IMPORTER_ENDPOINT",
                    "docker://quay.io/containerdisks/fedora:42"
                ),
                ("IMPORTER_PULL_METHOD", "pod"),
                ("IMPORTER_REGISTRY_IMAGE_ARCHITECTURE", "arm64"),
            ]),
            SourceKind::Registry {
                url: "docker://quay.io/containerdisks/fedora:42".into(),
                credentials: Some(("AKID".into(), "secret".into())),
                architecture: Some("arm64".into()),
            }
        );
        for (source, url) in [
            ("s3", "ftp://x/y"),
            ("gcs", "s3://b/k"),
            ("registry", "https://quay.io/x"),
        ] {
            let e =
                config(&[("IMPORTER_SOURCE", source), ("IMPORTER_ENDPOINT", url)]).expect_err(url);
            assert_eq!(e.var, "IMPORTER_ENDPOINT", "{source}: {e}");
        }
    }
}
