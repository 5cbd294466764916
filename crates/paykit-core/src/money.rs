//! Exact money: a decimal amount in a currency with a fixed number of minor digits.
//!
//! The wire writes amounts as decimal strings with exactly the currency's minor digits
//! (`"12.30"`); storage keeps integer minor units (`1230`). Floats never appear.

use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// Currencies paykit settles in. CNY first; others exist so that minor digits are never
/// assumed to be two.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Currency {
    Cny,
    Usd,
    Jpy,
}

impl Currency {
    pub const ALL: [Currency; 3] = [Currency::Cny, Currency::Usd, Currency::Jpy];

    /// ISO 4217 code.
    pub fn code(self) -> &'static str {
        match self {
            Currency::Cny => "CNY",
            Currency::Usd => "USD",
            Currency::Jpy => "JPY",
        }
    }

    /// Digits after the decimal point (ISO 4217 minor unit).
    pub fn minor_digits(self) -> u32 {
        match self {
            Currency::Cny | Currency::Usd => 2,
            Currency::Jpy => 0,
        }
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl FromStr for Currency {
    type Err = MoneyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Currency::ALL.into_iter().find(|c| c.code() == s).ok_or_else(|| MoneyError::UnknownCurrency(s.to_owned()))
    }
}

impl TryFrom<String> for Currency {
    type Error = MoneyError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Currency> for String {
    fn from(c: Currency) -> String {
        c.code().to_owned()
    }
}

/// Why an amount was refused. Each maps to its own API error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error(
        "amount must be a decimal string such as \"12.30\" (digits, one optional point; no sign, spaces or exponent)"
    )]
    Malformed,
    #[error("amount has more decimal places than {currency} allows ({digits})")]
    TooPrecise { currency: Currency, digits: u32 },
    #[error("amount must not be negative")]
    Negative,
    #[error("amount must be greater than zero")]
    Zero,
    #[error("amount exceeds the limit of {limit}")]
    TooLarge { limit: String },
    #[error("unknown currency {0:?}")]
    UnknownCurrency(String),
    #[error("currency mismatch: {0} and {1}")]
    CurrencyMismatch(Currency, Currency),
    #[error("arithmetic overflow")]
    Overflow,
}

/// The largest amount the system can represent at all: whatever fits in i64 minor units
/// with room to sum many of them. Business limits (single payment) are far lower and
/// configured separately.
const MAX_MINOR_UNITS: i64 = 1_000_000_000_000_000; // 10^15 minor units

/// An exact amount of money in one currency. Always normalised to the currency's minor
/// digits, so `Money` values compare and print exactly as the wire writes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Money {
    amount: Decimal,
    currency: Currency,
}

impl Money {
    /// Parses a wire amount strictly: `^(0|[1-9][0-9]*)(\.[0-9]+)?$` with at most the
    /// currency's minor digits, and, when `positive` is asked for, greater than zero.
    /// A leading `-` is reported as [`MoneyError::Negative`] so clients learn what is wrong.
    pub fn parse(text: &str, currency: Currency) -> Result<Money, MoneyError> {
        let (negative, body) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let (int_part, frac_part) = match body.split_once('.') {
            Some((i, f)) => (i, Some(f)),
            None => (body, None),
        };
        let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !all_digits(int_part) || (int_part.len() > 1 && int_part.starts_with('0')) {
            return Err(MoneyError::Malformed);
        }
        if let Some(f) = frac_part {
            if !all_digits(f) {
                return Err(MoneyError::Malformed);
            }
            if f.len() as u32 > currency.minor_digits() {
                return Err(MoneyError::TooPrecise { currency, digits: currency.minor_digits() });
            }
        }
        if negative {
            return Err(MoneyError::Negative);
        }
        // Bound the integer part before building a Decimal so huge inputs are refused
        // without overflow (Decimal holds 28 digits; our bound is far smaller).
        let max_int_digits = 15 - currency.minor_digits() as usize;
        if int_part.len() > max_int_digits + 1 {
            return Err(MoneyError::TooLarge { limit: Money::max(currency).to_string() });
        }
        let mut minor: i64 = 0;
        for b in int_part.bytes() {
            minor = minor * 10 + i64::from(b - b'0');
        }
        let frac = frac_part.unwrap_or("");
        for i in 0..currency.minor_digits() as usize {
            let digit = frac.as_bytes().get(i).map_or(0, |b| i64::from(b - b'0'));
            minor = minor * 10 + digit;
        }
        Money::from_minor(minor, currency)
    }

    /// Parses an amount that must be strictly positive (payments, refunds, bills).
    pub fn parse_positive(text: &str, currency: Currency) -> Result<Money, MoneyError> {
        let m = Money::parse(text, currency)?;
        if m.is_zero() {
            return Err(MoneyError::Zero);
        }
        Ok(m)
    }

    /// Builds from integer minor units (storage form). Negative values are allowed here
    /// because postings are signed; wire parsing never produces them.
    pub fn from_minor(minor: i64, currency: Currency) -> Result<Money, MoneyError> {
        if minor.unsigned_abs() > MAX_MINOR_UNITS as u64 {
            return Err(MoneyError::TooLarge { limit: Money::max(currency).to_string() });
        }
        Ok(Money { amount: Decimal::new(minor, currency.minor_digits()), currency })
    }

