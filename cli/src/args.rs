//! Command-line arguments, and their validation into an import request.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use cdi_crds::VolumeMode;
use cdi_datapath::sink::{CacheMode, TargetOptions, ZeroMode};
use cdi_datapath::source::gcs::GcsOptions;
use cdi_datapath::source::registry::RegistryOptions;
use cdi_datapath::source::s3::S3Options;
use cdi_datapath::source::{HttpOptions, Scheme, SourceSpec};
use cdi_datapath::{Checksum, FormatChoice, ImportSpec};
use clap::{Parser, Subcommand, ValueEnum};

use crate::imageupload::{DvOptions, ImageUploadRequest};
use crate::upload::{MIN_CHUNK, TlsOptions, TransferOptions, UploadRequest, normalize_url};

#[derive(Debug, Parser)]
#[command(
    name = "cdictl",
    version,
    about = "Import VM disk images the way cdi-rs does: one pass, sparse, verified."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Import an image (raw, ISO, qcow2, vmdk, vhd, vhdx, vdi or OVA; gz/xz/zst/bz2-compressed)
    /// from a file, stdin, an http(s) URL, S3 (s3://), GCS (gs://) or a registry (docker://)
    /// into a raw file or block device.
    Import(ImportArgs),
    /// Upload an image file through CDI's upload proxy, resumably (tus): a broken connection
    /// costs one chunk, and an interrupted run is continued by the next one.
    Upload(UploadArgs),
    /// Create a DataVolume for an upload, wait until it is ready, upload the image into it and
    /// wait until it is processed (as `virtctl image-upload`), using the kubeconfig.
    ImageUpload(ImageUploadArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum FormatArg {
    /// Detect compression and format from magic bytes.
    Auto,
    /// Copy the bytes exactly as they are (no decompression or conversion).
    Raw,
    /// Require a qcow2 image (after decompression).
    Qcow2,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ZeroArg {
    /// Discard zero ranges (fallocate punch-hole), falling back to writing zeros.
    Punch,
    /// Write zeros.
    Write,
    /// The device already reads back zeros: skip them.
    Skip,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CacheArg {
    /// Direct I/O through io_uring where the kernel and the target allow it, else the page cache.
    Auto,
    /// Direct I/O wherever the target takes it (CDI's CACHE_MODE=TRYNONE).
    Direct,
    /// Always through the page cache.
    PageCache,
}

#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// Image to import: a path, `-` for standard input, an http(s):// URL, s3://BUCKET/KEY,
    /// gs://BUCKET/OBJECT, or docker://HOST/REPOSITORY:TAG (a containerDisk or disk artifact).
    pub source: String,
    /// Destination: a raw image file (created) or a block device.
    pub dest: PathBuf,
    /// Expected checksum of the source bytes as transferred: md5:, sha1:, sha256: or sha512: HEX.
    #[arg(long)]
    pub checksum: Option<String>,
    /// Size of the resulting disk (e.g. 10G, 512Mi, 1073741824); the image grows to it and must
    /// fit in it.
    #[arg(long)]
    pub size: Option<String>,
    /// Allocate the whole disk (fallocate, or writing zeros where that is unsupported).
    #[arg(long)]
    pub preallocate: bool,
    /// Image format override, for raw images that happen to start with a known magic.
    #[arg(long, value_enum, default_value = "auto")]
    pub format: FormatArg,
    /// Memory the import may use for buffers and qcow2 bookkeeping (e.g. 256Mi).
    #[arg(long, default_value = "256Mi")]
    pub memory_limit: String,
    /// How a block device's zero ranges are handled.
    #[arg(long, value_enum, default_value = "punch")]
    pub zero_mode: ZeroArg,
    /// How the image is written: direct I/O (O_DIRECT) submitted through io_uring where both are
    /// available (auto), direct I/O wherever the target takes it, or through the page cache.
    #[arg(long, value_enum, default_value = "auto")]
    pub cache: CacheArg,
    /// Directory for a qcow2 spill file (default: the destination's directory).
    #[arg(long)]
    pub spill_dir: Option<PathBuf>,
    /// After importing, read the image back and print the sha256 of its content.
    #[arg(long)]
    pub image_sha256: bool,
    /// Progress display: a bar on a terminal, periodic lines otherwise, or none.
    #[arg(long, value_enum, default_value = "auto")]
    pub progress: ProgressArg,
    #[command(flatten)]
    pub source_access: SourceAccessArgs,
}

/// How to reach a remote source: credentials and TLS, per kind.
#[derive(Debug, clap::Args)]
#[command(next_help_heading = "Remote sources")]
pub struct SourceAccessArgs {
    /// Trust the CA certificates in this PEM file (beside the system's) for an https, S3, GCS
    /// or registry source.
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// Do not verify the source's TLS certificate (a registry may then also speak plain HTTP).
    #[arg(long)]
    pub insecure: bool,
    /// User name for http basic auth or a registry.
    #[arg(long, env = "CDICTL_USER")]
    pub user: Option<String>,
    /// Password (or token) for http basic auth or a registry.
    #[arg(long, env = "CDICTL_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    /// S3 access key id (default: AWS_ACCESS_KEY_ID).
    #[arg(long, env = "AWS_ACCESS_KEY_ID")]
    pub access_key_id: Option<String>,
    /// S3 secret key (default: AWS_SECRET_ACCESS_KEY).
    #[arg(long, env = "AWS_SECRET_ACCESS_KEY", hide_env_values = true)]
    pub secret_key: Option<String>,
    /// S3 session token of temporary credentials (default: AWS_SESSION_TOKEN).
    #[arg(long, env = "AWS_SESSION_TOKEN", hide_env_values = true)]
    pub session_token: Option<String>,
    /// The S3 bucket's region (default: AWS_REGION, else found from the endpoint).
    #[arg(long, env = "AWS_REGION")]
    pub region: Option<String>,
    /// An S3-compatible endpoint for s3:// URLs, or an emulator for gs:// URLs (MinIO:
    /// http://minio:9000).
    #[arg(long, env = "AWS_ENDPOINT_URL")]
    pub endpoint: Option<String>,
    /// A GCS service-account key file (default: GOOGLE_APPLICATION_CREDENTIALS); none for a
    /// public object.
    #[arg(long, env = "GOOGLE_APPLICATION_CREDENTIALS", value_name = "FILE")]
    pub gcs_credentials: Option<PathBuf>,
    /// The architecture to take from a multi-architecture image (default: this machine's).
    #[arg(long)]
    pub arch: Option<String>,
}

impl SourceAccessArgs {
    /// The source `location` names, with what these flags say about reaching it.
    pub fn source_spec(self, location: &str) -> anyhow::Result<SourceSpec> {
        let mut http = HttpOptions::default();
        if let Some(ca) = &self.ca {
            http.extra_ca_pem
                .push(std::fs::read(ca).with_context(|| format!("--ca {}", ca.display()))?);
        }
        http.insecure = self.insecure;
        let login = match (self.user, self.password) {
            (Some(user), Some(password)) => Some((user, password)),
            (None, None) => None,
            (Some(_), None) => bail!("--user needs --password (or CDICTL_PASSWORD)"),
            (None, Some(_)) => bail!("--password needs --user (or CDICTL_USER)"),
        };
        Ok(match Scheme::of(location) {
            Scheme::Stdin => SourceSpec::Stdin,
            Scheme::File => SourceSpec::File(PathBuf::from(location)),
            Scheme::Http => SourceSpec::Http {
                url: location.to_owned(),
                options: HttpOptions {
                    basic_auth: login,
                    ..http
                },
            },
            Scheme::S3 => SourceSpec::S3 {
                url: location.to_owned(),
                options: S3Options {
                    access_key_id: self.access_key_id,
                    secret_key: self.secret_key,
                    session_token: self.session_token,
                    region: self.region,
                    endpoint: self.endpoint,
                    virtual_hosted: false,
                    http,
                },
            },
            Scheme::Gcs => SourceSpec::Gcs {
                url: location.to_owned(),
                options: GcsOptions {
                    credentials_file: self.gcs_credentials,
                    endpoint: self.endpoint,
                    http,
                },
            },
            Scheme::Registry => SourceSpec::Registry {
                url: location.to_owned(),
                options: RegistryOptions {
                    credentials: login,
                    architecture: self.arch,
                    http,
                },
            },
        })
    }
}

/// How to transfer: shared by `upload` and `image-upload`.
#[derive(Debug, clap::Args)]
pub struct TransferArgs {
    /// Do not verify the server's TLS certificate.
    #[arg(long)]
    pub insecure: bool,
    /// Trust only the CA certificates in this PEM file for the server's certificate.
    #[arg(long, value_name = "FILE", conflicts_with = "insecure")]
    pub ca: Option<PathBuf>,
    /// Expected checksum of the file (md5:, sha1:, sha256: or sha512: HEX); the server checks
    /// it before it commits the image.
    #[arg(long)]
    pub checksum: Option<String>,
    /// Bytes per request at most (at least 64Ki), for proxies that limit request bodies; by
    /// default the whole file goes in one streamed request, resumed where it broke.
    #[arg(long)]
    pub chunk_size: Option<String>,
    /// Attempts in a row without progress before giving up.
    #[arg(long, alias = "retry", default_value_t = 5)]
    pub retries: u32,
    /// Progress display: a bar on a terminal, periodic lines otherwise, or none.
    #[arg(long, value_enum, default_value = "auto")]
    pub progress: ProgressArg,
}

#[derive(Debug, clap::Args)]
pub struct UploadArgs {
    /// The image file: raw, qcow2, vmdk, vhd, vhdx, vdi or OVA, or gz/xz/zst-compressed; the
    /// server converts it.
    pub file: PathBuf,
    /// The upload proxy's base URL (`https://` is added if there is no scheme).
    #[arg(long)]
    pub url: String,
    /// The upload token: `status.token` of an UploadTokenRequest for the claim.
    #[arg(
        long,
        env = "CDI_UPLOAD_TOKEN",
        hide_env_values = true,
        required_unless_present = "client_cert"
    )]
    pub token: Option<String>,
    #[command(flatten)]
    pub transfer: TransferArgs,
    /// Client certificate (PEM) for talking to an upload server directly over mutual TLS,
    /// bypassing the proxy (for tests and debugging).
    #[arg(long, value_name = "FILE", requires = "client_key", hide = true)]
    pub client_cert: Option<PathBuf>,
    /// The key of --client-cert (PEM).
    #[arg(long, value_name = "FILE", requires = "client_cert", hide = true)]
    pub client_key: Option<PathBuf>,
}

