//! The cloner's environment contract (upstream's names), validated into a [`Config`].

use std::path::PathBuf;

use cdi_worker::Paths;
use cdi_worker::env::{ConfigError, Env, bad};
use reqwest::Url;

/// How the source claim is mounted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VolumeMode {
    /// `MOUNT_POINT` is the block device, read whole (zero granules skipped).
    Block,
    /// `MOUNT_POINT` is a directory holding `disk.img`, whose holes are skipped.
    Filesystem,
}

/// The mTLS material, as PEM text (upstream passes the contents, not files).
#[derive(Clone)]
pub struct Tls {
    /// `CLIENT_CERT` then `CLIENT_KEY`: the certificate whose CN the upload server checks.
    pub identity_pem: Vec<u8>,
    /// `SERVER_CA_CERT`: the only CA the upload server's certificate may chain to.
    pub server_ca_pem: Vec<u8>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tls { .. }")
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    /// `UPLOAD_URL`: `https://<service>:8443/v1beta1/upload`, as upstream sets it.
    pub upload_url: Url,
    /// Where resumable uploads are created: the same server's tus endpoint.
    pub tus_url: Url,
    /// `UPLOAD_SERVER_ADDR` (ours): where the upload server really listens (its pod's address,
    /// as the upload proxy dials it), for clusters without DNS for its Service. The URLs then
    /// carry its port, and their host is only what the server's certificate is checked against.
    pub server_addr: Option<std::net::SocketAddr>,
    pub tls: Tls,
    /// `OWNER_UID`: the label of the progress metric.
    pub owner_uid: String,
    pub volume_mode: VolumeMode,
    /// The source: the device, or `<MOUNT_POINT>/disk.img`.
    pub source: PathBuf,
    /// `PREALLOCATION`: accepted; preallocating is the target's business.
    pub preallocation: bool,
}

impl Config {
    /// The upload server's host name and where it really listens, when they differ.
    pub fn resolve(&self) -> Option<(String, std::net::SocketAddr)> {
        let host = self.upload_url.host_str()?.to_owned();
        self.server_addr.map(|addr| (host, addr))
    }

