//! Payment codes (付款码): 18 digits a wallet computes offline and a cashier scans.
//!
//! ```text
//! "13" · device number (8 digits) · one-time code (7 digits) · Luhn check digit
//! one-time code: T = floor(unix / 30); h = HMAC-SHA256(device_secret, T as u64 BE);
//!                o = h[31] & 0x0f; v = BE u32 of h[o..o+4] & 0x7fffffff; v mod 10^7
//! ```

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::luhn;

pub const PREFIX: &str = "13";
pub const LEN: usize = 18;
pub const STEP_SECS: i64 = 30;

/// What a scanned payment code says, before anything is looked up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScannedCode {
    pub device_number: u32,
    pub one_time_code: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CodeError {
    #[error("a payment code is 18 digits starting with 13")]
    Malformed,
    #[error("the payment code's check digit is wrong (misread?)")]
    BadCheckDigit,
}

/// The 7-digit one-time code of `secret` for time step `step`.
pub fn one_time_code(secret: &[u8], step: i64) -> u32 {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(&(step as u64).to_be_bytes());
    let h = mac.finalize().into_bytes();
    let o = usize::from(h[31] & 0x0f);
    let v = u32::from_be_bytes([h[o], h[o + 1], h[o + 2], h[o + 3]]) & 0x7fff_ffff;
    v % 10_000_000
}

pub fn step_of(unix_secs: i64) -> i64 {
    unix_secs.div_euclid(STEP_SECS)
}

/// The payment code a device shows at `unix_secs`.
pub fn generate(device_number: u32, secret: &[u8], unix_secs: i64) -> String {
    assert!(device_number < 100_000_000, "device numbers have 8 digits");
    let payload = format!("{PREFIX}{device_number:08}{:07}", one_time_code(secret, step_of(unix_secs)));
    let check = luhn::check_digit(&payload).expect("payload is digits");
    format!("{payload}{check}")
}

/// Checks shape and check digit; nothing else can be known without the device's secret.
pub fn parse(code: &str) -> Result<ScannedCode, CodeError> {
    if code.len() != LEN || !code.bytes().all(|b| b.is_ascii_digit()) || !code.starts_with(PREFIX) {
        return Err(CodeError::Malformed);
    }
    if !luhn::is_valid(code) {
        return Err(CodeError::BadCheckDigit);
    }
    Ok(ScannedCode {
        device_number: code[2..10].parse().map_err(|_| CodeError::Malformed)?,
        one_time_code: code[10..17].parse().map_err(|_| CodeError::Malformed)?,
    })
}

/// Which accepted time step (current or previous) the code belongs to, if any.
pub fn matching_step(scanned: &ScannedCode, secret: &[u8], now_unix_secs: i64) -> Option<i64> {
    let now = step_of(now_unix_secs);
    [now, now - 1].into_iter().find(|&step| one_time_code(secret, step) == scanned.one_time_code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_codes_parse_and_verify_for_two_steps() {
        let secret = b"0123456789abcdef0123456789abcdef";
        let t = 1_767_225_600;
        let code = generate(42, secret, t);
        assert_eq!(code.len(), 18);
        assert!(code.starts_with("1300000042"));
        let scanned = parse(&code).unwrap();
        assert_eq!(scanned.device_number, 42);
        assert_eq!(matching_step(&scanned, secret, t), Some(step_of(t)));
        assert_eq!(matching_step(&scanned, secret, t + 30), Some(step_of(t)));
        assert_eq!(matching_step(&scanned, secret, t + 60), None, "older than 60 s");
        assert_eq!(matching_step(&scanned, b"another device secret", t), None);
    }

    #[test]
    fn rfc4226_truncation_matches_a_known_vector() {
        // RFC 6238 SHA-256 vector, time 59 s → step 1, 8 digits 46119246; we keep 7.
        let secret = b"12345678901234567890123456789012";
        assert_eq!(one_time_code(secret, 1), 46_119_246 % 10_000_000);
    }

    #[test]
    fn misreads_are_caught_before_any_lookup() {
        let code = generate(7, b"k", 1_000_000);
        let mut digits = code.clone().into_bytes();
        digits[12] = if digits[12] == b'9' { b'0' } else { digits[12] + 1 };
        assert_eq!(parse(std::str::from_utf8(&digits).unwrap()), Err(CodeError::BadCheckDigit));
        assert_eq!(parse("12345"), Err(CodeError::Malformed));
        assert_eq!(parse(&code.replacen("13", "99", 1)), Err(CodeError::Malformed));
        assert_eq!(parse("13000000071234567a"), Err(CodeError::Malformed));
    }
}
