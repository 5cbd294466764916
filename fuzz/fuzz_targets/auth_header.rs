//! The `Authorization: PAYKIT-HMAC-SHA256 …` parser: never panics, and a header it accepts
//! renders back to one that parses to the same fields.
#![no_main]
use libfuzzer_sys::fuzz_target;
use paykit_core::signing::AuthHeader;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(header) = AuthHeader::parse(text) {
        let rendered = header.render();
        assert_eq!(AuthHeader::parse(&rendered).expect("a rendered header parses"), header, "{rendered:?}");
    }
});
