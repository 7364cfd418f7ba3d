//! Compressed clusters: a descriptor and the decoder that turns its bytes back into exactly one
//! cluster, refusing any other length.

use bytes::Bytes;
use flate2::{Decompress, FlushDecompress, Status};

use super::error::Qcow2Error;
use super::header::CompressionType;

/// A compressed cluster, its bytes gathered from the stream, ready to decode on any thread.
#[derive(Debug, Clone)]
pub struct CompressedCluster {
    pub guest_offset: u64,
    /// Bytes of the guest cluster to keep (less than a cluster only at the end of the disk).
    pub guest_len: usize,
    pub cluster_size: usize,
    pub compression: CompressionType,
    /// From the host offset to the end of the last sector the descriptor names; may carry
    /// trailing bytes that belong to the next cluster, which the decoder ignores.
    pub data: Bytes,
}

/// Decodes `c` into `out`, which is resized to the cluster size. The stream must produce
/// exactly one cluster: fewer bytes, or a stream that wants to go on, is an error.
pub fn decompress_cluster(c: &CompressedCluster, out: &mut Vec<u8>) -> Result<(), Qcow2Error> {
    out.clear();
    out.resize(c.cluster_size, 0);
    decompress_cluster_into(c, out)
}

/// Decodes `c` into `out`, which must be exactly one cluster long (the caller's buffer, e.g. a
/// page-aligned one); on success every byte of it was written. Same checks as
/// [`decompress_cluster`].
pub fn decompress_cluster_into(c: &CompressedCluster, out: &mut [u8]) -> Result<(), Qcow2Error> {
    assert_eq!(out.len(), c.cluster_size, "output must be one cluster");
    let got = match c.compression {
        CompressionType::Zlib => inflate(&c.data, out, c.guest_offset)?,
        CompressionType::Zstd => unzstd(&c.data, out, c.guest_offset)?,
    };
    if got != c.cluster_size {
        return Err(Qcow2Error::CompressedLength {
            guest: c.guest_offset,
            got,
            want: c.cluster_size,
        });
    }
    Ok(())
}

fn inflate(input: &[u8], out: &mut [u8], guest: u64) -> Result<usize, Qcow2Error> {
    // qemu writes raw deflate (no zlib header) with a 4 KiB window; a larger window decoder
    // reads it correctly.
    let mut d = Decompress::new(false);
    let status = d
        .decompress(input, out, FlushDecompress::Finish)
        .map_err(|e| Qcow2Error::CompressedCorrupt {
            guest,
            reason: e.to_string(),
        })?;
    let produced = d.total_out() as usize;
    match status {
        Status::StreamEnd => Ok(produced),
        // The output is full, but the stream says it has more: longer than a cluster.
        Status::Ok | Status::BufError if produced == out.len() => {
            let mut extra = [0u8; 1];
            let more = d
                .decompress(
                    &input[d.total_in() as usize..],
                    &mut extra,
                    FlushDecompress::Finish,
                )
                .map(|_| d.total_out() as usize > produced)
                .unwrap_or(false);
            if more {
                Err(Qcow2Error::CompressedLength {
                    guest,
                    got: produced + 1,
                    want: out.len(),
                })
            } else {
                Ok(produced)
            }
        }
        Status::Ok | Status::BufError => Ok(produced),
    }
}

fn unzstd(input: &[u8], out: &mut [u8], guest: u64) -> Result<usize, Qcow2Error> {
    use zstd::zstd_safe::{DCtx, InBuffer, OutBuffer};
    let corrupt = |code: usize| Qcow2Error::CompressedCorrupt {
        guest,
        reason: zstd::zstd_safe::get_error_name(code).to_string(),
    };
    let mut ctx = DCtx::create();
    let mut src = InBuffer::around(input);
    let mut dst = OutBuffer::around(out);
    // Like qemu, decode until the cluster is full or the input runs out; trailing sector
    // padding after the frame is ignored.
    loop {
        let before = (src.pos(), dst.pos());
        let hint = ctx.decompress_stream(&mut dst, &mut src).map_err(corrupt)?;
        if dst.pos() == dst.capacity() || hint == 0 || (src.pos(), dst.pos()) == before {
            break;
        }
    }
    Ok(dst.pos())
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Compress, Compression, FlushCompress};

    fn deflate_raw(data: &[u8]) -> Vec<u8> {
        let mut c = Compress::new(Compression::default(), false);
        let mut out = Vec::with_capacity(data.len() + 64);
        c.compress_vec(data, &mut out, FlushCompress::Finish)
            .expect("deflate");
        out
    }

    fn cluster(compression: CompressionType, data: Vec<u8>, size: usize) -> CompressedCluster {
        CompressedCluster {
            guest_offset: 0x10000,
            guest_len: size,
            cluster_size: size,
            compression,
            data: Bytes::from(data),
        }
    }

    #[test]
    fn zlib_cluster_with_sector_padding_decodes() {
        let plain: Vec<u8> = (0..4096u32).map(|i| (i % 7) as u8).collect();
        let mut packed = deflate_raw(&plain);
        packed.extend_from_slice(&[0xaa; 300]); // the next cluster's bytes
        let mut out = Vec::new();
        decompress_cluster(&cluster(CompressionType::Zlib, packed, 4096), &mut out)
            .expect("decodes");
        assert_eq!(out, plain);
    }

    #[test]
    fn zstd_cluster_with_sector_padding_decodes() {
        let plain: Vec<u8> = (0..8192u32).map(|i| (i % 13) as u8).collect();
        let mut packed = zstd::bulk::compress(&plain, 3).expect("zstd");
        packed.extend_from_slice(&[0u8; 100]);
        let mut out = Vec::new();
        decompress_cluster(&cluster(CompressionType::Zstd, packed, 8192), &mut out)
            .expect("decodes");
        assert_eq!(out, plain);
    }

    #[test]
    fn short_cluster_is_refused_with_its_length() {
        let packed = deflate_raw(&[7u8; 1000]);
        let err = decompress_cluster(
            &cluster(CompressionType::Zlib, packed, 4096),
            &mut Vec::new(),
        )
        .expect_err("short");
        assert_eq!(
            err,
            Qcow2Error::CompressedLength {
                guest: 0x10000,
                got: 1000,
                want: 4096
            }
        );
    }

    #[test]
    fn long_cluster_is_refused() {
        let packed = deflate_raw(&[7u8; 5000]);
        let err = decompress_cluster(
            &cluster(CompressionType::Zlib, packed, 4096),
            &mut Vec::new(),
        )
        .expect_err("long");
        assert!(
            matches!(err, Qcow2Error::CompressedLength { want: 4096, .. }),
            "{err:?}"
        );
    }

    #[test]
    fn garbage_is_refused_as_corrupt_or_short() {
        let err = decompress_cluster(
            &cluster(CompressionType::Zstd, vec![0x55; 64], 4096),
            &mut Vec::new(),
        )
        .expect_err("garbage");
        assert!(
            matches!(
                err,
                Qcow2Error::CompressedCorrupt { .. } | Qcow2Error::CompressedLength { .. }
            ),
            "{err:?}"
        );
    }
}
