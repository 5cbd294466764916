//! End-to-end tests: one binary of modules, each starting the real `paykit` binary.

mod bills;
mod bridge;
mod browser;
mod callbacks;
mod chaos;
mod examples;
mod input;
mod ledger;
mod money;
mod pay;
mod refunds;
mod sdk;
mod server;
mod signing;
