//! paykit's pure domain.
//!
//! Architecture invariant: this crate does no I/O. It cannot see the database, the network,
//! the clock or a random-number generator; callers pass time and randomness in. Everything
//! that moves money is a function of the types here whose result storage persists atomically.

pub mod error;
pub mod ledger;
pub mod money;
pub mod signing;
pub mod time;

pub use error::ErrorCode;
pub use money::{Currency, Money, MoneyError};
pub mod fees;
pub mod luhn;
pub mod order;
pub mod payment_code;
pub mod qr_token;
pub mod red_packet;
pub mod resident_id;
pub mod risk;
pub mod wallet;
