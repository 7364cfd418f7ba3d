//! Format detection must classify any prefix without panicking, and agree with itself when
//! given more bytes than it looks at.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let format = cdi_formats::detect(data);
    if data.len() > cdi_formats::DETECT_LEN {
        assert_eq!(format, cdi_formats::detect(&data[..cdi_formats::DETECT_LEN]));
    }
});
