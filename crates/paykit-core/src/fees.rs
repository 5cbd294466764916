//! Fees the gateway charges consumers.

/// The withdrawal fee, as the anchor product charges it: withdrawals are free until a
/// lifetime quota is used up; beyond it, 0.1% of the part above the quota, at least 0.10.
/// All amounts are minor units; the fee rounds up to the cent.
pub fn withdrawal_fee_minor(amount_minor: i64, free_quota_left_minor: i64) -> i64 {
    let charged = amount_minor - free_quota_left_minor.clamp(0, amount_minor);
    if charged == 0 {
        return 0;
    }
    let fee = (charged + 999) / 1000; // 0.1%, rounded up
    fee.max(10)
}

#[cfg(test)]
mod tests {
    use super::withdrawal_fee_minor as fee;

    #[test]
    fn free_then_a_tenth_of_a_percent_with_a_minimum() {
        assert_eq!(fee(50_000, 100_000), 0, "inside the free quota");
        assert_eq!(fee(50_000, 0), 50, "500.00 → 0.50");
        assert_eq!(fee(5_000, 0), 10, "50.00 → 0.05, raised to the 0.10 minimum");
        assert_eq!(fee(150_000, 100_000), 50, "only the 500.00 above the quota is charged");
        assert_eq!(fee(100_001, 0), 101, "rounded up to the cent");
    }
}
