//! Ledger rules: accounts, and journal entries whose postings balance.
//!
//! A [`JournalEntry`] can only be built balanced (invariant 1 holds for every entry, so it
//! holds for the sum of all of them). Whether a debit would take a floored account below
//! zero (invariant 3) is decided by storage at commit time, because only storage sees
//! concurrent spending; the rule for which accounts are floored lives here.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use crate::money::{Currency, Money};

/// What an account is for. Its kind fixes its balance rule and its sharding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AccountKind {
    /// A consumer's wallet balance. Never negative.
    WalletBalance,
    /// What the gateway owes a merchant for its sales. Credited by every payment, so it is
    /// the hot account: its balance is spread over shards.
    MerchantSettlement,
    /// What the gateway owes a biller.
    BillerSettlement,
    /// Money held for pending transfers. Never negative.
    TransferEscrow,
    /// Money held for unclaimed red packets. Never negative.
    RedPacketEscrow,
    /// Refunds in flight to a card. Never negative.
    RefundClearing,
    /// Fees the gateway earned.
    FeeRevenue,
    /// The outside world (banks): debited when money enters by top-up, credited when it
    /// leaves. Negative by nature.
    External,
}

impl AccountKind {
    pub const ALL: [AccountKind; 8] = [
        AccountKind::WalletBalance,
        AccountKind::MerchantSettlement,
        AccountKind::BillerSettlement,
        AccountKind::TransferEscrow,
        AccountKind::RedPacketEscrow,
        AccountKind::RefundClearing,
        AccountKind::FeeRevenue,
        AccountKind::External,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AccountKind::WalletBalance => "wallet_balance",
            AccountKind::MerchantSettlement => "merchant_settlement",
            AccountKind::BillerSettlement => "biller_settlement",
            AccountKind::TransferEscrow => "transfer_escrow",
            AccountKind::RedPacketEscrow => "red_packet_escrow",
            AccountKind::RefundClearing => "refund_clearing",
            AccountKind::FeeRevenue => "fee_revenue",
            AccountKind::External => "external",
        }
    }

    /// Accounts that must never go below zero (invariant 3 and escrow soundness).
    pub fn floored_at_zero(self) -> bool {
        matches!(
            self,
            AccountKind::WalletBalance
                | AccountKind::TransferEscrow
                | AccountKind::RedPacketEscrow
                | AccountKind::RefundClearing
        )
    }

    /// How many balance rows the account's balance is spread over. Floored accounts keep
    /// one row so that "never below zero" is a single conditional update; accounts that
    /// receive concurrent credits from many requests get several, so that concurrent
    /// payments to one merchant do not queue on one row lock. 64, not 16: with 32 clients
    /// paying one merchant, 16 randomly picked rows collided often enough to cost 10–15%
    /// against payments spread over many merchants (BENCHMARKS.md).
    pub fn balance_shards(self) -> u16 {
        match self {
            AccountKind::MerchantSettlement | AccountKind::BillerSettlement | AccountKind::External => 64,
            _ => 1,
        }
    }
}

impl fmt::Display for AccountKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AccountKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AccountKind::ALL.into_iter().find(|k| k.as_str() == s).ok_or_else(|| format!("unknown account kind {s:?}"))
    }
}

/// What a journal entry records. Stored with the entry so reports can group by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntryKind {
    TopUp,
    Withdrawal,
    Payment,
    Refund,
    /// A card refund leaving the clearing account for the bank (or back to the merchant).
    RefundSettlement,
    /// A reversed (撤销) payment-code payment returned to the payer.
    Reversal,
    Transfer,
    RedPacket,
    BillPayment,
    CardRepayment,
    Adjustment,
}

impl EntryKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::TopUp => "top_up",
            EntryKind::Withdrawal => "withdrawal",
            EntryKind::Payment => "payment",
            EntryKind::Refund => "refund",
            EntryKind::RefundSettlement => "refund_settlement",
            EntryKind::Reversal => "reversal",
            EntryKind::Transfer => "transfer",
            EntryKind::RedPacket => "red_packet",
            EntryKind::BillPayment => "bill_payment",
            EntryKind::CardRepayment => "card_repayment",
            EntryKind::Adjustment => "adjustment",
        }
    }
}

