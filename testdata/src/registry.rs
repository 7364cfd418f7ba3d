//! A real container registry for tests (Debian's `docker-registry`, distribution 2.8) on
//! 127.0.0.1, optionally over TLS with a CA made here and behind htpasswd credentials, and
//! images built and pushed by the tests themselves: containerDisks (files in tar layers,
//! gzip, zstd or plain), multi-architecture indexes and KubeVirt disk artifacts.

use std::path::PathBuf;
use std::process::Command;

use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Reference, RegistryOperation};
use sha2::{Digest, Sha256};

use crate::pki::Ca;
use crate::service::Service;
use crate::uploadpod::free_port;

const INSTALL: &str = "apt-get install -y docker-registry apache2-utils";

/// How to run the registry.
#[derive(Debug, Clone, Copy, Default)]
pub struct RegistryConfig {
    /// Serve HTTPS with a certificate of a CA made here.
    pub tls: bool,
    /// Require a user name and password (htpasswd).
    pub auth: bool,
}

/// A running registry.
#[derive(Debug)]
pub struct RegistryServer {
    service: Service,
    dir: tempfile::TempDir,
    /// The CA of its certificate (PEM), when it serves TLS.
    pub ca_pem: Option<String>,
    /// The user and password it requires, when it does.
    pub credentials: Option<(String, String)>,
}

impl RegistryServer {
    pub fn start(config: RegistryConfig) -> RegistryServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let mut yaml = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.path().join("storage").display()
        );
        let mut ca_pem = None;
        if config.tls {
            let ca = Ca::new("cdi-rs test registry CA");
            let leaf = ca.server("registry", &["127.0.0.1", "localhost"]);
            std::fs::write(dir.path().join("tls.crt"), &leaf.cert_pem).expect("cert");
            std::fs::write(dir.path().join("tls.key"), &leaf.key_pem).expect("key");
            yaml.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                dir.path().join("tls.crt").display(),
                dir.path().join("tls.key").display()
            ));
            ca_pem = Some(ca.pem.clone());
        }
        let mut credentials = None;
        if config.auth {
            let (user, password) = ("importer".to_owned(), "s3cret-pass".to_owned());
            let htpasswd = dir.path().join("htpasswd");
            let out = Command::new("htpasswd")
                .args(["-Bbc"])
                .arg(&htpasswd)
                .args([&user, &password])
                .output()
                .unwrap_or_else(|e| panic!("htpasswd ({e}); install it: {INSTALL}"));
            assert!(out.status.success(), "htpasswd failed");
            yaml.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: cdi-test\n    path: {}\n",
                htpasswd.display()
            ));
            credentials = Some((user, password));
        }
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, yaml).expect("config");
        let mut command = Command::new("docker-registry");
        command.arg("serve").arg(&config_path);
        let service = Service::start(
            "docker-registry",
            command,
            port,
            &dir.path().join("registry.log"),
            INSTALL,
        );
        RegistryServer {
            service,
            dir,
            ca_pem,
            credentials,
        }
    }

    pub fn port(&self) -> u16 {
        self.service.port
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.service.port)
    }

    pub fn log(&self) -> String {
        self.service.log()
    }

    /// Where the registry keeps a blob's bytes (to damage them behind its back).
    pub fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.dir
            .path()
            .join("storage/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    fn client(&self) -> (oci_client::Client, RegistryAuth) {
        let mut config = ClientConfig {
            protocol: if self.ca_pem.is_some() {
                ClientProtocol::Https
            } else {
                ClientProtocol::Http
            },
            ..ClientConfig::default()
        };
        if let Some(pem) = &self.ca_pem {
            config.extra_root_certificates.push(Certificate {
                encoding: CertificateEncoding::Pem,
                data: pem.clone().into_bytes(),
            });
        }
        let auth = match &self.credentials {
            Some((u, p)) => RegistryAuth::Basic(u.clone(), p.clone()),
            None => RegistryAuth::Anonymous,
        };
        (oci_client::Client::new(config), auth)
    }

    /// Pushes `image` as `repository:tag`; returns the manifest's digest.
    pub fn push(&self, repository: &str, tag: &str, image: &Image) -> String {
        let reference: Reference = format!("{}/{repository}:{tag}", self.host())
            .parse()
            .expect("reference");
        // On a thread of its own: callers may be async tests, inside a runtime already.
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .expect("runtime");
                    let (client, auth) = self.client();
                    runtime.block_on(push_all(&client, &auth, &reference, image));
                })
                .join()
                .expect("push");
        });
        image.digest()
    }
}

async fn push_all(
    client: &oci_client::Client,
    auth: &RegistryAuth,
    reference: &Reference,
    image: &Image,
) {
    client
        .auth(reference, auth, RegistryOperation::Push)
        .await
        .expect("auth");
    for blob in image.all_blobs() {
        client
            .push_blob(reference, blob.data.clone(), &blob.digest)
            .await
            .unwrap_or_else(|e| panic!("push blob {}: {e}", blob.digest));
    }
    for child in &image.children {
        let at = reference.clone_with_digest(child.digest());
        client
            .push_manifest_raw(
                &at,
                child.manifest.clone(),
                child.media_type.parse().expect("type"),
            )
            .await
            .unwrap_or_else(|e| panic!("push manifest: {e}"));
    }
    client
        .push_manifest_raw(
            reference,
            image.manifest.clone(),
            image.media_type.parse().expect("type"),
        )
        .await
        .unwrap_or_else(|e| panic!("push manifest: {e}"));
}

