//! `paykit ledger verify`: re-checks the ledger's invariants from the stored rows alone.
//!
//! Write-time enforcement (see `ledger.rs`) should make every check here pass; this is the
//! independent audit that would catch a bug in that code, or a hand edit of the database.

use std::fmt;

use sqlx::Row;

use crate::{Result, Store};

/// One broken invariant, naming what breaks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    /// Invariant 1, globally: all postings in a currency do not sum to zero.
    CurrencyImbalance { currency: String, sum_minor: i64 },
    /// Invariant 1, per entry: an entry's postings in a currency do not sum to zero.
    EntryUnbalanced { entry_id: String, currency: String, sum_minor: i64 },
    /// An entry with fewer than two postings.
    EntryTooFewPostings { entry_id: String, postings: i64 },
    /// A posting in a currency other than its account's.
    PostingCurrencyMismatch { posting_id: i64, account_id: String },
    /// Invariant 2: an account's balance rows disagree with the sum of its postings.
    BalanceMismatch { account_id: String, balance_minor: i64, postings_minor: i64 },
    /// Invariant 3: a floored account (wallet, escrow) is below zero.
    NegativeBalance { account_id: String, kind: String, balance_minor: i64 },
    /// Invariant 4: an order's live refunds exceed what was paid, or disagree with its total.
    RefundsExceedPaid { order_id: String, paid_minor: i64, refunded_minor: i64, refunds_minor: i64 },
    /// Invariant 5: an escrow account holds other than what is still owed out of it.
    EscrowMismatch { kind: String, balance_minor: i64, claimable_minor: i64 },
    /// Invariant 6: an order's payment (and reversal) entries do not match its status.
    PaymentEntries { order_id: String, status: String, payments: i64, reversals: i64 },
    /// Invariant 6: a refund without exactly one refund entry.
    RefundEntries { refund_id: String, status: String, entries: i64 },
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::CurrencyImbalance { currency, sum_minor } => {
                write!(f, "invariant 1: all postings in {currency} sum to {sum_minor} minor units, not 0")
            }
            Violation::EntryUnbalanced { entry_id, currency, sum_minor } => {
                write!(f, "invariant 1: entry {entry_id} postings in {currency} sum to {sum_minor} minor units, not 0")
            }
            Violation::EntryTooFewPostings { entry_id, postings } => {
                write!(f, "invariant 1: entry {entry_id} has {postings} posting(s), fewer than 2")
            }
            Violation::PostingCurrencyMismatch { posting_id, account_id } => {
                write!(f, "invariant 1: posting {posting_id} is not in the currency of account {account_id}")
            }
            Violation::BalanceMismatch { account_id, balance_minor, postings_minor } => write!(
                f,
                "invariant 2: account {account_id} balance is {balance_minor} minor units but its postings sum to {postings_minor}"
            ),
            Violation::NegativeBalance { account_id, kind, balance_minor } => {
                write!(f, "invariant 3: {kind} account {account_id} is negative: {balance_minor} minor units")
            }
            Violation::RefundsExceedPaid { order_id, paid_minor, refunded_minor, refunds_minor } => write!(
                f,
                "invariant 4: order {order_id} paid {paid_minor}, records {refunded_minor} refunded, its live refunds sum to {refunds_minor}"
            ),
            Violation::EscrowMismatch { kind, balance_minor, claimable_minor } => {
                write!(
                    f,
                    "invariant 5: {kind} holds {balance_minor} minor units but {claimable_minor} is owed out of it"
                )
            }
            Violation::PaymentEntries { order_id, status, payments, reversals } => write!(
                f,
                "invariant 6: order {order_id} is {status} with {payments} payment and {reversals} reversal entries"
            ),
            Violation::RefundEntries { refund_id, status, entries } => {
                write!(f, "invariant 6: refund {refund_id} is {status} with {entries} refund entries, not 1")
            }
        }
    }
}

/// What a verification run found.
#[derive(Debug, Clone, Default)]
pub struct VerifyReport {
    pub accounts: i64,
    pub entries: i64,
    pub postings: i64,
    pub violations: Vec<Violation>,
}

impl VerifyReport {
    pub fn is_ok(&self) -> bool {
        self.violations.is_empty()
    }
}

