//! Splitting a red packet (红包) into shares.
//!
//! Lucky packets use the widely described "twice the remaining mean" method: each share but
//! the last is drawn uniformly from 1 cent to twice the mean of what is left (never taking
//! so much that a later share would get less than 1 cent); the last share takes the rest.
//! Every share is at least 0.01, the shares sum exactly to the total, and each position's
//! expected amount is the overall mean. The randomness is passed in (this crate does no
//! I/O), so tests can replay a split.

pub const MAX_SHARES: i64 = 100;
/// The largest packet: 200.00 in minor units.
pub const MAX_TOTAL_MINOR: i64 = 20_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SplitError {
    #[error("a red packet has 1 to {MAX_SHARES} shares")]
    ShareCount,
    #[error("a red packet holds at most 200.00")]
    TooLarge,
    #[error("every share must be at least 0.01: the total is too small for that many shares")]
    TooSmall,
    #[error("a fixed red packet's total must split into equal shares to the cent")]
    Uneven,
}

fn check(total_minor: i64, shares: i64) -> Result<(), SplitError> {
    if !(1..=MAX_SHARES).contains(&shares) {
        return Err(SplitError::ShareCount);
    }
    if total_minor > MAX_TOTAL_MINOR {
        return Err(SplitError::TooLarge);
    }
    if total_minor < shares {
        return Err(SplitError::TooSmall);
    }
    Ok(())
}

/// Equal shares.
pub fn split_fixed(total_minor: i64, shares: i64) -> Result<Vec<i64>, SplitError> {
    check(total_minor, shares)?;
    if total_minor % shares != 0 {
        return Err(SplitError::Uneven);
    }
    Ok(vec![total_minor / shares; shares as usize])
}

/// Random shares by "twice the remaining mean"; `random` yields uniform u64s.
pub fn split_lucky(total_minor: i64, shares: i64, mut random: impl FnMut() -> u64) -> Result<Vec<i64>, SplitError> {
    check(total_minor, shares)?;
    let mut out = Vec::with_capacity(shares as usize);
    let mut left = total_minor;
    for remaining in (2..=shares).rev() {
        // Upper bound: twice the mean of what is left, and enough left for the others.
        let upper = (2 * left / remaining).min(left - (remaining - 1)).max(1);
        let share = 1 + (random() % upper as u64) as i64;
        out.push(share);
        left -= share;
    }
    out.push(left);
    debug_assert_eq!(out.iter().sum::<i64>(), total_minor);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator (SplitMix64) for repeatable tests.
    fn rng(mut seed: u64) -> impl FnMut() -> u64 {
        move || {
            seed = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = seed;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }
    }

    #[test]
    fn every_lucky_split_is_within_bounds_and_exact() {
        let mut r = rng(7);
        for (total, n) in [(20_000, 100), (100, 100), (1, 1), (20_000, 1), (999, 7), (10_000, 3)] {
            for _ in 0..2_000 {
                let shares = split_lucky(total, n, &mut r).unwrap();
                assert_eq!(shares.len() as i64, n);
                assert_eq!(shares.iter().sum::<i64>(), total);
                assert!(shares.iter().all(|&s| s >= 1), "{shares:?}");
            }
        }
    }

    #[test]
    fn each_position_averages_the_mean() {
        let (total, n, packets) = (10_000i64, 10i64, 20_000);
        let mut sums = vec![0i64; n as usize];
        let mut r = rng(42);
        for _ in 0..packets {
            for (i, s) in split_lucky(total, n, &mut r).unwrap().into_iter().enumerate() {
                sums[i] += s;
            }
        }
        // Each position's total over all packets is within 5% of total/n × packets.
        let expected = total / n * packets;
        for (i, sum) in sums.iter().enumerate() {
            assert!((sum - expected).abs() < expected / 20, "position {i} sums to {sum}, expected about {expected}");
        }
    }

    #[test]
    fn limits() {
        assert_eq!(split_fixed(1_000, 4), Ok(vec![250; 4]));
        assert_eq!(split_fixed(1_000, 3), Err(SplitError::Uneven));
        assert_eq!(split_lucky(20_001, 2, || 0), Err(SplitError::TooLarge));
        assert_eq!(split_lucky(99, 100, || 0), Err(SplitError::TooSmall));
        assert_eq!(split_lucky(100, 0, || 0), Err(SplitError::ShareCount));
        assert_eq!(split_lucky(100, 101, || 0), Err(SplitError::ShareCount));
        assert_eq!(split_lucky(100, 100, || 0), Ok(vec![1; 100]));
    }
}
