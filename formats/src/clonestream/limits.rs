//! Named limits for untrusted clone streams, each with its reason.

/// The largest data frame: frames are the unit a sender resumes at and hashes, so a resumed
/// clone re-sends at most this much, and a decoder holds at most this much of a frame's hash
/// state in flight (the bytes themselves pass through).
pub const MAX_FRAME_LEN: u32 = 1 << 20;

/// Frames a stream may carry: one per MiB of a 64 PiB disk (the decoder's virtual-size bound)
/// at the smallest useful frame; the count is only compared, never allocated.
pub const MAX_FRAMES: u64 = 1 << 46;
