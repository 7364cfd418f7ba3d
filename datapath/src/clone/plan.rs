//! Pure planning of a clone stream's frames: where the source is cut into windows (extents cut
//! at 1 MiB boundaries of the disk), and which 4 KiB granules of a window's bytes travel. Both
//! depend only on the source's extents and bytes, so an unchanged source always yields the same
//! stream, and a sender can regenerate it from any window boundary.

use std::ops::Range;

use cdi_formats::clonestream::limits::MAX_FRAME_LEN;
use cdi_formats::zero::is_zero;

/// Zero runs shorter than this are sent; whole zero granules are not (the target's holes
/// are made of them).
pub const GRANULE: u64 = 4096;

/// Windows never cross a multiple of this on the disk, so a window is at most one frame.
pub const WINDOW: u64 = MAX_FRAME_LEN as u64;

/// The window starting at `start` inside a data extent ending at `extent_end`: up to the next
/// window boundary or the extent's end, whichever comes first.
pub fn window_end(start: u64, extent_end: u64) -> u64 {
    let boundary = (start / WINDOW + 1) * WINDOW;
    boundary.min(extent_end)
}

/// The byte ranges of `data` (which sits at disk offset `start`) that are not whole zero
/// granules, granules being aligned to the disk; adjacent ranges are joined. Partial granules
/// at either end are compared as they are.
pub fn data_runs(start: u64, data: &[u8]) -> Vec<Range<usize>> {
    let mut runs: Vec<Range<usize>> = Vec::new();
    let mut at = 0usize;
    while at < data.len() {
        let disk = start + at as u64;
        let next = ((disk / GRANULE + 1) * GRANULE - start) as usize;
        let end = next.min(data.len());
        if !is_zero(&data[at..end]) {
            match runs.last_mut() {
                Some(r) if r.end == at => r.end = end,
                _ => runs.push(at..end),
            }
        }
        at = end;
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_stop_at_mib_boundaries_and_extent_ends() {
        assert_eq!(window_end(0, 10 << 20), 1 << 20);
        assert_eq!(window_end(4096, 10 << 20), 1 << 20);
        assert_eq!(window_end(1 << 20, 10 << 20), 2 << 20);
        assert_eq!(window_end(4096, 8192), 8192);
        assert_eq!(window_end((1 << 20) - 1, 10 << 20), 1 << 20);
    }

    #[test]
    fn zero_granules_are_skipped_and_neighbours_joined() {
        let mut data = vec![0u8; 5 * 4096];
        data[10] = 1; // granule 0
        data[4096 + 4095] = 1; // granule 1
        data[3 * 4096] = 1; // granule 3
        assert_eq!(data_runs(0, &data), vec![0..8192, 12288..16384]);
        assert!(data_runs(0, &vec![0u8; 3 * 4096]).is_empty());
    }

    #[test]
    fn granules_follow_the_disk_not_the_window() {
        // A window starting 512 bytes before a granule boundary: its first granule is partial.
        let mut data = vec![0u8; 512 + 8192];
        data[0] = 1;
        data[512 + 4096] = 1;
        assert_eq!(data_runs(4096 - 512, &data), vec![0..512, 4608..8704]);
        // A zero tail shorter than a granule is left out too.
        let mut short = vec![0u8; 4096 + 100];
        short[0] = 1;
        assert_eq!(data_runs(0, &short), vec![0..4096]);
    }
}
