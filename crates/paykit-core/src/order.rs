//! Order states and the moves between them (wire.md "Order and refund states").

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OrderStatus {
    /// Created, not paid.
    NotPay,
    /// Waiting for the consumer (confirmation of a large payment, or a slow bank).
    UserPaying,
    Success,
    /// Payment failed (declined by the consumer or the bank).
    PayError,
    /// Closed by the merchant or by expiry, unpaid.
    Closed,
    /// Reversed (撤销) by the merchant; any money taken was returned.
    Revoked,
}

impl OrderStatus {
    pub const ALL: [OrderStatus; 6] = [
        OrderStatus::NotPay,
        OrderStatus::UserPaying,
        OrderStatus::Success,
        OrderStatus::PayError,
        OrderStatus::Closed,
        OrderStatus::Revoked,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::NotPay => "NOTPAY",
            OrderStatus::UserPaying => "USERPAYING",
            OrderStatus::Success => "SUCCESS",
            OrderStatus::PayError => "PAYERROR",
            OrderStatus::Closed => "CLOSED",
            OrderStatus::Revoked => "REVOKED",
        }
    }

    /// Whether `self → next` is a move the state machine allows.
    pub fn can_become(self, next: OrderStatus) -> bool {
        use OrderStatus::*;
        matches!(
            (self, next),
            (NotPay, UserPaying)
                | (NotPay, Success)
                | (NotPay, Closed)
                | (UserPaying, Success)
                | (UserPaying, PayError)
                | (UserPaying, Revoked)
                | (Success, Revoked)
        )
    }

    /// No further change can happen (apart from refunds of a success).
    pub fn is_final(self) -> bool {
        !OrderStatus::ALL.iter().any(|&n| self.can_become(n))
    }
}

impl fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for OrderStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        OrderStatus::ALL.into_iter().find(|o| o.as_str() == s).ok_or_else(|| format!("unknown order status {s:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::OrderStatus::*;

    #[test]
    fn transitions() {
        assert!(NotPay.can_become(Success));
        assert!(!Success.can_become(NotPay));
        assert!(!Closed.can_become(Success));
        assert!(Closed.is_final() && PayError.is_final() && Revoked.is_final());
        assert!(!Success.is_final(), "a success can still be reversed");
        for s in super::OrderStatus::ALL {
            assert_eq!(s.as_str().parse::<super::OrderStatus>().unwrap(), s);
        }
    }
}
