//! The Luhn (mod 10) check digit, used by bank card numbers and payment codes.

/// The check digit to append to `digits` (ASCII digits only; `None` otherwise).
pub fn check_digit(digits: &str) -> Option<u8> {
    let mut sum = 0u32;
    // Doubling starts from the rightmost digit of the payload (it sits left of the check digit).
    for (i, b) in digits.bytes().rev().enumerate() {
        if !b.is_ascii_digit() {
            return None;
        }
        let mut d = u32::from(b - b'0');
        if i % 2 == 0 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    Some(((10 - sum % 10) % 10) as u8)
}

/// Whether `number` (payload followed by its check digit) passes the Luhn check.
pub fn is_valid(number: &str) -> bool {
    if number.len() < 2 || !number.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let (payload, check) = number.split_at(number.len() - 1);
    check_digit(payload) == Some(check.as_bytes()[0] - b'0')
}

#[cfg(test)]
mod tests {
    #[test]
    fn known_numbers() {
        for good in [
            "6222000000000009",
            "6222000000000025",
            "6222000000009950",
            "6222000000000066",
            "6222000000001197",
            "6258000000000006",
            "6258000000000022",
            "79927398713",
        ] {
            assert!(super::is_valid(good), "{good}");
        }
        for bad in ["6222000000000008", "79927398710", "", "1", "62220000000000a9"] {
            assert!(!super::is_valid(bad), "{bad}");
        }
        assert_eq!(super::check_digit("7992739871"), Some(3));
    }
}
