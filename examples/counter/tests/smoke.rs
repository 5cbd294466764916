//! Builds the `counter` binary for the end-to-end tests.

#[test]
fn refuses_to_start_without_credentials() {
    let out =
        std::process::Command::new(env!("CARGO_BIN_EXE_counter")).env_remove("PAYKIT_MERCHANT_ID").output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("PAYKIT_MERCHANT_ID"));
}
