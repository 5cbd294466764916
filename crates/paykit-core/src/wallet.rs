//! Consumer-side rules: phone numbers, pay-password strength, device confirmations.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// A mainland mobile number: 11 digits, `1[3-9]…`.
pub fn is_valid_phone(phone: &str) -> bool {
    phone.len() == 11
        && phone.bytes().all(|b| b.is_ascii_digit())
        && phone.starts_with('1')
        && (b'3'..=b'9').contains(&phone.as_bytes()[1])
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PayPasswordError {
    #[error("a pay password is exactly 6 digits")]
    Malformed,
    #[error("that pay password is too easy to guess (repeated or sequential digits)")]
    Weak,
}

/// Accepts 6 digits that are not trivially guessable: all one digit (111111), a run up or
/// down (123456, 654321, 890123), or a repeated pair or triple (121212, 123123).
pub fn check_pay_password(p: &str) -> Result<(), PayPasswordError> {
    let d = p.as_bytes();
    if d.len() != 6 || !d.iter().all(u8::is_ascii_digit) {
        return Err(PayPasswordError::Malformed);
    }
    let step = |a: u8, b: u8| (i16::from(b) - i16::from(a)).rem_euclid(10);
    let up = d.windows(2).all(|w| step(w[0], w[1]) == 1);
    let down = d.windows(2).all(|w| step(w[0], w[1]) == 9);
    let same = d.iter().all(|&c| c == d[0]);
    let pairs = d[0..2] == d[2..4] && d[2..4] == d[4..6];
    let triples = d[0..3] == d[3..6];
    if up || down || same || pairs || triples {
        return Err(PayPasswordError::Weak);
    }
    Ok(())
}

/// What a device signs to confirm a payment (the biometric stand-in):
/// `"confirm\n" + ORDER_ID + "\n" + AMOUNT + "\n" + DEVICE_TS + "\n"`.
pub fn device_proof_message(order_id: &str, amount_wire: &str, device_ts: i64) -> String {
    format!("confirm\n{order_id}\n{amount_wire}\n{device_ts}\n")
}

/// `base64(HMAC-SHA256(device_secret, message))`.
pub fn device_proof(device_secret: &[u8], order_id: &str, amount_wire: &str, device_ts: i64) -> String {
    crate::signing::sign(device_secret, device_proof_message(order_id, amount_wire, device_ts).as_bytes())
}

/// Constant-time check of a device proof.
pub fn verify_device_proof(
    device_secret: &[u8],
    order_id: &str,
    amount_wire: &str,
    device_ts: i64,
    proof: &str,
) -> bool {
    crate::signing::verify(device_secret, device_proof_message(order_id, amount_wire, device_ts).as_bytes(), proof)
}

/// Used by callers that need a raw HMAC (e.g. fingerprints).
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(message);
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phones() {
        assert!(is_valid_phone("13800138000"));
        for bad in ["12800138000", "1380013800", "138001380000", "+8613800138", "1380013800a"] {
            assert!(!is_valid_phone(bad), "{bad}");
        }
    }

    #[test]
    fn weak_pay_passwords_are_refused() {
        for weak in ["123456", "111111", "654321", "012345", "890123", "121212", "123123", "000000", "987654"] {
            assert_eq!(check_pay_password(weak), Err(PayPasswordError::Weak), "{weak}");
        }
        for bad in ["12345", "1234567", "12345a", "", "１２３４５６"] {
            assert_eq!(check_pay_password(bad), Err(PayPasswordError::Malformed), "{bad}");
        }
        for ok in ["135790", "802461", "147258", "112233"] {
            assert_eq!(check_pay_password(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn device_proofs_bind_order_amount_and_time() {
        let secret = b"device secret";
        let proof = device_proof(secret, "ord_x", "12.30", 100);
        assert!(verify_device_proof(secret, "ord_x", "12.30", 100, &proof));
        assert!(!verify_device_proof(secret, "ord_y", "12.30", 100, &proof));
        assert!(!verify_device_proof(secret, "ord_x", "12.31", 100, &proof));
        assert!(!verify_device_proof(secret, "ord_x", "12.30", 101, &proof));
        assert!(!verify_device_proof(b"other", "ord_x", "12.30", 100, &proof));
    }
}
