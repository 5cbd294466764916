//! Builds the `checkout` binary for the end-to-end tests, and checks it refuses to start
//! without credentials.

#[test]
fn refuses_to_start_without_credentials() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_checkout"))
        .env_remove("PAYKIT_MERCHANT_ID")
        .env_remove("PAYKIT_KEY_ID")
        .env_remove("PAYKIT_API_SECRET")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("PAYKIT_MERCHANT_ID"));
}
