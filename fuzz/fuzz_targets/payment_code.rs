//! Payment codes as a scanner reads them: never panic; what parses is 18 digits starting
//! with 13 whose Luhn digit is right.
#![no_main]
use libfuzzer_sys::fuzz_target;
use paykit_core::payment_code;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(scanned) = payment_code::parse(text) {
        assert_eq!(text.len(), payment_code::LEN);
        assert!(text.starts_with(payment_code::PREFIX) && text.bytes().all(|b| b.is_ascii_digit()));
        assert!(scanned.one_time_code < 10_000_000 && scanned.device_number < 100_000_000);
        let _ = payment_code::matching_step(&scanned, b"device-secret", 1_767_225_600);
    }
});