    pub fn zero(currency: Currency) -> Money {
        Money { amount: Decimal::new(0, currency.minor_digits()), currency }
    }

    fn max(currency: Currency) -> Money {
        Money { amount: Decimal::new(MAX_MINOR_UNITS, currency.minor_digits()), currency }
    }

    /// Integer minor units: the form kept in the database.
    pub fn minor_units(&self) -> i64 {
        // Invariant: amount always has exactly `minor_digits` scale and fits MAX_MINOR_UNITS.
        let mantissa = self.amount.mantissa();
        debug_assert_eq!(self.amount.scale(), self.currency.minor_digits());
        i64::try_from(mantissa).expect("Money mantissa is bounded by MAX_MINOR_UNITS")
    }

    pub fn amount(&self) -> Decimal {
        self.amount
    }

    pub fn currency(&self) -> Currency {
        self.currency
    }

    pub fn is_zero(&self) -> bool {
        self.amount.is_zero()
    }

    pub fn is_negative(&self) -> bool {
        self.amount.is_sign_negative() && !self.amount.is_zero()
    }

    pub fn checked_add(self, other: Money) -> Result<Money, MoneyError> {
        if self.currency != other.currency {
            return Err(MoneyError::CurrencyMismatch(self.currency, other.currency));
        }
        let sum = self.minor_units().checked_add(other.minor_units()).ok_or(MoneyError::Overflow)?;
        Money::from_minor(sum, self.currency)
    }

    pub fn checked_sub(self, other: Money) -> Result<Money, MoneyError> {
        self.checked_add(other.negated())
    }

    pub fn negated(self) -> Money {
        Money { amount: -self.amount, currency: self.currency }
    }
}

impl fmt::Display for Money {
    /// The wire form: exactly the currency's minor digits, no currency code.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `Decimal`'s Display keeps the scale, which is always `minor_digits`.
        write!(f, "{}", self.amount)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: Result<&str, MoneyError>) {
        let got = Money::parse_positive(input, Currency::Cny).map(|m| m.to_string());
        assert_eq!(got, expected.map(str::to_owned), "input {input:?}");
    }

    #[test]
    fn parses_and_prints_exactly() {
        check("12.30", Ok("12.30"));
        check("12.3", Ok("12.30"));
        check("12", Ok("12.00"));
        check("0.01", Ok("0.01"));
        check("9999999999999.99", Ok("9999999999999.99"));
    }

    #[test]
    fn refuses_each_bad_shape_with_its_own_error() {
        let too_precise = MoneyError::TooPrecise { currency: Currency::Cny, digits: 2 };
        check("1.001", Err(too_precise));
        check("-1", Err(MoneyError::Negative));
        check("0", Err(MoneyError::Zero));
        check("0.00", Err(MoneyError::Zero));
        for bad in
            ["1e3", "NaN", " 1.00", "1.00 ", "+1", "", ".5", "5.", "01.00", "1,00", "１", "0x10", "1..0", "--1", "inf"]
        {
            check(bad, Err(MoneyError::Malformed));
        }
        let too_large = Money::parse_positive("99999999999999999999", Currency::Cny).unwrap_err();
        assert!(matches!(too_large, MoneyError::TooLarge { .. }), "{too_large:?}");
        let too_large = Money::parse_positive("10000000000000.01", Currency::Cny).unwrap_err();
        assert!(matches!(too_large, MoneyError::TooLarge { .. }), "{too_large:?}");
    }

    #[test]
    fn minor_digits_follow_the_currency() {
        assert_eq!(Money::parse("500", Currency::Jpy).unwrap().to_string(), "500");
        assert!(matches!(Money::parse("500.5", Currency::Jpy), Err(MoneyError::TooPrecise { .. })));
        assert_eq!(Money::parse("1.5", Currency::Usd).unwrap().minor_units(), 150);
    }

    #[test]
    fn minor_units_round_trip() {
        for minor in [0_i64, 1, 99, 100, 1230, -1230, MAX_MINOR_UNITS, -MAX_MINOR_UNITS] {
            let m = Money::from_minor(minor, Currency::Cny).unwrap();
            assert_eq!(m.minor_units(), minor);
            if minor >= 0 {
                assert_eq!(Money::parse(&m.to_string(), Currency::Cny).unwrap(), m);
            }
        }
        assert!(Money::from_minor(MAX_MINOR_UNITS + 1, Currency::Cny).is_err());
    }

    #[test]
    fn arithmetic_is_exact_and_checked() {
        let a = Money::parse("0.10", Currency::Cny).unwrap();
        let b = Money::parse("0.20", Currency::Cny).unwrap();
        assert_eq!(a.checked_add(b).unwrap().to_string(), "0.30");
        assert_eq!(a.checked_sub(b).unwrap().to_string(), "-0.10");
        let usd = Money::parse("1", Currency::Usd).unwrap();
        assert!(matches!(a.checked_add(usd), Err(MoneyError::CurrencyMismatch(..))));
    }
}