impl Store {
    /// Checks invariants 1–6 over the whole ledger and the business records beside it, all
    /// in one snapshot of the database: against a running gateway, checks read at different
    /// moments would see one side of a commit and not the other (an escrow's balance before
    /// a red packet's return, its packets after) and report a violation that never was.
    pub async fn verify_ledger(&self) -> Result<VerifyReport> {
        let begin = match self.engine() {
            crate::Engine::Postgres => "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
            // A read transaction in WAL mode reads the snapshot of its first read to the end.
            crate::Engine::Sqlite => "BEGIN",
        };
        let mut snapshot = self.reader().begin_with(begin).await?;
        let db = &mut *snapshot;
        let mut report = VerifyReport {
            accounts: sqlx::query_scalar("SELECT COUNT(*) FROM accounts").fetch_one(&mut *db).await?,
            entries: sqlx::query_scalar("SELECT COUNT(*) FROM journal_entries").fetch_one(&mut *db).await?,
            postings: sqlx::query_scalar("SELECT COUNT(*) FROM postings").fetch_one(&mut *db).await?,
            violations: Vec::new(),
        };
        let v = &mut report.violations;

        for r in sqlx::query(
            "SELECT currency, CAST(SUM(amount_minor) AS BIGINT) AS s FROM postings GROUP BY currency \
             HAVING SUM(amount_minor) <> 0 ORDER BY currency",
        )
        .fetch_all(&mut *db)
        .await?
        {
            v.push(Violation::CurrencyImbalance { currency: r.try_get(0)?, sum_minor: r.try_get(1)? });
        }

        for r in sqlx::query(
            "SELECT entry_id, currency, CAST(SUM(amount_minor) AS BIGINT) FROM postings GROUP BY entry_id, currency \
             HAVING SUM(amount_minor) <> 0 ORDER BY entry_id, currency",
        )
        .fetch_all(&mut *db)
        .await?
        {
            v.push(Violation::EntryUnbalanced {
                entry_id: r.try_get(0)?,
                currency: r.try_get(1)?,
                sum_minor: r.try_get(2)?,
            });
        }

        for r in sqlx::query(
            "SELECT e.id, CAST(COUNT(p.id) AS BIGINT) FROM journal_entries e LEFT JOIN postings p ON p.entry_id = e.id \
             GROUP BY e.id HAVING COUNT(p.id) < 2 ORDER BY e.id",
        )
        .fetch_all(&mut *db)
        .await?
        {
            v.push(Violation::EntryTooFewPostings { entry_id: r.try_get(0)?, postings: r.try_get(1)? });
        }

        for r in sqlx::query(
            "SELECT p.id, p.account_id FROM postings p JOIN accounts a ON a.id = p.account_id \
             WHERE p.currency <> a.currency ORDER BY p.id",
        )
        .fetch_all(&mut *db)
        .await?
        {
            v.push(Violation::PostingCurrencyMismatch { posting_id: r.try_get(0)?, account_id: r.try_get(1)? });
        }

        let balances = "SELECT a.id, a.kind, a.floored, \
               CAST(COALESCE(b.total, 0) AS BIGINT) AS balance, CAST(COALESCE(p.total, 0) AS BIGINT) AS posted \
             FROM accounts a \
             LEFT JOIN (SELECT account_id, SUM(balance_minor) AS total FROM account_balances GROUP BY account_id) b \
               ON b.account_id = a.id \
             LEFT JOIN (SELECT account_id, SUM(amount_minor) AS total FROM postings GROUP BY account_id) p \
               ON p.account_id = a.id \
             WHERE COALESCE(b.total, 0) <> COALESCE(p.total, 0) OR (a.floored = 1 AND COALESCE(b.total, 0) < 0) \
             ORDER BY a.id";
        for r in sqlx::query(balances).fetch_all(&mut *db).await? {
            let account_id: String = r.try_get(0)?;
            let kind: String = r.try_get(1)?;
            let floored = r.try_get::<i64, _>(2)? != 0;
            let balance_minor: i64 = r.try_get(3)?;
            let postings_minor: i64 = r.try_get(4)?;
            if balance_minor != postings_minor {
                v.push(Violation::BalanceMismatch { account_id: account_id.clone(), balance_minor, postings_minor });
            }
            if floored && balance_minor < 0 {
                v.push(Violation::NegativeBalance { account_id, kind, balance_minor });
            }
        }
        verify_business(db, &mut report.violations).await?;
        snapshot.rollback().await?;
        Ok(report)
    }
}

