//! The printer emulator's ESC/POS parser: never panics, whatever the bytes and however
//! they are split across reads.
#![no_main]
use libfuzzer_sys::fuzz_target;
use paykit_bridge::emulator::{Parser, PrinterState};

fuzz_target!(|data: &[u8]| {
    let cut = data.first().map_or(0, |&b| usize::from(b)) % (data.len() + 1);
    let (mut state, mut parser) = (PrinterState::default(), Parser::default());
    parser.feed(&mut state, &data[..cut]);
    parser.feed(&mut state, &data[cut..]);
    let _ = state.receipts.iter().map(|r| r.text()).count();
});
