//! End-to-end tests: one binary of modules, each starting the real `paykit` binary.

mod input;
mod ledger;
mod pay;
mod server;
mod signing;
