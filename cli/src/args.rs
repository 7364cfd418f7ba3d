//! Command-line arguments, and their validation into an import request.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use cdi_datapath::sink::{CacheMode, TargetOptions, ZeroMode};
use cdi_datapath::{Checksum, FormatChoice, ImportSpec};
use clap::{Parser, Subcommand, ValueEnum};

use crate::upload::{
    MAX_CHUNK, MIN_CHUNK, TlsOptions, TransferOptions, UploadRequest, normalize_url,
};

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
    /// Import an image (raw, qcow2; gz/xz/zst/bz2-compressed) into a raw file or block device.
    Import(ImportArgs),
    /// Upload an image file through CDI's upload proxy, resumably (tus): a broken connection
    /// costs one chunk, and an interrupted run is continued by the next one.
    Upload(UploadArgs),
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
    /// Image to import: a path, `-` for standard input, or an http(s):// URL.
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
}

/// How to transfer.
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
    /// Bytes per request, each verified on arrival (at most 64Mi).
    #[arg(long, default_value = "16Mi")]
    pub chunk_size: String,
    /// Attempts in a row without progress before giving up.
    #[arg(long, alias = "retry", default_value_t = 5)]
    pub retries: u32,
    /// Progress display: a bar on a terminal, periodic lines otherwise, or none.
    #[arg(long, value_enum, default_value = "auto")]
    pub progress: ProgressArg,
}

#[derive(Debug, clap::Args)]
pub struct UploadArgs {
    /// The image file: raw, qcow2, or gz/xz/zst-compressed; the server converts it.
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
    pub source: String,
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
        Ok(ImportRequest {
            source: self.source,
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
        let chunk_size = parse_size(&self.chunk_size).context("--chunk-size")?;
        if !(MIN_CHUNK..=MAX_CHUNK).contains(&chunk_size) {
            bail!(
                "--chunk-size must be between 64Ki and 64Mi (the server verifies each chunk in memory)"
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