/// What `image-upload` uploads into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum UploadTarget {
    /// A DataVolume with an upload source.
    Dv,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum VolumeModeArg {
    Block,
    Filesystem,
}

#[derive(Debug, clap::Args)]
pub struct ImageUploadArgs {
    /// What to upload into (only `dv`, a DataVolume, is supported).
    #[arg(value_enum)]
    pub target: UploadTarget,
    /// The DataVolume's name.
    pub name: String,
    /// Size of the volume to create (a quantity: 10Gi, 500M); required unless --no-create.
    #[arg(long)]
    pub size: Option<String>,
    /// The disk image to upload.
    #[arg(long, value_name = "FILE", required_unless_present = "archive_path")]
    pub image_path: Option<PathBuf>,
    /// A tar archive to unpack onto the volume instead of a disk image.
    #[arg(long, value_name = "FILE", conflicts_with = "image_path")]
    pub archive_path: Option<PathBuf>,
    /// Namespace (default: the kubeconfig context's).
    #[arg(long, short = 'n')]
    pub namespace: Option<String>,
    /// StorageClass of the volume (default: CDI's choice).
    #[arg(long)]
    pub storage_class: Option<String>,
    /// Access mode of the volume: ReadWriteOnce, ReadWriteMany, ReadOnlyMany or
    /// ReadWriteOncePod (default: from the StorageProfile).
    #[arg(long)]
    pub access_mode: Option<String>,
    /// Volume mode (default: from the StorageProfile).
    #[arg(long, value_enum)]
    pub volume_mode: Option<VolumeModeArg>,
    /// Upload into an existing DataVolume instead of creating one.
    #[arg(long)]
    pub no_create: bool,
    /// How long to wait for the DataVolume to be ready for the upload.
    #[arg(long, default_value_t = 300)]
    pub wait_secs: u64,
    /// The upload proxy's URL (default: CDIConfig `config`'s status.uploadProxyURL).
    #[arg(long)]
    pub uploadproxy_url: Option<String>,
    /// Bind the volume at once, even with a WaitForFirstConsumer StorageClass.
    #[arg(long)]
    pub force_bind: bool,
    #[command(flatten)]
    pub transfer: TransferArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProgressArg {
    Auto,
    Bar,
    Lines,
    None,
}

/// A validated import.
#[derive(Debug)]
pub struct ImportRequest {
    /// The source as given, for messages (credentials left out).
    pub shown: String,
    pub source: SourceSpec,
    pub dest: PathBuf,
    pub spec: ImportSpec,
    pub target: TargetOptions,
    pub image_sha256: bool,
    pub progress: ProgressArg,
}

impl ImportArgs {
    pub fn into_request(self) -> anyhow::Result<ImportRequest> {
        let checksum = self
            .checksum
            .as_deref()
            .map(str::parse::<Checksum>)
            .transpose()
            .context("--checksum")?;
        let requested_size = self
            .size
            .as_deref()
            .map(parse_size)
            .transpose()
            .context("--size")?;
        let memory_limit = parse_size(&self.memory_limit).context("--memory-limit")?;
        if memory_limit < 32 << 20 {
            bail!("--memory-limit must be at least 32Mi");
        }
        let spill_dir = match self.spill_dir {
            Some(d) => d,
            None => parent_dir(&self.dest),
        };
        let spec = ImportSpec {
            checksum,
            format: match self.format {
                FormatArg::Auto => FormatChoice::Auto,
                FormatArg::Raw => FormatChoice::Raw,
                FormatArg::Qcow2 => FormatChoice::Qcow2,
            },
            memory_limit: usize::try_from(memory_limit).context("--memory-limit")?,
            spill_dir,
            ..ImportSpec::default()
        };
        let target = TargetOptions {
            requested_size,
            preallocate: self.preallocate,
            zero_mode: match self.zero_mode {
                ZeroArg::Punch => ZeroMode::Punch,
                ZeroArg::Write => ZeroMode::Write,
                ZeroArg::Skip => ZeroMode::Skip,
            },
            cache: match self.cache {
                CacheArg::Auto => CacheMode::Auto,
                CacheArg::Direct => CacheMode::Direct,
                CacheArg::PageCache => CacheMode::PageCache,
            },
        };
        let source = self.source_access.source_spec(&self.source)?;
        Ok(ImportRequest {
            shown: source.describe(),
            source,
            dest: self.dest,
            spec,
            target,
            image_sha256: self.image_sha256,
            progress: self.progress,
        })
    }
}

impl TransferArgs {
    pub fn into_options(self) -> anyhow::Result<TransferOptions> {
        let checksum = self
            .checksum
            .as_deref()
            .map(str::parse::<Checksum>)
            .transpose()
            .context("--checksum")?;
        let chunk_size = self
            .chunk_size
            .as_deref()
            .map(|size| parse_size(size).context("--chunk-size"))
            .transpose()?;
        if chunk_size.is_some_and(|size| size < MIN_CHUNK) {
            bail!(
                "--chunk-size must be at least 64Ki: smaller requests cost more than their bytes"
            );
        }
        Ok(TransferOptions {
            tls: TlsOptions {
                insecure: self.insecure,
                ca: self.ca,
                identity: None,
            },
            checksum,
            chunk_size,
            retries: self.retries,
            progress: self.progress,
            state_dir: crate::upload::state::default_dir(|k| std::env::var(k).ok()),
        })
    }
}

impl UploadArgs {
    pub fn into_request(self) -> anyhow::Result<UploadRequest> {
        let url = normalize_url(&self.url)
            .map_err(anyhow::Error::msg)
            .context("--url")?;
        let mut options = self.transfer.into_options()?;
        options.tls.identity = self.client_cert.zip(self.client_key);
        Ok(UploadRequest {
            url,
            file: std::path::absolute(&self.file).context("the file's path")?,
            token: self.token.filter(|t| !t.is_empty()),
            options,
        })
    }
}

impl ImageUploadArgs {
    pub fn into_request(self) -> anyhow::Result<ImageUploadRequest> {
        let UploadTarget::Dv = self.target;
        let (file, archive) = match (self.image_path, self.archive_path) {
            (Some(f), None) => (f, false),
            (None, Some(f)) => (f, true),
            _ => bail!("give one of --image-path and --archive-path"),
        };
        if archive && self.volume_mode == Some(VolumeModeArg::Block) {
            bail!(
                "an archive is unpacked onto a filesystem: --archive-path cannot go with --volume-mode block"
            );
        }
        let size = match self.size {
            Some(s) => {
                if cdi_crds::quantity::parse_bytes(&s).is_none_or(|b| b == 0) {
                    bail!("--size {s:?} is not a size like 10Gi or 500M");
                }
                Some(s)
            }
            None if self.no_create => None,
            None => bail!("--size is required to create the DataVolume (or pass --no-create)"),
        };
        if let Some(m) = &self.access_mode
            && !ACCESS_MODES.contains(&m.as_str())
        {
            bail!(
                "--access-mode {m:?} is not one of {}",
                ACCESS_MODES.join(", ")
            );
        }
        let proxy_url = self
            .uploadproxy_url
            .as_deref()
            .map(normalize_url)
            .transpose()
            .map_err(anyhow::Error::msg)
            .context("--uploadproxy-url")?;
        Ok(ImageUploadRequest {
            dv: DvOptions {
                name: self.name,
                size,
                storage_class: self.storage_class,
                access_mode: self.access_mode,
                volume_mode: self.volume_mode.map(|m| match m {
                    VolumeModeArg::Block => VolumeMode::Block,
                    VolumeModeArg::Filesystem => VolumeMode::Filesystem,
                }),
                archive,
                force_bind: self.force_bind,
            },
            namespace: self.namespace,
            file: std::path::absolute(&file).context("the file's path")?,
            no_create: self.no_create,
            wait: std::time::Duration::from_secs(self.wait_secs),
            proxy_url,
            options: self.transfer.into_options()?,
        })
    }
}

/// The access modes a claim may ask for.
const ACCESS_MODES: [&str; 4] = [
    "ReadWriteOnce",
    "ReadOnlyMany",
    "ReadWriteMany",
    "ReadWriteOncePod",
];

fn parent_dir(dest: &Path) -> PathBuf {
    match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Parses `1073741824`, `10G`/`10Gi` (binary), `10GB` (decimal), `512M`, `4k`...
pub fn parse_size(s: &str) -> anyhow::Result<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .with_context(|| format!("{s:?} is not a size like 10Gi or 512M"))?;
    let mult: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "ki" | "kib" => 1 << 10,
        "m" | "mi" | "mib" => 1 << 20,
        "g" | "gi" | "gib" => 1 << 30,
        "t" | "ti" | "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        other => {
            bail!("unknown size unit {other:?} in {s:?} (use Ki, Mi, Gi, Ti or KB, MB, GB, TB)")
        }
    };
    n.checked_mul(mult)
        .with_context(|| format!("{s:?} is too large"))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::{Cli, Command, parse_size};
    use cdi_datapath::sink::CacheMode;

    fn cache_of(args: &[&str]) -> CacheMode {
        let argv = ["cdictl", "import", "in.qcow2", "out.raw"]
            .iter()
            .chain(args);
        let Command::Import(import) = Cli::try_parse_from(argv).expect("parses").command else {
            panic!("not an import");
        };
        import.into_request().expect("request").target.cache
    }

    #[test]
    fn cache_modes_map_to_the_target_options() {
        assert_eq!(cache_of(&[]), CacheMode::Auto);
        assert_eq!(cache_of(&["--cache", "direct"]), CacheMode::Direct);
        assert_eq!(cache_of(&["--cache", "page-cache"]), CacheMode::PageCache);
        assert!(Cli::try_parse_from(["cdictl", "import", "a", "b", "--cache", "none"]).is_err());
    }

    fn image_upload(args: &[&str]) -> anyhow::Result<crate::imageupload::ImageUploadRequest> {
        let argv = ["cdictl", "image-upload", "dv", "disk"].iter().chain(args);
        match Cli::try_parse_from(argv)?.command {
            Command::ImageUpload(a) => a.into_request(),
            other => anyhow::bail!("parsed as {other:?}"),
        }
    }

    #[test]
    fn image_upload_needs_a_size_to_create_and_one_kind_of_file() {
        let r = image_upload(&["--size", "10Gi", "--image-path", "disk.qcow2"]).expect("valid");
        assert_eq!(r.dv.size.as_deref(), Some("10Gi"));
        assert!(!r.dv.archive && r.file.is_absolute());
        assert_eq!(r.wait, std::time::Duration::from_secs(300));
        let r = image_upload(&["--no-create", "--archive-path", "data.tar"]).expect("valid");
        assert!(r.dv.archive && r.dv.size.is_none());
        let refused = [
            (&["--image-path", "d.img"][..], "--size is required"),
            (&["--size", "ten", "--image-path", "d.img"], "is not a size"),
            (
                &[
                    "--size",
                    "1Gi",
                    "--archive-path",
                    "a.tar",
                    "--volume-mode",
                    "block",
                ],
                "cannot go with --volume-mode block",
            ),
            (
                &[
                    "--size",
                    "1Gi",
                    "--image-path",
                    "d.img",
                    "--access-mode",
                    "RWO",
                ],
                "is not one of",
            ),
            (
                &[
                    "--size",
                    "1Gi",
                    "--image-path",
                    "d.img",
                    "--archive-path",
                    "a.tar",
                ],
                "cannot be used with",
            ),
            (&["--size", "1Gi"], "required"),
        ];
        for (args, message) in refused {
            let e = image_upload(args).expect_err(message);
            assert!(format!("{e:#}").contains(message), "{args:?}: {e:#}");
        }
    }

    #[test]
    fn upload_chunk_sizes_have_a_floor_and_no_default() {
        let parse = |chunk: Option<&str>| {
            let argv = [
                "cdictl",
                "upload",
                "--url",
                "proxy:443",
                "--token",
                "t",
                "f.img",
            ];
            let flag = chunk.map(|c| ["--chunk-size", c]);
            let argv = argv.iter().copied().chain(flag.into_iter().flatten());
            match Cli::try_parse_from(argv).expect("parses").command {
                Command::Upload(a) => a.into_request().map(|r| r.options.chunk_size),
                other => anyhow::bail!("parsed as {other:?}"),
            }
        };
        assert_eq!(parse(None).expect("valid"), None);
        assert_eq!(parse(Some("16Mi")).expect("valid"), Some(16 << 20));
        assert_eq!(parse(Some("4Gi")).expect("valid"), Some(4 << 30));
        assert!(parse(Some("1Ki")).is_err());
    }

    #[test]
    fn sizes_parse_in_binary_and_decimal_units() {
        assert_eq!(parse_size("1073741824").expect("bytes"), 1 << 30);
        assert_eq!(parse_size("10Gi").expect("Gi"), 10 << 30);
        assert_eq!(parse_size("10G").expect("G"), 10 << 30);
        assert_eq!(parse_size("512M").expect("M"), 512 << 20);
        assert_eq!(parse_size("2GB").expect("GB"), 2_000_000_000);
        assert!(parse_size("ten").is_err());
        assert!(parse_size("5Q").is_err());
        assert!(parse_size("99999999999T").is_err());
    }
}