/// Invariants 4–6: refunds, escrows, and one entry per successful payment and refund.
async fn verify_business(db: &mut sqlx::AnyConnection, v: &mut Vec<Violation>) -> Result<()> {
    for r in sqlx::query(
            "SELECT o.id, o.amount_minor, o.refunded_minor, CAST(COALESCE(s.total, 0) AS BIGINT) FROM orders o \
             LEFT JOIN (SELECT order_id, SUM(amount_minor) AS total FROM refunds WHERE status IN ('PROCESSING', 'SUCCESS') \
                        GROUP BY order_id) s ON s.order_id = o.id \
             WHERE o.refunded_minor <> COALESCE(s.total, 0) OR COALESCE(s.total, 0) > o.amount_minor ORDER BY o.id",
        )
        .fetch_all(&mut *db)
        .await?
        {
            v.push(Violation::RefundsExceedPaid {
                order_id: r.try_get(0)?,
                paid_minor: r.try_get(1)?,
                refunded_minor: r.try_get(2)?,
                refunds_minor: r.try_get(3)?,
            });
        }

    let clearing: i64 = sqlx::query_scalar(
            "SELECT CAST(COALESCE(SUM(b.balance_minor), 0) AS BIGINT) FROM account_balances b JOIN accounts a ON a.id = b.account_id \
             WHERE a.kind = 'refund_clearing'",
        )
        .fetch_one(&mut *db)
        .await?;
    let owed: i64 = sqlx::query_scalar(
            "SELECT CAST(COALESCE(SUM(amount_minor), 0) AS BIGINT) FROM refunds WHERE status = 'PROCESSING' AND funding <> 'balance'",
        )
        .fetch_one(&mut *db)
        .await?;
    if clearing != owed {
        v.push(Violation::EscrowMismatch {
            kind: "refund_clearing".into(),
            balance_minor: clearing,
            claimable_minor: owed,
        });
    }
    for (kind, claimable_sql) in [
        (
            "transfer_escrow",
            "SELECT CAST(COALESCE(SUM(amount_minor), 0) AS BIGINT) FROM transfers WHERE status = 'PENDING'",
        ),
        (
            "red_packet_escrow",
            "SELECT CAST(COALESCE(SUM(s.amount_minor), 0) AS BIGINT) FROM red_packet_shares s JOIN red_packets p ON p.id = s.packet_id \
                 WHERE p.status = 'OPEN' AND s.claimed_by IS NULL",
        ),
    ] {
        let balance: i64 = sqlx::query_scalar(
                "SELECT CAST(COALESCE(SUM(b.balance_minor), 0) AS BIGINT) FROM account_balances b JOIN accounts a ON a.id = b.account_id \
                 WHERE a.kind = $1",
            )
            .bind(kind)
            .fetch_one(&mut *db)
            .await?;
        let claimable: i64 = sqlx::query_scalar(claimable_sql).fetch_one(&mut *db).await?;
        if balance != claimable {
            v.push(Violation::EscrowMismatch { kind: kind.into(), balance_minor: balance, claimable_minor: claimable });
        }
    }

    for r in sqlx::query(
            "SELECT o.id, o.status, CAST(COALESCE(p.n, 0) AS BIGINT), CAST(COALESCE(x.n, 0) AS BIGINT) FROM orders o \
             LEFT JOIN (SELECT reference, COUNT(*) AS n FROM journal_entries WHERE kind = 'payment' GROUP BY reference) p \
               ON p.reference = o.id \
             LEFT JOIN (SELECT reference, COUNT(*) AS n FROM journal_entries WHERE kind = 'reversal' GROUP BY reference) x \
               ON x.reference = o.id \
             WHERE NOT ((o.status = 'SUCCESS' AND COALESCE(p.n, 0) = 1 AND COALESCE(x.n, 0) = 0) \
                     OR (o.status = 'REVOKED' AND COALESCE(p.n, 0) = COALESCE(x.n, 0) AND COALESCE(p.n, 0) <= 1) \
                     OR (o.status NOT IN ('SUCCESS', 'REVOKED') AND COALESCE(p.n, 0) = 0 AND COALESCE(x.n, 0) = 0)) \
             ORDER BY o.id",
        )
        .fetch_all(&mut *db)
        .await?
        {
            v.push(Violation::PaymentEntries {
                order_id: r.try_get(0)?,
                status: r.try_get(1)?,
                payments: r.try_get(2)?,
                reversals: r.try_get(3)?,
            });
        }

    for r in sqlx::query(
            "SELECT r.id, r.status, CAST(COALESCE(x.n, 0) AS BIGINT) FROM refunds r \
             LEFT JOIN (SELECT reference, COUNT(*) AS n FROM journal_entries WHERE kind = 'refund' GROUP BY reference) x \
               ON x.reference = r.id WHERE COALESCE(x.n, 0) <> 1 ORDER BY r.id",
        )
        .fetch_all(&mut *db)
        .await?
        {
            v.push(Violation::RefundEntries { refund_id: r.try_get(0)?, status: r.try_get(1)?, entries: r.try_get(2)? });
        }
    Ok(())
}