/// A blob and its digest.
#[derive(Debug, Clone)]
pub struct Blob {
    pub media_type: String,
    pub digest: String,
    pub data: Vec<u8>,
}

impl Blob {
    pub fn new(media_type: &str, data: Vec<u8>) -> Blob {
        Blob {
            media_type: media_type.to_owned(),
            digest: format!("sha256:{}", hex(&Sha256::digest(&data))),
            data,
        }
    }

    fn descriptor(&self, annotations: &[(&str, &str)]) -> String {
        let mut d = format!(
            "{{\"mediaType\":\"{}\",\"digest\":\"{}\",\"size\":{}",
            self.media_type,
            self.digest,
            self.data.len()
        );
        if !annotations.is_empty() {
            let pairs: Vec<String> = annotations
                .iter()
                .map(|(k, v)| format!("\"{k}\":\"{v}\""))
                .collect();
            d.push_str(&format!(",\"annotations\":{{{}}}", pairs.join(",")));
        }
        d.push('}');
        d
    }
}

/// A manifest (image or index) and everything it refers to.
#[derive(Debug, Clone)]
pub struct Image {
    pub media_type: String,
    pub manifest: Vec<u8>,
    pub blobs: Vec<Blob>,
    /// An index's images.
    pub children: Vec<Image>,
}

impl Image {
    pub fn digest(&self) -> String {
        format!("sha256:{}", hex(&Sha256::digest(&self.manifest)))
    }

    fn all_blobs(&self) -> Vec<Blob> {
        let mut all = self.blobs.clone();
        for child in &self.children {
            all.extend(child.all_blobs());
        }
        all
    }

    /// The layer blobs (not the config).
    pub fn layers(&self) -> &[Blob] {
        &self.blobs[1..]
    }
}

/// How a filesystem layer is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// A tar of `files` (path, bytes), compressed.
pub fn layer(files: &[(&str, &[u8])], compression: Compression) -> Blob {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, data) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        builder
            .append_data(&mut header, path, *data)
            .expect("tar entry");
    }
    let tar = builder.into_inner().expect("tar");
    match compression {
        Compression::None => Blob::new("application/vnd.oci.image.layer.v1.tar", tar),
        Compression::Gzip => {
            use std::io::Write;
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(&tar).expect("gzip");
            Blob::new(
                "application/vnd.oci.image.layer.v1.tar+gzip",
                gz.finish().expect("gzip"),
            )
        }
        Compression::Zstd => Blob::new(
            "application/vnd.oci.image.layer.v1.tar+zstd",
            zstd::encode_all(&tar[..], 3).expect("zstd"),
        ),
    }
}

/// An image of `layers` whose config carries `labels`, for `architecture`.
pub fn image(layers: Vec<Blob>, labels: &[(&str, &str)], architecture: &str) -> Image {
    let labels: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("\"{k}\":\"{v}\""))
        .collect();
    let diff_ids: Vec<String> = layers.iter().map(|l| format!("\"{}\"", l.digest)).collect();
    let config = Blob::new(
        "application/vnd.oci.image.config.v1+json",
        format!(
            "{{\"architecture\":\"{architecture}\",\"os\":\"linux\",\"config\":{{\"Labels\":{{{}}}}},\"rootfs\":{{\"type\":\"layers\",\"diff_ids\":[{}]}}}}",
            labels.join(","),
            diff_ids.join(",")
        )
        .into_bytes(),
    );
    manifest(config, layers, &[])
}

/// A KubeVirt disk artifact: each `(disk, media type, name)` is a layer holding the disk itself.
pub fn disk_artifact(disks: &[(&[u8], &str, &str)]) -> Image {
    let config = Blob::new("application/vnd.oci.empty.v1+json", b"{}".to_vec());
    let layers: Vec<Blob> = disks
        .iter()
        .map(|(data, media_type, _)| Blob::new(media_type, data.to_vec()))
        .collect();
    let names: Vec<(&str, &str)> = disks
        .iter()
        .map(|(_, _, name)| ("io.kubevirt.disk.name", *name))
        .collect();
    manifest(config, layers, &names)
}

fn manifest(config: Blob, layers: Vec<Blob>, names: &[(&str, &str)]) -> Image {
    let descriptors: Vec<String> = layers
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let annotation: Vec<(&str, &str)> = names.get(i).copied().into_iter().collect();
            l.descriptor(&annotation)
        })
        .collect();
    let manifest = format!(
        "{{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"config\":{},\"layers\":[{}]}}",
        config.descriptor(&[]),
        descriptors.join(",")
    );
    let mut blobs = vec![config];
    blobs.extend(layers);
    Image {
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        manifest: manifest.into_bytes(),
        blobs,
        children: Vec::new(),
    }
}

/// An index of `(image, architecture)`.
pub fn index(images: Vec<(Image, &str)>) -> Image {
    let entries: Vec<String> = images
        .iter()
        .map(|(image, arch)| {
            format!(
                "{{\"mediaType\":\"{}\",\"digest\":\"{}\",\"size\":{},\"platform\":{{\"architecture\":\"{arch}\",\"os\":\"linux\"}}}}",
                image.media_type,
                image.digest(),
                image.manifest.len()
            )
        })
        .collect();
    Image {
        media_type: "application/vnd.oci.image.index.v1+json".into(),
        manifest: format!(
            "{{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.index.v1+json\",\"manifests\":[{}]}}",
            entries.join(",")
        )
        .into_bytes(),
        blobs: Vec::new(),
        children: images.into_iter().map(|(image, _)| image).collect(),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
