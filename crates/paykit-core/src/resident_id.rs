//! Chinese resident identity numbers (GB 11643-1999): 17 digits and a check character
//! (ISO 7064 MOD 11-2, `X` for 10), with the birth date in digits 7–14.

use time::{Date, Month};

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IdNumberError {
    #[error("an ID number is 17 digits followed by a digit or X")]
    Malformed,
    #[error("the ID number's check character is wrong")]
    BadCheckCharacter,
    #[error("the ID number's birth date is not a plausible date")]
    ImplausibleBirthDate,
}

const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
const CHECK: &[u8; 11] = b"10X98765432";

/// The check character for the first 17 digits.
pub fn check_character(first17: &str) -> Option<char> {
    if first17.len() != 17 || !first17.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let sum: u32 = first17.bytes().zip(WEIGHTS).map(|(b, w)| u32::from(b - b'0') * w).sum();
    Some(CHECK[(sum % 11) as usize] as char)
}

/// Validates an ID number against `today` (births after today, or before 1900, are
/// refused). Accepts a lower-case `x`; returns the normalised number.
pub fn validate(id: &str, today: Date) -> Result<String, IdNumberError> {
    let id = id.to_ascii_uppercase();
    if id.len() != 18 || !id.is_ascii() {
        return Err(IdNumberError::Malformed);
    }
    let (first17, last) = id.split_at(17);
    let expected = check_character(first17).ok_or(IdNumberError::Malformed)?;
    if !last.bytes().all(|b| b.is_ascii_digit() || b == b'X') {
        return Err(IdNumberError::Malformed);
    }
    if !last.starts_with(expected) {
        return Err(IdNumberError::BadCheckCharacter);
    }
    let year: i32 = id[6..10].parse().map_err(|_| IdNumberError::Malformed)?;
    let month: u8 = id[10..12].parse().map_err(|_| IdNumberError::Malformed)?;
    let day: u8 = id[12..14].parse().map_err(|_| IdNumberError::Malformed)?;
    let month = Month::try_from(month).map_err(|_| IdNumberError::ImplausibleBirthDate)?;
    let born = Date::from_calendar_date(year, month, day).map_err(|_| IdNumberError::ImplausibleBirthDate)?;
    if year < 1900 || born > today {
        return Err(IdNumberError::ImplausibleBirthDate);
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn today() -> Date {
        Date::from_calendar_date(2026, Month::November, 28).unwrap()
    }

    #[test]
    fn valid_numbers_pass() {
        // The standard's published example, and one ending in X.
        assert_eq!(validate("11010519491231002X", today()), Ok("11010519491231002X".into()));
        assert_eq!(validate("11010519491231002x", today()), Ok("11010519491231002X".into()));
        let first17 = "44030419900307001";
        let full = format!("{first17}{}", check_character(first17).unwrap());
        assert!(validate(&full, today()).is_ok());
    }

    #[test]
    fn bad_numbers_are_refused_with_the_reason() {
        assert_eq!(validate("110105194912310021", today()), Err(IdNumberError::BadCheckCharacter));
        assert_eq!(validate("1101051949123100", today()), Err(IdNumberError::Malformed));
        assert_eq!(validate("11010519491231002Y", today()), Err(IdNumberError::Malformed));
        assert_eq!(
            validate("1234567890123456é", today()),
            Err(IdNumberError::Malformed),
            "18 bytes, not 18 characters"
        );
        for first17 in ["11010519491331002", "11010518890101002", "11010520300101002", "11010519490230002"] {
            let full = format!("{first17}{}", check_character(first17).unwrap());
            assert_eq!(validate(&full, today()), Err(IdNumberError::ImplausibleBirthDate), "{full}");
        }
    }
}
