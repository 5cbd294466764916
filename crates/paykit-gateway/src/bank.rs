//! The bank connector: what paykit needs from a bank, and the sandbox bank that decides
//! by card number (like Stripe's test cards). A real bank's adapter implements the same
//! trait; nothing else in the gateway knows which bank it talks to.

use paykit_core::time::Timestamp;
use paykit_core::{ErrorCode, Money, luhn};
use paykit_store::payments::BankAnswer;

/// What binding a card gives back: never the card number itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardBinding {
    pub token: String,
    pub bank_name: String,
    pub last4: String,
    pub kind: CardKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CardKind {
    Debit,
    Credit,
}

impl CardKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CardKind::Debit => "debit",
            CardKind::Credit => "credit",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DebitPurpose {
    TopUp,
    Payment,
}

/// Why the bank refused. Each is one API error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BankRefusal {
    #[error("the card number is not valid")]
    NumberInvalid,
    #[error("the bank declined the card")]
    Declined,
    #[error("the card has expired")]
    Expired,
    #[error("the bank reports insufficient funds on the card")]
    InsufficientFunds,
    #[error("this card cannot be used for that")]
    NotSupported,
}

impl From<BankRefusal> for ErrorCode {
    fn from(r: BankRefusal) -> Self {
        match r {
            BankRefusal::NumberInvalid => ErrorCode::CardNumberInvalid,
            BankRefusal::Declined => ErrorCode::CardDeclined,
            BankRefusal::Expired => ErrorCode::CardExpired,
            BankRefusal::InsufficientFunds => ErrorCode::CardInsufficientFunds,
            BankRefusal::NotSupported => ErrorCode::CardNotSupported,
        }
    }
}

/// Why money is sent to a card.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreditPurpose {
    Withdrawal,
    Repayment,
}

pub trait BankConnector: Send + Sync + 'static {
    /// Checks a card number with the bank and returns a token for it.
    fn bind(&self, card_number: &str) -> Result<CardBinding, BankRefusal>;
    /// Asks the bank to take `amount` from the card behind `token`.
    fn debit(
        &self,
        token: &str,
        amount: Money,
        purpose: DebitPurpose,
        now: Timestamp,
    ) -> Result<BankAnswer, BankRefusal>;
    /// Asks the bank whether it will accept `amount` onto the card behind `token`.
    fn credit(&self, token: &str, amount: Money, purpose: CreditPurpose) -> Result<(), BankRefusal>;
}

/// The sandbox bank. Its tokens name the test card's behaviour (that is the sandbox
/// bank's own record of the card) and a random part; the number itself is not kept.
pub struct SandboxBank {
    /// How long the slow card (`…1197`) keeps an operation `PROCESSING` (30 s by default).
    pub slow_card_secs: i64,
}

const BEHAVIOURS: &[(&str, &str, CardKind)] = &[
    ("6222000000000025", "declined", CardKind::Debit),
    ("6222000000009950", "nofunds", CardKind::Debit),
    ("6222000000000066", "expired", CardKind::Debit),
    ("6222000000001197", "slow", CardKind::Debit),
    ("6258000000000006", "credit", CardKind::Credit),
    ("6258000000000022", "creditnorepay", CardKind::Credit),
];

impl BankConnector for SandboxBank {
    fn bind(&self, card_number: &str) -> Result<CardBinding, BankRefusal> {
        if !(16..=19).contains(&card_number.len()) || !luhn::is_valid(card_number) {
            return Err(BankRefusal::NumberInvalid);
        }
        let (behaviour, kind) = BEHAVIOURS
            .iter()
            .find(|(number, _, _)| *number == card_number)
            .map_or(("ok", CardKind::Debit), |&(_, b, k)| (b, k));
        Ok(CardBinding {
            token: format!("sbx_{behaviour}_{}", paykit_store::ids::random_base32(16)),
            bank_name: "Sandbox Bank".to_owned(),
            last4: card_number[card_number.len() - 4..].to_owned(),
            kind,
        })
    }

    fn debit(
        &self,
        token: &str,
        _amount: Money,
        purpose: DebitPurpose,
        now: Timestamp,
    ) -> Result<BankAnswer, BankRefusal> {
        let behaviour = token.strip_prefix("sbx_").and_then(|t| t.split('_').next()).unwrap_or("ok");
        match (behaviour, purpose) {
            ("declined", _) => Err(BankRefusal::Declined),
            ("nofunds", _) => Err(BankRefusal::InsufficientFunds),
            ("expired", _) => Err(BankRefusal::Expired),
            ("slow", _) => Ok(BankAnswer::Processing { settle_at: now.plus_secs(self.slow_card_secs) }),
            ("credit" | "creditnorepay", DebitPurpose::TopUp) => Err(BankRefusal::NotSupported),
            _ => Ok(BankAnswer::Approved),
        }
    }

    fn credit(&self, token: &str, _amount: Money, purpose: CreditPurpose) -> Result<(), BankRefusal> {
        let behaviour = token.strip_prefix("sbx_").and_then(|t| t.split('_').next()).unwrap_or("ok");
        let credit_card = matches!(behaviour, "credit" | "creditnorepay");
        match (behaviour, purpose) {
            (_, CreditPurpose::Withdrawal) if credit_card => Err(BankRefusal::NotSupported),
            (_, CreditPurpose::Repayment) if !credit_card => Err(BankRefusal::NotSupported),
            ("creditnorepay", CreditPurpose::Repayment) => Err(BankRefusal::Declined),
            ("expired", _) => Err(BankRefusal::Expired),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_test_card_behaves_as_documented() {
        let bank = SandboxBank { slow_card_secs: 30 };
        let now = Timestamp::from_unix_secs(1_000);
        let amount = Money::parse("1.00", paykit_core::Currency::Cny).unwrap();
        let debit = |number: &str, purpose| bank.debit(&bank.bind(number).unwrap().token, amount, purpose, now);
        assert_eq!(debit("6222000000000009", DebitPurpose::TopUp), Ok(BankAnswer::Approved));
        assert_eq!(debit("6222000000000025", DebitPurpose::TopUp), Err(BankRefusal::Declined));
        assert_eq!(debit("6222000000009950", DebitPurpose::Payment), Err(BankRefusal::InsufficientFunds));
        assert_eq!(debit("6222000000000066", DebitPurpose::Payment), Err(BankRefusal::Expired));
        assert_eq!(
            debit("6222000000001197", DebitPurpose::TopUp),
            Ok(BankAnswer::Processing { settle_at: now.plus_secs(30) })
        );
        assert_eq!(debit("6258000000000006", DebitPurpose::Payment), Ok(BankAnswer::Approved));
        assert_eq!(debit("6258000000000006", DebitPurpose::TopUp), Err(BankRefusal::NotSupported));
        assert_eq!(debit("4111111111111111", DebitPurpose::TopUp), Ok(BankAnswer::Approved), "any other valid number");
        assert_eq!(bank.bind("6222000000000008"), Err(BankRefusal::NumberInvalid));
        let binding = bank.bind("6258000000000006").unwrap();
        assert_eq!((binding.kind, binding.last4.as_str()), (CardKind::Credit, "0006"));
        assert!(!binding.token.contains("6258000000000006"));
    }
}
