//! QR tokens and `code_url`s: never panic, and nothing but a token issued with the key
//! verifies.
#![no_main]
use libfuzzer_sys::fuzz_target;
use paykit_core::qr_token::{self, QrClaims};

const KEY: &[u8] = b"fuzzing-qr-token-key-32-bytes!!!";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let token = qr_token::token_from_code_url(text).unwrap_or(text);
    if let Ok(claims) = qr_token::verify(KEY, token) {
        // Forging a tag by chance is 2^-80: anything that verifies must be what we issue.
        assert_eq!(qr_token::issue(KEY, &claims), token, "a token verified that was not issued");
    }
    // And what is issued always verifies, for any well-formed order id (`ord_` + 20
    // base32 characters: the only ids the gateway makes) the fuzzer comes up with.
    let well_formed = text.strip_prefix("ord_").is_some_and(|id| {
        id.len() == 20 && id.bytes().all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b))
    });
    if well_formed {
        let claims = QrClaims { order_id: text.to_owned(), expires_at_unix_secs: 1_900_000_000 };
        let issued = qr_token::issue(KEY, &claims);
        assert_eq!(qr_token::verify(KEY, &issued).ok(), Some(claims));
    }
});
