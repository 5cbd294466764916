//! End-to-end tests: one binary of modules, each starting the real `paykit` binary.

mod ledger;
mod server;
mod signing;
