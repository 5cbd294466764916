//! A biller's `text/csv` upload: never panics, whatever the bytes; each row is either a
//! bill or its own error.
#![no_main]
use axum::http::{HeaderMap, HeaderValue, header::CONTENT_TYPE};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/csv"));
    let _ = paykit_gateway::routes::bills::parse_rows(&headers, data);
});
