//! paykit's HTTP gateway.
//!
//! A request flows: `observe` (request id, metrics, log line) → for `/v1/*`, `auth`
//! (signature, timestamp window, nonce) → a handler in `routes`, which validates input into
//! core types, calls the store, and answers JSON; every failure is an [`ApiError`] carrying
//! one stable [`paykit_core::ErrorCode`].

pub mod app;
pub mod auth;
pub mod bank;
pub mod clock;
pub mod config;
pub mod error;
pub mod extract;
pub mod notify;
pub mod observe;
pub mod openapi;
pub mod ops_auth;
pub mod passwords;
pub mod qr;
pub mod routes;
pub mod server;
pub mod wallet_auth;
pub mod web;

pub use app::{AppState, router, spawn_background_tasks};
pub use config::{GatewayConfig, Mode};
pub use error::ApiError;
