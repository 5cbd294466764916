//! The `paykit` command line's own behaviour: arguments, exit codes, messages. (Having an
//! integration test here also makes `cargo test --workspace` build the `paykit` binary
//! that the end-to-end tests in `tests/` start.)

use std::process::{Command, Output};

fn paykit(args: &[&str], database_url: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_paykit"))
        .args(args)
        .env("DATABASE_URL", database_url)
        .env("PAYKIT_LOG", "warn")
        .env_remove("PAYKIT_CONFIG")
        .output()
        .expect("run paykit")
}

fn temp_db() -> (std::path::PathBuf, String) {
    let dir = std::env::temp_dir()
        .join(format!("paykit-cli-{}", std::process::id()))
        .join(format!("{}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()));
    let url = format!("sqlite://{}", dir.join("nested/paykit.db").display());
    (dir, url)
}

#[test]
fn migrate_creates_the_database_file_and_its_folder() {
    let (dir, url) = temp_db();
    let out = paykit(&["migrate"], &url);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(dir.join("nested/paykit.db").exists());
    let verify = paykit(&["ledger", "verify"], &url);
    assert_eq!(verify.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&verify.stdout).contains("0 entries"));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn bad_input_gets_a_clear_message_and_a_non_zero_exit() {
    let (dir, url) = temp_db();
    let cases: &[(&[&str], &str, &str)] = &[
        (&["merchant", "create", "--name", "  "], url.as_str(), "--name must be 1 to 128 characters"),
        (
            &["merchant", "create", "--name", "A", "--notify-url", "ftp://x"],
            url.as_str(),
            "--notify-url must be an http",
        ),
        (&["merchant", "rotate-key", "--merchant-id", "mch_nope"], url.as_str(), "no merchant mch_nope"),
        (&["migrate"], "mysql://localhost/x", "neither sqlite: nor postgres:"),
        (&["migrate"], "postgres://nobody:hunter2@127.0.0.1:1/x", "postgres://nobody:***@127.0.0.1:1/x"),
    ];
    for (args, db, expected) in cases {
        let out = paykit(args, db);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: expected {expected:?} in {stderr:?}");
        assert!(!stderr.contains("hunter2"), "a database password is never printed");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn merchant_create_prints_the_secret_once_as_text_or_json() {
    let (dir, url) = temp_db();
    let text =
        paykit(&["merchant", "create", "--name", "Noodle Bar", "--notify-url", "https://shop.example/notify"], &url);
    let stdout = String::from_utf8_lossy(&text.stdout);
    assert!(
        stdout.starts_with("merchant_id  mch_")
            && stdout.contains("\nkey_id       key_")
            && stdout.contains("\napi_secret   "),
        "{stdout}"
    );
    let json = paykit(&["merchant", "create", "--name", "Tea", "--json"], &url);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, ["api_secret", "key_id", "merchant_id"]);
    assert_eq!(v["api_secret"].as_str().unwrap().len(), 40);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn production_mode_refuses_sandbox_tools_and_a_missing_bank() {
    let (dir, url) = temp_db();
    let out = Command::new(env!("CARGO_BIN_EXE_paykit"))
        .args(["sandbox", "advance-clock", "1h"])
        .env("DATABASE_URL", &url)
        .env("PAYKIT_MODE", "production")
        .env_remove("PAYKIT_CONFIG")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("only moves in sandbox mode"));
    let out = paykit(&["serve", "--mode", "production", "--listen", "127.0.0.1:0"], &url);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("production mode needs a real bank connector"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ok = paykit(&["sandbox", "advance-clock", "90m"], &url);
    assert!(
        String::from_utf8_lossy(&ok.stdout).contains("advanced by 5400 s"),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );
    let bad = paykit(&["sandbox", "advance-clock", "soon"], &url);
    assert_eq!(bad.status.code(), Some(2));
    let _ = std::fs::remove_dir_all(dir);
}
