//! `paykit ledger verify` as an operator runs it: exit 0 on a sound ledger, non-zero with a
//! report naming the entry and account when a posting was changed by hand.

use paykit_core::ledger::{AccountKind, EntryKind, JournalEntry};
use paykit_core::time::Timestamp;
use paykit_core::{Currency, Money};
use paykit_store::ledger::Owner;
use paykit_store::{Engine, StoreConfig};
use paykit_tests::{Gateway, e2e_tests};

e2e_tests!(verify_passes_then_names_a_hand_edited_posting, async |gw: Gateway| {
    // Money moves through the ledger API the gateway uses, in the gateway's own database.
    let store = paykit_store::Store::connect(&gw.db.url, &StoreConfig::default()).await.unwrap();
    let now = Timestamp::from_unix_secs(1_767_225_600);
    let cny = |s| Money::parse(s, Currency::Cny).unwrap();
    let mut tx = store.begin().await.unwrap();
    let bank = tx
        .open_account(Owner { owner_type: "system", owner_id: "bank" }, AccountKind::External, Currency::Cny, now)
        .await
        .unwrap();
    let wallet = tx
        .open_account(Owner { owner_type: "user", owner_id: "u1" }, AccountKind::WalletBalance, Currency::Cny, now)
        .await
        .unwrap();
    let shop = tx
        .open_account(
            Owner { owner_type: "merchant", owner_id: "m1" },
            AccountKind::MerchantSettlement,
            Currency::Cny,
            now,
        )
        .await
        .unwrap();
    tx.post_entry(&JournalEntry::transfer(EntryKind::TopUp, "t1", &bank.id, &wallet.id, cny("50.00")).unwrap(), now)
        .await
        .unwrap();
    let paid = JournalEntry::transfer(EntryKind::Payment, "o1", &wallet.id, &shop.id, cny("12.30")).unwrap();
    let entry_id = tx.post_entry(&paid, now).await.unwrap();
    tx.commit().await.unwrap();

    let ok = gw.cli(&["ledger", "verify"]);
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert!(ok.status.success(), "{stdout}{}", String::from_utf8_lossy(&ok.stderr));
    assert!(stdout.contains("2 entries, 4 postings") && stdout.contains("OK"), "{stdout}");

    let lift_guard = match gw.db.engine {
        Engine::Sqlite => "DROP TRIGGER postings_no_update",
        Engine::Postgres => "ALTER TABLE postings DISABLE TRIGGER postings_append_only",
    };
    let pool = sqlx::AnyPool::connect(&gw.db.url).await.unwrap();
    sqlx::query(lift_guard).execute(&pool).await.unwrap();
    sqlx::query("UPDATE postings SET amount_minor = 1240 WHERE entry_id = $1 AND account_id = $2")
        .bind(&entry_id)
        .bind(&shop.id)
        .execute(&pool)
        .await
        .unwrap();

    let bad = gw.cli(&["ledger", "verify"]);
    let report = String::from_utf8_lossy(&bad.stdout);
    assert_eq!(bad.status.code(), Some(1), "{report}");
    assert!(report.contains(&format!("entry {entry_id} postings in CNY sum to 10")), "{report}");
    assert!(
        report.contains(&format!("account {} balance is 1230 minor units but its postings sum to 1240", shop.id)),
        "{report}"
    );
    assert!(report.contains("FAILED"), "{report}");

    let json = gw.cli(&["ledger", "verify", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["ok"], false);
    assert_eq!(v["violations"].as_array().unwrap().len(), 3);
});
