//! `paykit-sdk`: a typed async client for the paykit merchant and biller API.
//!
//! - [`Client`] signs every request (PAYKIT-HMAC-SHA256), times out, and retries network
//!   errors and 5xx answers with backoff. Retrying is safe because every money-moving
//!   request carries its own idempotency key (`out_trade_no`, `out_refund_no`,
//!   `bill_no`): a repeat returns the first result instead of charging twice.
//! - [`Error`] is one enum; gateway refusals carry the stable API code ([`Error::code`]).
//! - [`callback::verify`] checks a callback's signature and freshness and returns the
//!   typed [`callback::Event`].
//! - With the `sandbox` feature, [`sandbox`] drives the wallet's core paths.
//!
//! ```no_run
//! use paykit_sdk::{Client, Credentials, NewOrder};
//!
//! # async fn run() -> Result<(), paykit_sdk::Error> {
//! let client = Client::new("http://127.0.0.1:8080", Credentials::merchant("mch_…", "key_…", "secret"))?;
//! let order = client.create_order(&NewOrder::new("T1001", "12.30", "Jasmine tea")).await?;
//! assert_eq!(order.status, "NOTPAY");
//! # Ok(()) }
//! ```

#![deny(missing_docs)]

pub mod callback;
mod client;
mod error;
#[cfg(feature = "sandbox")]
pub mod sandbox;
mod types;

pub use client::{Client, Credentials, RetryPolicy};
pub use error::Error;
pub use types::*;
