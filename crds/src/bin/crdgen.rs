//! `crdgen`: writes every CDI CRD to `deploy/crds/<plural>.<group>.yaml`.
//!
//! ```text
//! cargo run -p cdi-crds --bin crdgen              # write into the repository's deploy/crds
//! cargo run -p cdi-crds --bin crdgen -- DIR       # write into DIR
//! cargo run -p cdi-crds --bin crdgen -- --check   # exit 1 if deploy/crds is out of date
//! ```
//!
//! Files for CRDs that are no longer generated (`*.cdi.kubevirt.io.yaml` not in the set) are
//! removed, so the directory always matches the types.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};

/// Where the checked-in CRDs live, relative to this crate.
const DEFAULT_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/crds");

/// What the command line asked for.
#[derive(Debug)]
struct Args {
    dir: PathBuf,
    check: bool,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut dir = None;
    let mut check = false;
    for arg in std::env::args_os().skip(1) {
        match arg.to_str() {
            Some("--check") => check = true,
            Some("-h" | "--help") => {
                println!("usage: crdgen [--check] [DIR]   (DIR defaults to deploy/crds)");
                std::process::exit(0);
            }
            Some(flag) if flag.starts_with('-') => bail!("unknown flag {flag}; see --help"),
            _ if dir.is_none() => dir = Some(PathBuf::from(arg)),
            _ => bail!("more than one directory given; see --help"),
        }
    }
    Ok(Args {
        dir: dir.unwrap_or_else(|| PathBuf::from(DEFAULT_DIR)),
        check,
    })
}

/// Generated files already in `dir` that the current types no longer produce.
fn stale_files(dir: &Path, wanted: &[(String, String)]) -> anyhow::Result<Vec<PathBuf>> {
    let mut stale = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(stale),
        Err(e) => return Err(e).with_context(|| format!("listing {}", dir.display())),
    };
    for entry in entries {
        let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let generated_kind = name.ends_with(".cdi.kubevirt.io.yaml");
        if generated_kind && !wanted.iter().any(|(file, _)| *file == name) {
            stale.push(entry.path());
        }
    }
    Ok(stale)
}

fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let rendered = cdi_crds::generate::render_all()?;
    let stale = stale_files(&args.dir, &rendered)?;

    if args.check {
        let mut outdated = Vec::new();
        for (file, yaml) in &rendered {
            let path = args.dir.join(file);
            if std::fs::read_to_string(&path).ok().as_deref() != Some(yaml.as_str()) {
                outdated.push(path);
            }
        }
        outdated.extend(stale);
        if outdated.is_empty() {
            return Ok(ExitCode::SUCCESS);
        }
        for path in &outdated {
            eprintln!("out of date: {}", path.display());
        }
        eprintln!("run `cargo run -p cdi-crds --bin crdgen` to refresh");
        return Ok(ExitCode::FAILURE);
    }

    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("creating {}", args.dir.display()))?;
    for (file, yaml) in &rendered {
        let path = args.dir.join(file);
        std::fs::write(&path, yaml).with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    for path in stale {
        std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
        println!("removed {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    match parse_args().and_then(|args| run(&args)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("crdgen: {e:#}");
            ExitCode::from(2)
        }
    }
}
