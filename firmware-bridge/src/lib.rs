//! `paykit-bridge`: the program at a shop counter. It reads a serial barcode scanner,
//! drives an ESC/POS receipt printer, and takes payment through the paykit SDK.
//!
//! Pure parts (framing and classifying scans, building ESC/POS jobs, parsing them in the
//! emulator) are separate from the parts that touch a port, so each is tested alone.

pub mod config;
pub mod counter;
pub mod emulator;
pub mod escpos;
pub mod printer;
pub mod scan;
pub mod scanner;
pub mod spool;