    pub fn from_env(
        lookup: &dyn Fn(&str) -> Option<String>,
        paths: &Paths,
    ) -> Result<Config, ConfigError> {
        let env = Env::new(lookup);
        let url = env.require("UPLOAD_URL", "(the target's upload server)")?;
        let upload_url = Url::parse(&url)
            .ok()
            .filter(|u| u.scheme() == "https" && u.host().is_some())
            .ok_or_else(|| bad("UPLOAD_URL", format!("{url:?} is not an https:// URL")))?;
        let server_addr = match env.get("UPLOAD_SERVER_ADDR") {
            None => None,
            Some(a) => Some(a.trim().parse::<std::net::SocketAddr>().map_err(|_| {
                bad(
                    "UPLOAD_SERVER_ADDR",
                    format!("{a:?} is not an address such as 10.0.0.7:8443"),
                )
            })?),
        };
        let mut upload_url = upload_url;
        if let Some(addr) = server_addr
            && upload_url.set_port(Some(addr.port())).is_err()
        {
            return Err(bad("UPLOAD_URL", format!("{url:?} cannot take a port")));
        }
        let tus_url = upload_url
            .join(cdi_tusclient::TUS_PATH)
            .map_err(|e| bad("UPLOAD_URL", format!("no tus endpoint beside it: {e}")))?;
        let pem = |var: &str| -> Result<String, ConfigError> {
            let text = env.require(var, "(PEM text)")?;
            if !text.contains("-----BEGIN ") {
                return Err(bad(var, "is not PEM text"));
            }
            Ok(text)
        };
        let mut identity_pem = pem("CLIENT_CERT")?.into_bytes();
        identity_pem.push(b'\n');
        identity_pem.extend(pem("CLIENT_KEY")?.into_bytes());
        let tls = Tls {
            identity_pem,
            server_ca_pem: pem("SERVER_CA_CERT")?.into_bytes(),
        };
        let volume_mode = match env.get("VOLUME_MODE").as_deref() {
            Some("block") => VolumeMode::Block,
            None | Some("filesystem") => VolumeMode::Filesystem,
            Some(other) => {
                return Err(bad(
                    "VOLUME_MODE",
                    format!("{other:?} is not block or filesystem"),
                ));
            }
        };
        let mount = env.require("MOUNT_POINT", "(where the source claim is mounted)")?;
        let mount = paths.container(&mount);
        let source = match volume_mode {
            VolumeMode::Block => mount,
            VolumeMode::Filesystem => mount.join("disk.img"),
        };
        Ok(Config {
            upload_url,
            tus_url,
            server_addr,
            tls,
            owner_uid: env.get("OWNER_UID").unwrap_or_default(),
            volume_mode,
            source,
            preallocation: env.bool("PREALLOCATION", false)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    const PEM: &str = "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n";

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let paths = Paths::from_env(&|n| (n == "CDI_ROOT").then(|| "/root".into()));
        Config::from_env(&|n| map.get(n).cloned(), &paths)
    }

    fn upstream(mode: &str, mount: &str) -> Vec<(&'static str, String)> {
        vec![
            (
                "UPLOAD_URL",
                "https://cdi-upload-tmp-pvc-1.ns.svc:8443/v1beta1/upload".into(),
            ),
            ("CLIENT_CERT", PEM.into()),
            ("CLIENT_KEY", PEM.into()),
            ("SERVER_CA_CERT", PEM.into()),
            ("OWNER_UID", "uid-1".into()),
            ("VOLUME_MODE", mode.into()),
            ("MOUNT_POINT", mount.into()),
            ("PREALLOCATION", "false".into()),
        ]
    }

    fn with(vars: &[(&'static str, String)]) -> Result<Config, ConfigError> {
        let v: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
        config(&v)
    }

    #[test]
    fn upstreams_cloner_env_is_accepted_for_both_volume_modes() {
        let fs = with(&upstream("filesystem", "/var/run/cdi/clone/source")).expect("valid");
        assert_eq!(fs.volume_mode, VolumeMode::Filesystem);
        assert_eq!(
            fs.source,
            PathBuf::from("/root/var/run/cdi/clone/source/disk.img")
        );
        assert_eq!(
            fs.tus_url.as_str(),
            "https://cdi-upload-tmp-pvc-1.ns.svc:8443/v1beta1/upload-tus"
        );
        assert_eq!(fs.owner_uid, "uid-1");
        let block = with(&upstream("block", "/dev/cdi-block-volume")).expect("valid");
        assert_eq!(block.volume_mode, VolumeMode::Block);
        assert_eq!(block.source, PathBuf::from("/root/dev/cdi-block-volume"));
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (var, value) in [
            ("UPLOAD_URL", "http://plain:8443/v1beta1/upload"),
            ("VOLUME_MODE", "tape"),
            ("CLIENT_CERT", "not pem"),
            ("SERVER_CA_CERT", ""),
            ("MOUNT_POINT", ""),
        ] {
            let mut vars = upstream("block", "/dev/cdi-block-volume");
            vars.retain(|(k, _)| *k != var);
            vars.push((var, value.into()));
            assert_eq!(with(&vars).expect_err(var).var, var);
        }
    }

    #[test]
    fn a_server_address_is_dialled_with_the_services_name() {
        let mut vars = upstream("filesystem", "/var/run/cdi/clone/source");
        vars[0].1 = "https://cdi-upload-disk.vms.svc/v1beta1/upload".into();
        vars.push(("UPLOAD_SERVER_ADDR", "10.1.2.3:31443".into()));
        let c = with(&vars).expect("valid");
        assert_eq!(
            c.upload_url.as_str(),
            "https://cdi-upload-disk.vms.svc:31443/v1beta1/upload"
        );
        assert_eq!(c.tus_url.port(), Some(31443));
        assert_eq!(
            c.resolve(),
            Some((
                "cdi-upload-disk.vms.svc".to_owned(),
                "10.1.2.3:31443".parse().expect("addr")
            ))
        );
        vars.pop();
        vars.push(("UPLOAD_SERVER_ADDR", "somewhere".into()));
        let err = with(&vars).expect_err("not an address");
        assert!(err.to_string().contains("UPLOAD_SERVER_ADDR"), "{err}");
    }
}
