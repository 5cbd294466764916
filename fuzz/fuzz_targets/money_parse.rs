//! The money parser: never panics, and whatever it accepts prints back to a string that
//! parses to the same amount.
#![no_main]
use libfuzzer_sys::fuzz_target;
use paykit_core::{Currency, Money};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(m) = Money::parse(text, Currency::Cny) {
        let printed = m.to_string();
        assert_eq!(Money::parse(&printed, Currency::Cny).expect("printed money parses"), m, "{text:?} -> {printed:?}");
        assert!(printed.split('.').nth(1).is_some_and(|d| d.len() == 2), "CNY prints two decimals: {printed:?}");
    }
    if let Ok(m) = Money::parse_positive(text, Currency::Cny) {
        assert!(m.minor_units() > 0, "{text:?} is positive");
    }
});
