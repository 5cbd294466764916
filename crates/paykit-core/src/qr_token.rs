//! The token in a dynamic QR order's `code_url` (`https://HOST/q/TOKEN`).
//!
//! 43 lower-case base32 characters: the order id's 20 characters, the expiry in Unix
//! seconds (7 characters, 35 bits), and an 80-bit HMAC-SHA256 tag over both (16
//! characters) under a key only the gateway holds. Every character is covered by the tag,
//! so changing any one of them is detected.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
const ID_LEN: usize = 20;
const EXPIRY_LEN: usize = 7;
const TAG_LEN: usize = 16;
pub const TOKEN_LEN: usize = ID_LEN + EXPIRY_LEN + TAG_LEN;
pub const ORDER_ID_PREFIX: &str = "ord_";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QrClaims {
    pub order_id: String,
    pub expires_at_unix_secs: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the QR code is not a valid paykit payment code (altered or not ours)")]
pub struct TokenInvalid;

fn encode_expiry(secs: i64) -> String {
    let v = secs.clamp(0, (1 << 35) - 1) as u64;
    (0..EXPIRY_LEN).rev().map(|i| ALPHABET[((v >> (5 * i)) & 31) as usize] as char).collect()
}

fn decode_expiry(text: &str) -> Option<i64> {
    text.bytes().try_fold(0i64, |acc, b| Some(acc << 5 | ALPHABET.iter().position(|&a| a == b)? as i64))
}

fn tag(key: &[u8], body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(body.as_bytes());
    let h = mac.finalize().into_bytes();
    // 16 characters × 5 bits = the first 80 bits of the MAC.
    let bits = u128::from_be_bytes(h[..16].try_into().expect("32-byte MAC"));
    (0..TAG_LEN).map(|i| ALPHABET[((bits >> (128 - 5 * (i + 1))) & 31) as usize] as char).collect()
}

/// Issues a token for an order id of the form `ord_` + 20 base32 characters.
pub fn issue(key: &[u8], claims: &QrClaims) -> String {
    let id = claims.order_id.strip_prefix(ORDER_ID_PREFIX).expect("order ids start with ord_");
    assert_eq!(id.len(), ID_LEN, "order ids carry 20 characters");
    let body = format!("{id}{}", encode_expiry(claims.expires_at_unix_secs));
    let tag = tag(key, &body);
    format!("{body}{tag}")
}

/// Verifies a token and returns what it claims. Expiry is for the caller to judge.
pub fn verify(key: &[u8], token: &str) -> Result<QrClaims, TokenInvalid> {
    if token.len() != TOKEN_LEN || !token.bytes().all(|b| ALPHABET.contains(&b)) {
        return Err(TokenInvalid);
    }
    let (body, given_tag) = token.split_at(ID_LEN + EXPIRY_LEN);
    let expected = tag(key, body);
    // Constant-time comparison of the tags.
    let diff = expected.bytes().zip(given_tag.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b));
    if diff != 0 {
        return Err(TokenInvalid);
    }
    let (id, expiry) = body.split_at(ID_LEN);
    Ok(QrClaims {
        order_id: format!("{ORDER_ID_PREFIX}{id}"),
        expires_at_unix_secs: decode_expiry(expiry).ok_or(TokenInvalid)?,
    })
}

/// The token in a scanned `code_url`: whatever follows the last `/q/`.
pub fn token_from_code_url(code_url: &str) -> Option<&str> {
    let (_, token) = code_url.trim().rsplit_once("/q/")?;
    Some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"gateway qr key";

    fn claims() -> QrClaims {
        QrClaims { order_id: "ord_abcdefghij234567klmn".into(), expires_at_unix_secs: 1_767_232_800 }
    }

    #[test]
    fn round_trips() {
        let token = issue(KEY, &claims());
        assert_eq!(token.len(), TOKEN_LEN);
        assert_eq!(verify(KEY, &token), Ok(claims()));
        assert_eq!(verify(b"other key", &token), Err(TokenInvalid));
        assert_eq!(token_from_code_url(&format!("https://pay.example/q/{token}")), Some(token.as_str()));
    }

    #[test]
    fn every_single_character_change_is_refused() {
        let token = issue(KEY, &claims());
        for i in 0..token.len() {
            for &c in ALPHABET.iter().chain(b"AZ0189-_") {
                if token.as_bytes()[i] == c {
                    continue;
                }
                let mut changed = token.clone().into_bytes();
                changed[i] = c;
                let changed = String::from_utf8(changed).unwrap();
                assert_eq!(verify(KEY, &changed), Err(TokenInvalid), "position {i} → {}", c as char);
            }
        }
        assert_eq!(verify(KEY, &token[1..]), Err(TokenInvalid));
        assert_eq!(verify(KEY, &format!("{token}a")), Err(TokenInvalid));
    }
}
