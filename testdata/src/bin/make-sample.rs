//! Writes a small sample image for the README's demo: `sample.qcow2.gz` (a qcow2 with data,
//! compressed and zero clusters, gzip-compressed), its sha256 in `sample.qcow2.gz.sha256`
//! (CDI checksum syntax) and the sha256 of the raw disk it must import to in `disk.sha256`.
#![forbid(unsafe_code)]

use std::path::PathBuf;

use cdi_testdata::qcow2::{Cluster, Qcow2Builder};
use cdi_testdata::raw::{Rng, text};
use sha2::{Digest, Sha256};

fn main() -> std::io::Result<()> {
    let dir = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "sample".into()));
    std::fs::create_dir_all(&dir)?;
    let mut rng = Rng::new(2026);
    let cs = 64 * 1024;
    let mut b = Qcow2Builder::new(16, 256 << 20);
    for g in 0..(256 << 20) / cs as u64 {
        let cluster = match rng.below(10) {
            0..=1 => Cluster::Data({
                let mut d = vec![0u8; cs];
                rng.fill(&mut d);
                d
            }),
            2..=3 => Cluster::Compressed(text(&mut rng, cs)),
            4 => Cluster::ZeroFlag,
            _ => continue,
        };
        b.clusters.insert(g, cluster);
    }
    let image = b.build();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &image)?;
    let gz = gz.finish()?;
    let path = dir.join("sample.qcow2.gz");
    std::fs::write(&path, &gz)?;
    std::fs::write(
        dir.join("sample.qcow2.gz.sha256"),
        format!("sha256:{}\n", hex(&gz)),
    )?;
    std::fs::write(
        dir.join("disk.sha256"),
        format!("{}\n", hex(&b.expected_raw())),
    )?;
    println!("{}", path.display());
    Ok(())
}

fn hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
