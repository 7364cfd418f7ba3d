//! The one table that says how each detected image format is decoded.

use cdi_formats::Format;
use cdi_formats::decoder::DecoderSpec;

/// What the data path does with an image format.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Route {
    /// Copied as it is (the writer finds the holes); the last sector is checked for a fixed
    /// vhd's footer or a dmg trailer.
    Raw,
    /// Converted by the format's decoder.
    Decoder(&'static DecoderSpec),
    /// An appliance archive: its one disk is found and routed again.
    Ova,
    /// Recognised and refused, with the message to give.
    Refused(&'static str),
}

/// Every image format `detect` names (compression layers are peeled before this).
const ROUTES: &[(Format, Route)] = &[
    (Format::Raw, Route::Raw),
    (Format::Iso, Route::Raw),
    (Format::Qcow2, Route::Decoder(&cdi_formats::qcow2::SPEC)),
    (Format::Vmdk, Route::Decoder(&cdi_formats::vmdk::SPEC)),
    (Format::Vhd, Route::Decoder(&cdi_formats::vhd::SPEC)),
    (Format::Vhdx, Route::Decoder(&cdi_formats::vhdx::SPEC)),
    (Format::Vdi, Route::Decoder(&cdi_formats::vdi::SPEC)),
    (Format::Ova, Route::Ova),
    // Never detected: reached only through `FormatChoice::CloneStream`.
    (
        Format::CloneStream,
        Route::Decoder(&cdi_formats::clonestream::SPEC),
    ),
];

/// How `format` is handled.
pub(crate) fn route(format: Format) -> Route {
    ROUTES
        .iter()
        .find(|(f, _)| *f == format)
        .map(|&(_, r)| r)
        .or_else(|| format.refusal().map(Route::Refused))
        .unwrap_or(Route::Refused(
            "this image format is not supported: convert it to qcow2 or raw first",
        ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_decoder_is_listed_under_its_own_format() {
        for (format, route) in ROUTES {
            if let Route::Decoder(spec) = route {
                assert_eq!(spec.format, *format);
            }
        }
    }

    #[test]
    fn refused_formats_say_what_to_do() {
        for format in [Format::Qcow1, Format::Qed, Format::Cloop, Format::Dmg] {
            match route(format) {
                Route::Refused(message) => {
                    assert!(message.contains("qemu-img convert"), "{message}")
                }
                other => panic!("{format} routed to {other:?}"),
            }
        }
    }
}