/// One line of an entry: a signed amount on one account. Debits of an asset-like balance
/// (money leaving a wallet) are negative, credits positive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Posting {
    pub account_id: String,
    pub amount: Money,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    #[error("a journal entry needs at least two postings")]
    TooFewPostings,
    #[error("a posting of zero is meaningless")]
    ZeroPosting,
    #[error("postings in {currency} sum to {sum}, not zero")]
    Unbalanced { currency: Currency, sum: Money },
    #[error("arithmetic overflow summing postings")]
    Overflow,
}

/// A balanced set of postings that commit together or not at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalEntry {
    kind: EntryKind,
    /// The business object this entry moves money for (order id, refund id, …).
    reference: String,
    postings: Vec<Posting>,
}

impl JournalEntry {
    pub fn new(kind: EntryKind, reference: impl Into<String>, postings: Vec<Posting>) -> Result<Self, EntryError> {
        if postings.len() < 2 {
            return Err(EntryError::TooFewPostings);
        }
        let mut sums: BTreeMap<Currency, Money> = BTreeMap::new();
        for p in &postings {
            if p.amount.is_zero() {
                return Err(EntryError::ZeroPosting);
            }
            let sum = sums.entry(p.amount.currency()).or_insert_with(|| Money::zero(p.amount.currency()));
            *sum = sum.checked_add(p.amount).map_err(|_| EntryError::Overflow)?;
        }
        if let Some((&currency, &sum)) = sums.iter().find(|(_, s)| !s.is_zero()) {
            return Err(EntryError::Unbalanced { currency, sum });
        }
        Ok(JournalEntry { kind, reference: reference.into(), postings })
    }

    /// The common case: `amount` moves from one account to another.
    pub fn transfer(
        kind: EntryKind,
        reference: impl Into<String>,
        from_account: &str,
        to_account: &str,
        amount: Money,
    ) -> Result<Self, EntryError> {
        JournalEntry::new(
            kind,
            reference,
            vec![
                Posting { account_id: from_account.to_owned(), amount: amount.negated() },
                Posting { account_id: to_account.to_owned(), amount },
            ],
        )
    }

    pub fn kind(&self) -> EntryKind {
        self.kind
    }

    pub fn reference(&self) -> &str {
        &self.reference
    }

    pub fn postings(&self) -> &[Posting] {
        &self.postings
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cny(s: &str) -> Money {
        Money::parse(s, Currency::Cny).unwrap()
    }

    #[test]
    fn only_balanced_entries_can_be_built() {
        let ok = JournalEntry::transfer(EntryKind::Payment, "o1", "a", "b", cny("12.30")).unwrap();
        assert_eq!(ok.postings().len(), 2);
        let unbalanced = JournalEntry::new(
            EntryKind::Payment,
            "o1",
            vec![
                Posting { account_id: "a".into(), amount: cny("12.30").negated() },
                Posting { account_id: "b".into(), amount: cny("12.29") },
            ],
        );
        assert!(matches!(unbalanced, Err(EntryError::Unbalanced { .. })));
        let one =
            JournalEntry::new(EntryKind::Payment, "o1", vec![Posting { account_id: "a".into(), amount: cny("1") }]);
        assert_eq!(one, Err(EntryError::TooFewPostings));
        let zero = JournalEntry::transfer(EntryKind::Payment, "o1", "a", "b", Money::zero(Currency::Cny));
        assert_eq!(zero, Err(EntryError::ZeroPosting));
    }

    #[test]
    fn balance_is_per_currency() {
        let usd = Money::parse("1.00", Currency::Usd).unwrap();
        let mixed = JournalEntry::new(
            EntryKind::Adjustment,
            "x",
            vec![
                Posting { account_id: "a".into(), amount: cny("1.00").negated() },
                Posting { account_id: "b".into(), amount: usd },
            ],
        );
        assert!(matches!(mixed, Err(EntryError::Unbalanced { .. })));
    }

    #[test]
    fn floored_accounts_are_unsharded() {
        for k in AccountKind::ALL {
            if k.floored_at_zero() {
                assert_eq!(k.balance_shards(), 1, "{k}");
            }
            assert_eq!(k.as_str().parse::<AccountKind>().unwrap(), k);
        }
    }
}
