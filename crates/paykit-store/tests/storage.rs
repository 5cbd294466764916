//! Storage and ledger tests. Each runs on SQLite and on PostgreSQL (`engine_tests!`).

use std::sync::Arc;

use paykit_core::ledger::{AccountKind, EntryKind, JournalEntry};
use paykit_core::time::Timestamp;
use paykit_core::{Currency, Money};
use paykit_store::ledger::{AccountMeta, Owner};
use paykit_store::testing::TestDb;
use paykit_store::{Engine, Store, StoreError, engine_tests};

fn cny(s: &str) -> Money {
    Money::parse(s, Currency::Cny).unwrap()
}

fn now() -> Timestamp {
    Timestamp::from_unix_secs(1_767_225_600)
}

async fn open(store: &Store, owner_type: &str, owner_id: &str, kind: AccountKind) -> AccountMeta {
    let mut tx = store.begin().await.unwrap();
    let meta = tx.open_account(Owner { owner_type, owner_id }, kind, Currency::Cny, now()).await.unwrap();
    tx.commit().await.unwrap();
    meta
}

async fn post(store: &Store, kind: EntryKind, from: &str, to: &str, amount: &str) -> Result<String, StoreError> {
    let entry = JournalEntry::transfer(kind, "test", from, to, cny(amount)).unwrap();
    let mut tx = store.begin().await?;
    let id = tx.post_entry(&entry, now()).await?;
    tx.commit().await?;
    Ok(id)
}

/// A wallet funded from the outside world, and a merchant to pay.
async fn wallet_and_merchant(store: &Store, funds: &str) -> (AccountMeta, AccountMeta) {
    let bank = open(store, "system", "sandbox_bank", AccountKind::External).await;
    let wallet = open(store, "user", "u1", AccountKind::WalletBalance).await;
    let merchant = open(store, "merchant", "m1", AccountKind::MerchantSettlement).await;
    post(store, EntryKind::TopUp, &bank.id, &wallet.id, funds).await.unwrap();
    (wallet, merchant)
}

engine_tests!(posting_moves_balances_exactly, async move |store: Store, _db: &TestDb| {
    let (wallet, merchant) = wallet_and_merchant(&store, "100.00").await;
    post(&store, EntryKind::Payment, &wallet.id, &merchant.id, "12.30").await.unwrap();
    post(&store, EntryKind::Payment, &wallet.id, &merchant.id, "0.01").await.unwrap();
    assert_eq!(store.balance(&wallet.id).await.unwrap(), cny("87.69"));
    assert_eq!(store.balance(&merchant.id).await.unwrap(), cny("12.31"));
    let report = store.verify_ledger().await.unwrap();
    assert!(report.is_ok(), "{:?}", report.violations);
    assert_eq!((report.entries, report.postings), (3, 6));
});

engine_tests!(opening_an_account_twice_returns_the_same_one, async move |store: Store, _db: &TestDb| {
    let a = open(&store, "user", "u1", AccountKind::WalletBalance).await;
    let b = open(&store, "user", "u1", AccountKind::WalletBalance).await;
    assert_eq!(a, b);
    let merchant = open(&store, "merchant", "m1", AccountKind::MerchantSettlement).await;
    assert_eq!(merchant.shard_count, 64);
    assert!(!merchant.floored && a.floored);
});

engine_tests!(a_wallet_cannot_be_overdrawn, async move |store: Store, _db: &TestDb| {
    let (wallet, merchant) = wallet_and_merchant(&store, "10.00").await;
    let err = post(&store, EntryKind::Payment, &wallet.id, &merchant.id, "10.01").await.unwrap_err();
    assert!(matches!(err, StoreError::InsufficientFunds { ref account_id } if *account_id == wallet.id), "{err:?}");
    assert_eq!(store.balance(&wallet.id).await.unwrap(), cny("10.00"));
    assert_eq!(store.posting_count(&wallet.id).await.unwrap(), 1, "the refused entry left no posting");
    post(&store, EntryKind::Payment, &wallet.id, &merchant.id, "10.00").await.unwrap();
    assert!(store.balance(&wallet.id).await.unwrap().is_zero());
});

engine_tests!(concurrent_spending_never_overdraws, async move |store: Store, _db: &TestDb| {
    // 32 tasks each try to spend 7.00 from 100.00: exactly 14 can succeed.
    let (wallet, merchant) = wallet_and_merchant(&store, "100.00").await;
    let (wallet, merchant) = (Arc::new(wallet), Arc::new(merchant));
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let (store, wallet, merchant) = (store.clone(), wallet.clone(), merchant.clone());
            tokio::spawn(async move { post(&store, EntryKind::Payment, &wallet.id, &merchant.id, "7.00").await })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(StoreError::InsufficientFunds { .. }) => {}
            Err(other) => panic!("unexpected error {other:?}"),
        }
    }
    assert_eq!(ok, 14);
    assert_eq!(store.balance(&wallet.id).await.unwrap(), cny("2.00"));
    assert_eq!(store.balance(&merchant.id).await.unwrap(), cny("98.00"));
    assert_eq!(store.posting_count(&wallet.id).await.unwrap(), 1 + 14, "no posting lost, none extra");
    assert_eq!(store.posting_count(&merchant.id).await.unwrap(), 14);
    let report = store.verify_ledger().await.unwrap();
    assert!(report.is_ok(), "{:?}", report.violations);
});

engine_tests!(
    a_failed_operation_in_a_shared_transaction_spares_its_neighbours,
    async move |store: Store, _db: &TestDb| {
        let (wallet, merchant) = wallet_and_merchant(&store, "10.00").await;
        let entry = |amount: &str| {
            JournalEntry::transfer(EntryKind::Payment, "batch", &wallet.id, &merchant.id, cny(amount)).unwrap()
        };
        let (first, too_big, third) = (entry("4.00"), entry("50.00"), entry("5.00"));
        let mut tx = store.begin().await.unwrap();
        let a = tx.savepoint(async |tx| tx.post_entry(&first, now()).await).await;
        let b = tx.savepoint(async |tx| tx.post_entry(&too_big, now()).await).await;
        let c = tx.savepoint(async |tx| tx.post_entry(&third, now()).await).await;
        tx.commit().await.unwrap();
        assert!(a.is_ok() && c.is_ok());
        assert!(matches!(b, Err(StoreError::InsufficientFunds { .. })));
        assert_eq!(store.balance(&wallet.id).await.unwrap(), cny("1.00"));
        assert!(store.verify_ledger().await.unwrap().is_ok());
    }
);

engine_tests!(the_journal_is_append_only, async move |store: Store, db: &TestDb| {
    let (_wallet, _merchant) = wallet_and_merchant(&store, "10.00").await;
    let pool = raw_pool(db).await;
    for sql in [
        "UPDATE postings SET amount_minor = 1",
        "DELETE FROM postings",
        "UPDATE journal_entries SET kind = 'x'",
        "DELETE FROM journal_entries",
    ] {
        let err = sqlx::query(sql).execute(&pool).await.expect_err(sql);
        assert!(err.to_string().contains("append-only"), "{sql}: {err}");
    }
});

engine_tests!(verify_names_a_posting_changed_by_hand, async move |store: Store, db: &TestDb| {
    let (wallet, merchant) = wallet_and_merchant(&store, "10.00").await;
    let entry_id = post(&store, EntryKind::Payment, &wallet.id, &merchant.id, "3.00").await.unwrap();
    assert!(store.verify_ledger().await.unwrap().is_ok());

    // Someone with owner rights on the database lifts the append-only guard and edits a
    // posting; verify must notice.
    let pool = raw_pool(db).await;
    let lift_guard = match db.engine {
        Engine::Sqlite => "DROP TRIGGER postings_no_update",
        Engine::Postgres => "ALTER TABLE postings DISABLE TRIGGER postings_append_only",
    };
    sqlx::query(lift_guard).execute(&pool).await.unwrap();
    sqlx::query("UPDATE postings SET amount_minor = amount_minor + 1 WHERE entry_id = $1 AND account_id = $2")
        .bind(&entry_id)
        .bind(&merchant.id)
        .execute(&pool)
        .await
        .unwrap();

    let report = store.verify_ledger().await.unwrap();
    let text: Vec<String> = report.violations.iter().map(ToString::to_string).collect();
    assert!(!report.is_ok());
    assert!(text.iter().any(|t| t.contains("invariant 1") && t.contains(&entry_id)), "{text:?}");
    assert!(text.iter().any(|t| t.contains("invariant 1: all postings in CNY sum to 1")), "{text:?}");
    assert!(text.iter().any(|t| t.contains("invariant 2") && t.contains(&merchant.id)), "{text:?}");
});

engine_tests!(a_nonce_is_accepted_once, async move |store: Store, _db: &TestDb| {
    use paykit_store::nonces::NonceUse::{Read, Write};
    assert!(store.spend_nonce("m1", "abcdefghijklmnop", now(), Write).await.unwrap());
    assert!(!store.spend_nonce("m1", "abcdefghijklmnop", now(), Write).await.unwrap());
    assert!(!store.spend_nonce("m1", "abcdefghijklmnop", now(), Read).await.unwrap(), "a read sees a write's nonce");
    assert!(store.spend_nonce("m2", "abcdefghijklmnop", now(), Write).await.unwrap(), "nonces are per party");

    // A read's nonce is refused at once (in flight), and once it has been written behind.
    assert!(store.spend_nonce("m1", "readreadreadread", now(), Read).await.unwrap());
    assert!(!store.spend_nonce("m1", "readreadreadread", now(), Read).await.unwrap());
    // A write waits for its own commit, which comes after the read's queued insert.
    assert!(store.spend_nonce("m1", "flushflushflush0", now(), Write).await.unwrap());
    assert!(!store.spend_nonce("m1", "readreadreadread", now(), Read).await.unwrap(), "stored by now");
    assert!(!store.spend_nonce("m1", "readreadreadread", now(), Write).await.unwrap());

    // Concurrent spends of one nonce: exactly one wins, whatever each request does.
    let racers: Vec<_> = (0..8)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store.spend_nonce("m3", "racingracingrace", now(), if i % 2 == 0 { Read } else { Write }).await.unwrap()
            })
        })
        .collect();
    let mut winners = 0;
    for racer in racers {
        winners += usize::from(racer.await.unwrap());
    }
    assert_eq!(winners, 1);
    // Behind any read's insert queued above, so all six are stored once it returns.
    assert!(store.spend_nonce("m1", "flushflushflush1", now(), Write).await.unwrap());

    assert_eq!(store.prune_nonces(now().plus_secs(60)).await.unwrap(), 0);
    assert_eq!(store.prune_nonces(now().plus_secs(901)).await.unwrap(), 6);
    assert!(store.spend_nonce("m1", "abcdefghijklmnop", now().plus_secs(901), Write).await.unwrap());
});

engine_tests!(key_rotation_keeps_two_active, async move |store: Store, _db: &TestDb| {
    let (merchant, first) = store.create_merchant("Shop", None, now()).await.unwrap();
    let second = store.rotate_merchant_key(&merchant.id, now().plus_secs(1)).await.unwrap().unwrap();
    assert!(second.revoked_key_ids.is_empty());
    for key in [&first, &second] {
        assert!(store.active_signing_key("merchant", &merchant.id, &key.key_id).await.unwrap().is_some());
    }
    let third = store.rotate_merchant_key(&merchant.id, now().plus_secs(2)).await.unwrap().unwrap();
    assert_eq!(third.revoked_key_ids, vec![first.key_id.clone()]);
    assert!(store.active_signing_key("merchant", &merchant.id, &first.key_id).await.unwrap().is_none());
    assert!(
        store.active_signing_key("biller", &merchant.id, &third.key_id).await.unwrap().is_none(),
        "party kind is checked"
    );
    assert!(store.rotate_merchant_key("mch_nope", now()).await.unwrap().is_none());
    assert_eq!(store.keys(&merchant.id).await.unwrap().len(), 3);
});

/// A plain connection pool on the test database, for SQL a user of paykit would not run.
async fn raw_pool(db: &TestDb) -> sqlx::AnyPool {
    sqlx::any::install_default_drivers();
    sqlx::AnyPool::connect(&db.url).await.unwrap()
}

engine_tests!(console_users_log_in_and_out, async move |store: Store, _db: &TestDb| {
    let (merchant, _key) = store.create_merchant("Corner Shop", None, now()).await.unwrap();
    let user = store.create_console_user(&merchant.id, "alice", "hash", now()).await.unwrap().unwrap();
    assert!(store.create_console_user(&merchant.id, "alice", "other", now()).await.unwrap().is_none());
    assert_eq!(store.console_user_by_username("alice").await.unwrap(), Some(user.clone()));
    assert_eq!(store.console_user_by_username("bob").await.unwrap(), None);

    let later = Timestamp::from_unix_secs(now().unix_secs() + 3600);
    store.create_console_session("digest", &user.id, later, now()).await.unwrap();
    assert_eq!(store.console_session_user("digest", now()).await.unwrap(), Some(user.clone()));
    assert_eq!(store.console_session_user("digest", later).await.unwrap(), None, "expired");
    store.end_console_session("digest").await.unwrap();
    assert_eq!(store.console_session_user("digest", now()).await.unwrap(), None, "logged out");
});

engine_tests!(group_commit_keeps_each_writers_outcome_apart, async move |store: Store, _db: &TestDb| {
    let (wallet, merchant) = wallet_and_merchant(&store, "100.00").await;
    let grouped = store.clone().with_group_commit(16);
    let mut tasks = Vec::new();
    for i in 0..40 {
        let (grouped, from, to) = (grouped.clone(), wallet.id.clone(), merchant.id.clone());
        tasks.push(tokio::spawn(async move {
            grouped
                .write(move |tx| {
                    Box::pin(async move {
                        let entry =
                            JournalEntry::transfer(EntryKind::Payment, format!("o{i}"), &from, &to, cny("1.00"))
                                .unwrap();
                        tx.post_entry(&entry, now()).await?;
                        // Every fourth writer fails after writing: only its own work is undone.
                        if i % 4 == 0 { Err(StoreError::Corrupt(format!("writer {i} gives up"))) } else { Ok(i) }
                    })
                })
                .await
        }));
    }
    let mut committed = 0;
    for (i, t) in tasks.into_iter().enumerate() {
        match t.await.unwrap() {
            Ok(n) => {
                assert_eq!(n, i);
                committed += 1;
            }
            Err(StoreError::Corrupt(m)) => assert_eq!(m, format!("writer {i} gives up")),
            Err(other) => panic!("writer {i}: {other}"),
        }
    }
    assert_eq!(committed, 30);
    assert_eq!(store.balance(&merchant.id).await.unwrap(), cny("30.00"));
    assert_eq!(store.balance(&wallet.id).await.unwrap(), cny("70.00"));
    // A writer refused by the ledger itself (not enough money) fails alone too.
    let (from, to) = (wallet.id.clone(), merchant.id.clone());
    let too_much = grouped
        .write(move |tx| {
            Box::pin(async move {
                let entry = JournalEntry::transfer(EntryKind::Payment, "big", &from, &to, cny("70.01")).unwrap();
                tx.post_entry(&entry, now()).await
            })
        })
        .await;
    assert!(matches!(too_much, Err(StoreError::InsufficientFunds { .. })), "{too_much:?}");
    let report = store.verify_ledger().await.unwrap();
    assert!(report.is_ok(), "{:?}", report.violations);
    assert_eq!(report.entries, 31, "the top-up and the thirty committed payments");
});

engine_tests!(print_requests_are_claimed_once, async move |store: Store, _db: &TestDb| {
    let (merchant, _key) = store.create_merchant("Corner Shop", None, now()).await.unwrap();
    let mut ids = Vec::new();
    for i in 0..6 {
        let mut order = dynamic_order(&merchant.id, &format!("P{i}"), "1.00");
        order.description = "print me".into();
        store.create_order(&order).await.unwrap();
        ids.push(store.request_print(&merchant.id, &order.id, "console:alice", now()).await.unwrap());
    }
    assert_eq!(store.bridge_last_poll(&merchant.id).await.unwrap(), None, "no bridge yet");
    // Two bridges of the same merchant claiming at once never get the same request.
    let (a, b) = tokio::join!(
        store.claim_print_requests(&merchant.id, 4, now()),
        store.claim_print_requests(&merchant.id, 4, now())
    );
    let mut claimed: Vec<String> = a.unwrap().into_iter().chain(b.unwrap()).map(|(id, _)| id).collect();
    claimed.sort();
    ids.sort();
    assert_eq!(claimed, ids);
    assert!(store.claim_print_requests(&merchant.id, 4, now()).await.unwrap().is_empty());
    assert_eq!(store.bridge_last_poll(&merchant.id).await.unwrap(), Some(now()));
});

engine_tests!(
    a_party_without_an_active_key_does_not_block_the_others_deliveries,
    async move |store: Store, _db: &TestDb| {
        let url = "http://127.0.0.1:9/hook";
        let (keyless, key) = store.create_merchant("Revoked Shop", Some(url), now()).await.unwrap();
        assert!(store.revoke_key(&keyless.id, &key.key_id, now()).await.unwrap());
        let (keyed, live) = store.create_merchant("Live Shop", Some(url), now()).await.unwrap();
        let mut tx = store.begin().await.unwrap();
        for m in [&keyless, &keyed] {
            tx.enqueue_event("merchant", &m.id, "bench.ping", serde_json::json!({}), Some(url), now()).await.unwrap();
        }
        tx.commit().await.unwrap();

        let mut claimed = store.claim_deliveries("w1", now(), now(), 60, 10).await.unwrap();
        claimed.sort_by_key(|d| d.party_id != keyless.id);
        assert_eq!(claimed.len(), 2, "one keyless party must not fail the whole claim");
        assert_eq!(claimed[0].key, None);
        assert_eq!(claimed[1].key.as_ref().map(|(id, _)| id.as_str()), Some(live.key_id.as_str()));

        // Its failed attempt is recorded like any other and it goes back on the schedule.
        let outcome =
            |d: &paykit_store::events::ClaimedDelivery, status: Option<u16>| paykit_store::events::DeliveryOutcome {
                event_id: d.event_id.clone(),
                attempts: d.attempts,
                started_at: now(),
                finished_at: now(),
                http_status: status,
                error: status.is_none().then(|| "no active key".to_owned()),
            };
        let kept = store
            .finish_deliveries("w1", vec![outcome(&claimed[0], None), outcome(&claimed[1], Some(200))])
            .await
            .unwrap();
        assert_eq!(kept, vec![true, true]);
        assert!(store.claim_deliveries("w1", now(), now(), 60, 10).await.unwrap().is_empty(), "retry is 15 s later");
        let later = store.claim_deliveries("w1", now().plus_secs(16), now().plus_secs(16), 60, 10).await.unwrap();
        assert_eq!(
            later.iter().map(|d| (d.party_id.as_str(), d.attempts)).collect::<Vec<_>>(),
            vec![(keyless.id.as_str(), 1)]
        );
        // Another worker's outcome for a lease it does not hold changes nothing.
        assert_eq!(store.finish_deliveries("w2", vec![outcome(&later[0], Some(200))]).await.unwrap(), vec![false]);

        // A resend while that attempt is in flight takes the lease: the event goes out again
        // now, and the in-flight attempt's outcome no longer counts.
        assert!(store.resend_event(&keyless.id, &later[0].event_id, now().plus_secs(17)).await.unwrap());
        assert_eq!(store.finish_deliveries("w1", vec![outcome(&later[0], Some(200))]).await.unwrap(), vec![false]);
        let again = store.claim_deliveries("w3", now().plus_secs(17), now().plus_secs(17), 60, 10).await.unwrap();
        assert_eq!(again.iter().map(|d| d.event_id.as_str()).collect::<Vec<_>>(), vec![later[0].event_id.as_str()]);
        assert!(!store.resend_event(&keyed.id, &later[0].event_id, now()).await.unwrap(), "another party's event");
    }
);

engine_tests!(pay_password_guesses_are_taken_before_they_are_checked, async move |store: Store, _db: &TestDb| {
    use paykit_store::users::PAY_PASSWORD_MAX_FAILURES;
    let user = store.create_user("13800138077", "hash", now()).await.unwrap().unwrap();
    // Guesses taken at once (none checked yet) stop at the limit: none sees the lock open
    // after the limit, whatever their hashes will say.
    let racers: Vec<_> = (0..12)
        .map(|_| {
            let (store, id) = (store.clone(), user.id.clone());
            tokio::spawn(async move { store.take_pay_password_guess(&id, now()).await.unwrap() })
        })
        .collect();
    let mut taken = Vec::new();
    for racer in racers {
        taken.extend(racer.await.unwrap());
    }
    taken.sort_unstable();
    assert_eq!(taken, (1..=PAY_PASSWORD_MAX_FAILURES).collect::<Vec<_>>());
    // One given back (never checked) frees one guess; the last wrong one locks.
    store.give_back_pay_password_guess(&user.id).await.unwrap();
    let last = store.take_pay_password_guess(&user.id, now()).await.unwrap().unwrap();
    assert_eq!(last, PAY_PASSWORD_MAX_FAILURES);
    let until = store.pay_password_guess_failed(&user.id, last, now()).await.unwrap().unwrap();
    assert_eq!(store.pay_password_locked_until(&user.id, now()).await.unwrap(), Some(until));
    assert_eq!(store.take_pay_password_guess(&user.id, now()).await.unwrap(), None, "locked");
    assert!(store.take_pay_password_guess(&user.id, until.plus_secs(1)).await.unwrap().is_some(), "lock over");
    // A right guess starts the count again.
    store.reset_pay_password_failures(&user.id).await.unwrap();
    assert_eq!(store.take_pay_password_guess(&user.id, until.plus_secs(1)).await.unwrap(), Some(1));
});

/// A payable order of `amount` from `merchant_id`, expiring an hour from `now()`.
fn dynamic_order(merchant_id: &str, out_trade_no: &str, amount: &str) -> paykit_store::orders::Order {
    paykit_store::orders::Order {
        id: paykit_store::ids::new_id("ord"),
        merchant_id: merchant_id.to_owned(),
        out_trade_no: out_trade_no.to_owned(),
        kind: "native".into(),
        amount: cny(amount),
        description: "a test order".into(),
        notify_url: None,
        status: paykit_core::order::OrderStatus::NotPay,
        request_digest: String::new(),
        expire_at: now().plus_secs(3600),
        created_at: now(),
        updated_at: now(),
        paid_at: None,
        payer_user_id: None,
        funding: None,
        device_id: None,
    }
}

engine_tests!(
    a_row_locked_outside_the_lane_does_not_hold_up_its_other_payments,
    async move |store: Store, db: &TestDb| {
        // The batch skips a locked balance row instead of waiting for it.
        let lock = "SELECT balance_minor FROM account_balances WHERE account_id = $1 FOR UPDATE";
        lane_goes_on_while_a_payers_row_is_held(store, db, lock).await;
    }
);

engine_tests!(a_lock_the_lane_cannot_skip_does_not_hold_it_up_either, async move |store: Store, db: &TestDb| {
    // The postings' foreign-key check on the wallet's account row waits for this lock:
    // the lane's lock timeout gives the batch's payments up to run on their own.
    let lock = "SELECT id FROM accounts WHERE id = $1 FOR UPDATE";
    lane_goes_on_while_a_payers_row_is_held(store, db, lock).await;
});

/// Two payments from the first payer while another transaction holds `lock` (one
/// placeholder: the payer's wallet account), then two from the second: the second two are
/// settled together while the lock is still held, the first two once it is let go.
async fn lane_goes_on_while_a_payers_row_is_held(store: Store, db: &TestDb, lock: &str) {
    use paykit_core::order::OrderStatus;
    use paykit_store::payments::{Funding, PayOrder};
    if db.engine == Engine::Sqlite {
        return; // no row locks: SQLite's one writer is the lane itself
    }
    let (merchant, _) = store.create_merchant("Shop", None, now()).await.unwrap();
    let merchant_account = open(&store, "merchant", &merchant.id, AccountKind::MerchantSettlement).await;
    let bank = open(&store, "system", "sandbox_bank", AccountKind::External).await;
    let mut payers = Vec::new();
    for phone in ["13800000001", "13800000002"] {
        let user = store.create_user(phone, "hash", now()).await.unwrap().unwrap();
        let wallet = open(&store, "user", &user.id, AccountKind::WalletBalance).await;
        post(&store, EntryKind::TopUp, &bank.id, &wallet.id, "100.00").await.unwrap();
        payers.push((user.id, wallet.id));
    }
    let grouped = store.clone().with_group_commit(64);
    let pay_two = |user: String, tag: &'static str| {
        let (grouped, merchant) = (grouped.clone(), merchant.id.clone());
        async move {
            let mut orders = Vec::new();
            for i in 0..2 {
                let order = dynamic_order(&merchant, &format!("{tag}{i}"), "1.00");
                grouped.create_order(&order).await.unwrap();
                orders.push(order.id);
            }
            let lane = grouped.clone();
            let pay = move |order_id: String| {
                let (grouped, user) = (lane.clone(), user.clone());
                tokio::spawn(async move {
                    let p = PayOrder {
                        order_id: &order_id,
                        user_id: &user,
                        funding: Funding::Balance,
                        confirmed_by_device: None,
                        idempotency: None,
                        now: now(),
                    };
                    grouped.pay_order(p).await
                })
            };
            let held = grouped.pause_group_commit().await.unwrap();
            let tasks: Vec<_> = orders.into_iter().map(pay).collect();
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            drop(held);
            tasks
        }
    };

    // Another writer holds a row of the first payer's, as a long transaction would.
    let raw = raw_pool(db).await;
    let mut holder = raw.begin().await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(lock.to_owned())).bind(&payers[0].1).fetch_all(&mut *holder).await.unwrap();
    // A batch that needs that row gives its payments up to run on their own (where they
    // wait for the row like any other writer) instead of holding the lane...
    let waiting = pay_two(payers[0].0.clone(), "A").await;
    // ...so the next batch's payments go through while the row is still held.
    for task in pay_two(payers[1].0.clone(), "B").await {
        let paid = tokio::time::timeout(std::time::Duration::from_secs(20), task)
            .await
            .expect("a payment behind a batch that waits for a locked row")
            .unwrap();
        assert!(matches!(&paid, Ok(o) if o.status == OrderStatus::Success), "{paid:?}");
    }
    for task in &waiting {
        assert!(!task.is_finished(), "the payments from the locked wallet wait for its row");
    }
    // Both landed on one of the merchant's shards: they were settled together, in a batch.
    let shards_credited: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM account_balances WHERE account_id = $1 AND balance_minor <> 0")
            .bind(&merchant_account.id)
            .fetch_one(&raw)
            .await
            .unwrap();
    assert_eq!(shards_credited, 1);
    holder.commit().await.unwrap();
    for task in waiting {
        let paid = task.await.unwrap();
        assert!(matches!(&paid, Ok(o) if o.status == OrderStatus::Success), "{paid:?}");
    }
    for (_, wallet) in &payers {
        assert_eq!(store.balance(wallet).await.unwrap(), cny("98.00"));
    }
    let report = store.verify_ledger().await.unwrap();
    assert!(report.is_ok(), "{:?}", report.violations);
}

engine_tests!(
    payments_settled_together_have_the_outcomes_of_one_after_another,
    async move |store: Store, db: &TestDb| {
        use paykit_core::order::OrderStatus;
        use paykit_store::payments::{Funding, IdempotencyKey, PayError, PayOrder};
        let url = Some("http://127.0.0.1:9/hook");
        let (shop, _) = store.create_merchant("Shop", url, now()).await.unwrap();
        let (together, _) = store.create_merchant("Together Shop", url, now()).await.unwrap();
        let bank = open(&store, "system", "sandbox_bank", AccountKind::External).await;
        let mut users = Vec::new();
        for (phone, funds) in [("13800000001", Some("10.00")), ("13800000002", Some("100.00")), ("13800000003", None)] {
            let user = store.create_user(phone, "hash", now()).await.unwrap().unwrap();
            if let Some(funds) = funds {
                let wallet = open(&store, "user", &user.id, AccountKind::WalletBalance).await;
                post(&store, EntryKind::TopUp, &bank.id, &wallet.id, funds).await.unwrap();
            }
            users.push(user.id);
        }
        let (a, b, c) = (users[0].clone(), users[1].clone(), users[2].clone());
        for m in [&shop.id, &together.id] {
            open(&store, "merchant", m, AccountKind::MerchantSettlement).await;
        }
        let mut orders = Vec::new();
        for (i, (merchant, amount)) in [
            (&together.id, "4.00"), // 0: a
            (&together.id, "5.00"), // 1: a
            (&together.id, "3.00"), // 2: a — one of a's three cannot be paid: 10.00 covers two
            (&together.id, "1.00"), // 3: b, confirmed by device d1
            (&shop.id, "2.00"),     // 4: paid by b before; b again, and a, in the batch
            (&shop.id, "2.00"),     // 5: expired
            (&shop.id, "6.00"),     // 6: b twice in the batch
            (&shop.id, "1.00"),     // 7: c, whose wallet was never opened
            (&shop.id, "1.00"),     // 8: b, with device d9 already spent on it
            (&shop.id, "7.00"),     // 9: b, with an idempotency key; then a, from the balance
        ]
        .into_iter()
        .enumerate()
        {
            let mut order = dynamic_order(merchant, &format!("T{i}"), amount);
            if i == 5 {
                order.expire_at = now().plus_secs(-1);
            }
            if i == 3 {
                order.notify_url = Some("http://127.0.0.1:9/order-hook".into());
            }
            store.create_order(&order).await.unwrap();
            orders.push(order.id);
        }
        fn pay<'a>(orders: &'a [String], order: usize, user: &'a str) -> PayOrder<'a> {
            PayOrder {
                order_id: &orders[order],
                user_id: user,
                funding: Funding::Balance,
                confirmed_by_device: None,
                idempotency: None,
                now: now(),
            }
        }
        store.pay_order(pay(&orders, 4, &b)).await.unwrap();
        sqlx::query("INSERT INTO device_proofs_used (order_id, device_id, used_at_us) VALUES ($1, 'd9', 0)")
            .bind(&orders[8])
            .execute(&raw_pool(db).await)
            .await
            .unwrap();

        // Hold the lane until every payment is queued, so that they all share one batch.
        let grouped = store.clone().with_group_commit(64);
        let held = grouped.pause_group_commit().await.expect("group commit is on");
        let mut payments = vec![pay(&orders, 0, &a), pay(&orders, 1, &a), pay(&orders, 2, &a)];
        payments.push(PayOrder { confirmed_by_device: Some("d1"), ..pay(&orders, 3, &b) });
        for (order, user) in [(4, &b), (4, &a), (5, &b), (6, &b), (6, &b), (7, &c)] {
            payments.push(pay(&orders, order, user));
        }
        payments.push(PayOrder { confirmed_by_device: Some("d9"), ..pay(&orders, 8, &b) });
        let key = IdempotencyKey { scope: format!("payment:{b}"), key: "k1".into(), request_digest: "d".into() };
        payments.push(PayOrder { idempotency: Some(key), ..pay(&orders, 9, &b) });
        // Its first payment in the batch is left to run on its own, so this one must wait
        // for it (and find the order paid) rather than be settled ahead of it.
        payments.push(pay(&orders, 9, &a));
        // Queued one at a time, so the batch's order is this list's.
        let mut tasks = Vec::new();
        for p in payments {
            tasks.push({
                let grouped = grouped.clone();
                let p = (
                    p.order_id.to_owned(),
                    p.user_id.to_owned(),
                    p.confirmed_by_device.map(str::to_owned),
                    p.idempotency,
                );
                tokio::spawn(async move {
                    grouped
                        .pay_order(PayOrder {
                            order_id: &p.0,
                            user_id: &p.1,
                            funding: Funding::Balance,
                            confirmed_by_device: p.2.as_deref(),
                            idempotency: p.3,
                            now: now(),
                        })
                        .await
                })
            });
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        drop(held);
        let mut outcomes = Vec::new();
        for t in tasks {
            outcomes.push(t.await.unwrap());
        }

        let paid = |r: &Result<paykit_store::orders::Order, PayError>, order: usize, user: &str| {
            matches!(r, Ok(o) if o.id == orders[order] && o.status == OrderStatus::Success
                && o.payer_user_id.as_deref() == Some(user))
        };
        // In batch order: 4.00 and 5.00 of a's 10.00 go, then 3.00 does not fit.
        assert!(paid(&outcomes[0], 0, &a) && paid(&outcomes[1], 1, &a), "{:?}", &outcomes[..3]);
        assert!(matches!(outcomes[2], Err(PayError::InsufficientBalance)), "{:?}", outcomes[2]);
        let a_paid = 2;
        let first = outcomes[0].as_ref().unwrap();
        assert_eq!((first.funding.as_deref(), first.paid_at, first.updated_at), (Some("balance"), Some(now()), now()));
        assert!(paid(&outcomes[3], 3, &b), "{:?}", outcomes[3]);
        assert!(paid(&outcomes[4], 4, &b), "b's own earlier payment comes back: {:?}", outcomes[4]);
        assert!(matches!(outcomes[5], Err(PayError::AlreadyPaid)), "{:?}", outcomes[5]);
        assert!(matches!(outcomes[6], Err(PayError::Expired)), "{:?}", outcomes[6]);
        assert!(paid(&outcomes[7], 6, &b) && paid(&outcomes[8], 6, &b), "{:?}", &outcomes[7..9]);
        assert!(matches!(outcomes[9], Err(PayError::InsufficientBalance)), "{:?}", outcomes[9]);
        assert!(matches!(outcomes[10], Err(PayError::DeviceProofReused)), "{:?}", outcomes[10]);
        assert!(paid(&outcomes[11], 9, &b), "{:?}", outcomes[11]);
        assert!(matches!(outcomes[12], Err(PayError::AlreadyPaid)), "{:?}", outcomes[12]);

        // The money moved exactly once per payment, and nothing else.
        let a_spent: i64 = 400 + 500;
        let balance = |kind: AccountKind, owner_type: &'static str, owner_id: String| {
            let store = store.clone();
            async move {
                let mut tx = store.begin().await.unwrap();
                let meta = tx
                    .open_account(Owner { owner_type, owner_id: &owner_id }, kind, Currency::Cny, now())
                    .await
                    .unwrap();
                tx.rollback().await.unwrap();
                store.balance(&meta.id).await.unwrap().minor_units()
            }
        };
        assert_eq!(balance(AccountKind::WalletBalance, "user", a.clone()).await, 1000 - a_spent);
        assert_eq!(balance(AccountKind::WalletBalance, "user", b.clone()).await, 10000 - 200 - 100 - 600 - 700);
        assert_eq!(balance(AccountKind::MerchantSettlement, "merchant", together.id.clone()).await, a_spent + 100);
        assert_eq!(balance(AccountKind::MerchantSettlement, "merchant", shop.id.clone()).await, 200 + 600 + 700);
        let report = store.verify_ledger().await.unwrap();
        assert!(report.is_ok(), "{:?}", report.violations);

        let pool = raw_pool(db).await;
        let count = |sql: &'static str| {
            let pool = pool.clone();
            async move { sqlx::query_scalar::<_, i64>(sql).fetch_one(&pool).await.unwrap() }
        };
        // One payment.succeeded (with its delivery) and one record per payment made.
        let made = a_paid as i64 + 4;
        assert_eq!(count("SELECT COUNT(*) FROM events WHERE event_type = 'payment.succeeded'").await, made);
        assert_eq!(count("SELECT COUNT(*) FROM deliveries").await, made);
        assert_eq!(count("SELECT COUNT(*) FROM records WHERE kind = 'payment' AND status = 'SUCCESS'").await, made);
        assert_eq!(count("SELECT COUNT(*) FROM device_proofs_used WHERE device_id = 'd1'").await, 1);
        // The order's own notify_url wins over its merchant's.
        assert_eq!(
            count("SELECT COUNT(*) FROM deliveries WHERE notify_url = 'http://127.0.0.1:9/order-hook'").await,
            1
        );
        // The batch's payments to one merchant share one of its balance rows (a payment made
        // alone picks one at random): this is how we know they were settled together.
        let shards: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM account_balances b JOIN accounts a ON a.id = b.account_id \
             WHERE a.owner_id = $1 AND b.balance_minor <> 0",
        )
        .bind(&together.id)
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(shards, 1);
    }
);

engine_tests!(a_signed_reads_key_and_nonce_come_in_one_read, async move |store: Store, _db: &TestDb| {
    use paykit_store::nonces::NonceUse::Write;
    let (merchant, key) = store.create_merchant("Corner Shop", None, now()).await.unwrap();
    let look = |nonce: &'static str| {
        let (store, merchant_id, key_id) = (store.clone(), merchant.id.clone(), key.key_id.clone());
        async move {
            store
                .signing_key_and_nonce("merchant", &merchant_id, &key_id, nonce)
                .await
                .unwrap()
                .map(|(k, stored)| (k.secret, stored))
        }
    };
    assert_eq!(look("freshfreshfresh0").await, Some((key.api_secret.clone(), false)));
    assert!(store.spend_nonce(&merchant.id, "spentspentspent0", now(), Write).await.unwrap());
    assert_eq!(look("spentspentspent0").await, Some((key.api_secret.clone(), true)));
    // A read's claim holds the nonce in flight until it is spent or dropped.
    let claim = store.claim_read_nonce(&merchant.id, "claimclaimclaim0").unwrap();
    assert!(store.claim_read_nonce(&merchant.id, "claimclaimclaim0").is_none(), "in flight");
    drop(claim);
    let claim = store.claim_read_nonce(&merchant.id, "claimclaimclaim0").expect("released when dropped");
    claim.spend(now()).unwrap();
    assert!(store.claim_read_nonce(&merchant.id, "claimclaimclaim0").is_none(), "in flight until written");
    assert!(store.spend_nonce(&merchant.id, "flushflushflush0", now(), Write).await.unwrap());
    assert_eq!(look("claimclaimclaim0").await, Some((key.api_secret.clone(), true)), "written behind the read");
    assert!(store.revoke_key(&merchant.id, &key.key_id, now()).await.unwrap());
    assert_eq!(look("freshfreshfresh0").await, None, "a revoked key signs nothing");
});

engine_tests!(a_reads_nonce_stays_refused_when_storing_it_fails, async move |store: Store, db: &TestDb| {
    use paykit_store::nonces::NonceUse::{Read, Write};
    let pool = raw_pool(db).await;
    assert!(store.spend_nonce("m1", "warmwarmwarmwarm", now(), Write).await.unwrap());
    // Inserting nonces fails from here on; reading them still works.
    let refuse: &[&str] = match db.engine {
        Engine::Sqlite => {
            &["CREATE TRIGGER refuse_nonces BEFORE INSERT ON request_nonces BEGIN SELECT RAISE(ABORT, 'down'); END"]
        }
        Engine::Postgres => &[
            "CREATE FUNCTION refuse_nonces() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'down'; END $$",
            "CREATE TRIGGER refuse_nonces BEFORE INSERT ON request_nonces FOR EACH STATEMENT EXECUTE FUNCTION refuse_nonces()",
        ],
    };
    for sql in refuse {
        sqlx::raw_sql(*sql).execute(&pool).await.unwrap();
    }
    assert!(store.spend_nonce("m1", "lostlostlostlost", now(), Read).await.unwrap());
    // A write waits for its insert, which fails (and so did the read's, before or with it).
    assert!(store.spend_nonce("m1", "failfailfailfail", now(), Write).await.is_err());
    assert!(!store.spend_nonce("m1", "lostlostlostlost", now(), Read).await.unwrap(), "still in flight");
    let allow = match db.engine {
        Engine::Sqlite => "DROP TRIGGER refuse_nonces",
        Engine::Postgres => "DROP TRIGGER refuse_nonces ON request_nonces",
    };
    sqlx::raw_sql(allow).execute(&pool).await.unwrap();
    // The next batch stores it: another process, which has no in-flight set, refuses it.
    assert!(store.spend_nonce("m1", "nextnextnextnext", now(), Write).await.unwrap());
    let other_process = db.store().await;
    assert!(!other_process.spend_nonce("m1", "lostlostlostlost", now(), Read).await.unwrap(), "stored");
});

engine_tests!(closing_the_store_writes_the_reads_nonces_still_gathering, async move |store: Store, db: &TestDb| {
    use paykit_store::nonces::NonceUse::Read;
    // Reads' nonces wait a moment for company before they are written; a store closed
    // meanwhile (a graceful restart) writes them first, so the next process refuses them.
    let claim = store.claim_read_nonce("m1", "lastlastlastlast").unwrap();
    claim.spend(now()).unwrap();
    store.close().await;
    let next_process = db.store().await;
    assert!(!next_process.spend_nonce("m1", "lastlastlastlast", now(), Read).await.unwrap(), "stored before closing");
});

/// A file database's commits reach the database file itself, not only its WAL
/// (`checkpoint.rs`): the writer's own checkpoint waits for 20,000 pages, and a merchant is
/// a few, so only the checkpointer copies them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checkpointer_copies_commits_into_the_database_file() {
    use rusqlite::OpenFlags;
    let db = TestDb::new(Engine::Sqlite).await.expect("sqlite is always available");
    let store = db.store().await.with_group_commit(64);
    let (merchant, _key) = store.create_merchant("Checkpointed Shop", None, now()).await.unwrap();
    let path = db.url.strip_prefix("sqlite://").expect("a file URL");
    // immutable=1 reads the database file alone, as if the WAL were not there.
    let in_the_file = || {
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI;
        let file = rusqlite::Connection::open_with_flags(format!("file:{path}?immutable=1"), flags).unwrap();
        match file.query_row("SELECT name FROM merchants WHERE id = ?1", [&merchant.id], |row| row.get::<_, String>(0))
        {
            Ok(name) => Some(name),
            // Not copied yet: the row, or the tables themselves, or (read without locks
            // while the checkpointer writes) not all of the pages the schema points at.
            Err(rusqlite::Error::QueryReturnedNoRows) => None,
            Err(e) if e.to_string().contains("no such table: merchants") => None,
            Err(rusqlite::Error::SqliteFailure(f, _))
                if matches!(f.code, rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase) =>
            {
                None
            }
            Err(e) => panic!("reading the database file: {e}"),
        }
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while in_the_file().is_none() {
        assert!(std::time::Instant::now() < deadline, "the merchant never reached the database file");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(in_the_file().as_deref(), Some("Checkpointed Shop"));
    store.close().await;
}

/// SQLite's point readers open the file sqlx opens, even when the URL's path has a `..`
/// that the URL parser folds away but the kernel would follow through a symlink.
#[tokio::test]
async fn point_readers_open_the_file_sqlx_opens() {
    let dir = std::env::temp_dir().join(format!("paykit-test-{}", paykit_store::ids::random_base32(12)));
    let deep = dir.join("real").join("deep");
    std::fs::create_dir_all(&deep).unwrap();
    std::os::unix::fs::symlink(&deep, dir.join("link")).unwrap();
    // sqlx opens DIR/paykit.db; the path as written leads the kernel to DIR/real/paykit.db.
    let url = format!("sqlite://{}/link/../paykit.db", dir.display());
    let store = Store::connect(&url, &paykit_store::StoreConfig::default()).await.expect("both open one file");
    store.migrate().await.unwrap();
    let (merchant, _key) = store.create_merchant("Corner Shop", None, now()).await.unwrap();
    let order = dynamic_order(&merchant.id, "DOTS", "1.00");
    store.create_order(&order).await.unwrap();
    assert_eq!(store.order(&order.id).await.unwrap().map(|o| o.id), Some(order.id));
    assert!(dir.join("paykit.db").exists() && !dir.join("real/paykit.db").exists());
    store.close().await;
    std::fs::remove_dir_all(&dir).ok();
}

engine_tests!(
    pay_context_reads_session_user_order_merchant_device_and_history_at_once,
    async move |store: Store, _db: &TestDb| {
        use paykit_store::pay_context::{PayContext, SessionAt};
        use paykit_store::payments::{Funding, PayOrder};
        let (shop, _) = store.create_merchant("Shop", None, now()).await.unwrap();
        let (other_shop, _) = store.create_merchant("Other Shop", None, now()).await.unwrap();
        let (new_shop, _) = store.create_merchant("New Shop", None, now()).await.unwrap();
        let bank = open(&store, "system", "sandbox_bank", AccountKind::External).await;
        let payer = store.create_user("13800138101", "hash", now()).await.unwrap().unwrap();
        let stranger = store.create_user("13800138102", "hash", now()).await.unwrap().unwrap();
        let wallet = open(&store, "user", &payer.id, AccountKind::WalletBalance).await;
        post(&store, EntryKind::TopUp, &bank.id, &wallet.id, "100.00").await.unwrap();
        let device = store.create_device(&payer.id, "phone", "c2VjcmV0", true, now()).await.unwrap();
        let strangers_device = store.create_device(&stranger.id, "phone", "c2VjcmV0", true, now()).await.unwrap();
        let expires = now().plus_secs(3600);
        store.create_session("payers-digest", &payer.id, expires, now()).await.unwrap();
        store.create_session("strangers-digest", &stranger.id, expires, now()).await.unwrap();
        let payers = SessionAt { token_digest: "payers-digest", now: now() };
        let strangers = SessionAt { token_digest: "strangers-digest", now: now() };
        // The session's user, with the order's context or none.
        let read = |session: SessionAt<'static>, order_id: String, device_id: Option<String>, window, day| {
            let store = store.clone();
            async move {
                let found = store
                    .session_pay_context(session, &order_id, device_id.as_deref(), window, day)
                    .await
                    .unwrap()
                    .expect("a live session");
                (found.user, found.order)
            }
        };
        let context_of = |session, order_id: &str, device_id: Option<&str>, window, day| {
            let read = read(session, order_id.to_owned(), device_id.map(str::to_owned), window, day);
            async move {
                let (user, order) = read.await;
                (user, order.expect("an order"))
            }
        };

        // Paid: 1.00 to the shop at t0, 2.00 to the other shop 100 s later.
        let t0 = now();
        for (merchant, no, amount, at) in
            [(&shop.id, "p1", "1.00", t0), (&other_shop.id, "p2", "2.00", t0.plus_secs(100))]
        {
            let order = dynamic_order(merchant, no, amount);
            store.create_order(&order).await.unwrap();
            let pay = PayOrder {
                order_id: &order.id,
                user_id: &payer.id,
                funding: Funding::Balance,
                confirmed_by_device: None,
                idempotency: None,
                now: at,
            };
            store.pay_order(pay).await.unwrap();
        }
        let to_shop = dynamic_order(&shop.id, "n1", "3.00");
        let to_new_shop = dynamic_order(&new_shop.id, "n2", "4.00");
        for order in [&to_shop, &to_new_shop] {
            store.create_order(order).await.unwrap();
        }

        // The window holds the second payment only; the day holds both.
        let (window, day) = (t0.plus_secs(50), t0.plus_secs(-1));
        let (user, context) = context_of(payers, &to_shop.id, Some(&device.id), window, day).await;
        assert_eq!((user.id.as_str(), user.phone.as_str(), user.frozen), (payer.id.as_str(), "13800138101", false));
        assert_eq!(context.order, to_shop);
        assert_eq!(context.merchant_status, "ACTIVE");
        let read_device = context.device.expect("the payer's device");
        assert_eq!(
            (read_device.id.as_str(), read_device.user_id.as_str(), read_device.confirm_payments),
            (device.id.as_str(), payer.id.as_str(), true)
        );
        assert_eq!(read_device.secret_b64, device.secret_b64);
        assert_eq!(
            (context.history.recent_payments, context.history.spent_today_minor, context.history.paid_payee_before),
            (1, 300, true)
        );
        assert_eq!(context.history, store.payer_history(&payer.id, &shop.id, window, day).await.unwrap());

        // Paid a merchant before is about the order's own merchant.
        let (_, context) = context_of(payers, &to_new_shop.id, None, window, day).await;
        assert!(context.device.is_none(), "no device asked for");
        assert!(!context.history.paid_payee_before);
        assert_eq!((context.history.recent_payments, context.history.spent_today_minor), (1, 300));
        // Someone else's session reads their own user and history, and a device is read
        // whoever owns it (the gateway refuses a stranger's).
        let (user, context) = context_of(strangers, &to_shop.id, Some(&strangers_device.id), window, day).await;
        assert_eq!(user.id, stranger.id);
        assert_eq!(context.device.map(|d| d.user_id), Some(stranger.id.clone()));
        assert_eq!(
            (context.history.recent_payments, context.history.spent_today_minor, context.history.paid_payee_before),
            (0, 0, false)
        );
        // An unknown device is none; an unknown order is the user with no order.
        let (_, context) = context_of(payers, &to_shop.id, Some("99999999"), window, day).await;
        assert!(context.device.is_none());
        let (user, order) = read(payers, "ord_unknown".into(), Some(device.id.clone()), window, day).await;
        assert_eq!(user.id, payer.id);
        assert!(order.is_none());
        // An unknown or expired session is nothing at all, order or not.
        for session in [
            SessionAt { token_digest: "nobodys-digest", now: now() },
            SessionAt { token_digest: "payers-digest", now: expires },
        ] {
            for order_id in [to_shop.id.as_str(), "ord_unknown"] {
                let found = store.session_pay_context(session, order_id, None, window, day).await.unwrap();
                assert!(found.is_none(), "{session:?} {order_id}");
            }
        }
        // The merchant's status and the user as they are now.
        assert!(store.set_frozen("merchant", &shop.id, true, "ops", None, now()).await.unwrap());
        assert!(store.set_frozen("user", &payer.id, true, "ops", None, now()).await.unwrap());
        let (user, PayContext { merchant_status, .. }) = context_of(payers, &to_shop.id, None, window, day).await;
        assert_eq!(merchant_status, "FROZEN");
        assert!(user.frozen);
    }
);

engine_tests!(new_orders_created_together_keep_their_own_outcomes, async move |store: Store, db: &TestDb| {
    use paykit_store::orders::Created;
    let (shop, _) = store.create_merchant("Shop", None, now()).await.unwrap();
    // On PostgreSQL, every statement that inserts orders is counted, to show the batching.
    let pool = raw_pool(db).await;
    if db.engine == Engine::Postgres {
        for sql in [
            "CREATE TABLE order_insert_statements (at_us BIGINT)",
            "CREATE FUNCTION count_order_inserts() RETURNS trigger LANGUAGE plpgsql AS $$ \
             BEGIN INSERT INTO order_insert_statements VALUES (0); RETURN NULL; END $$",
            "CREATE TRIGGER count_order_inserts AFTER INSERT ON orders FOR EACH STATEMENT EXECUTE FUNCTION count_order_inserts()",
        ] {
            sqlx::raw_sql(sql).execute(&pool).await.unwrap();
        }
    }
    // On SQLite the lane inserts a batch's new orders together; on PostgreSQL a batcher
    // does, outside the lane.
    let grouped = store.clone().with_group_commit(64);
    let create_all = async |orders: &[paykit_store::orders::Order]| {
        let tasks: Vec<_> = orders
            .iter()
            .cloned()
            .map(|order| {
                let grouped = grouped.clone();
                tokio::spawn(async move { grouped.create_order(&order).await })
            })
            .collect();
        let mut outcomes = Vec::new();
        for task in tasks {
            outcomes.push(task.await.unwrap());
        }
        outcomes
    };

    // New orders, and the same out_trade_no again (a merchant's retry racing its original).
    let mut orders = Vec::new();
    for i in 0..20 {
        orders.push(dynamic_order(&shop.id, &format!("n{i}"), "1.00"));
    }
    for i in 0..5 {
        orders.push(dynamic_order(&shop.id, &format!("n{i}"), "1.00"));
    }
    let outcomes = create_all(&orders).await;
    for i in 0..5 {
        // One of each pair made the order; the other got that same order back.
        let (first, second) = (&outcomes[i], &outcomes[20 + i]);
        let stored = store.order_by_out_trade_no(&shop.id, &format!("n{i}")).await.unwrap().unwrap();
        match (first, second) {
            (Ok(Created::New(new)), Ok(Created::Existing(existing)))
            | (Ok(Created::Existing(existing)), Ok(Created::New(new))) => {
                assert_eq!(new, existing);
                assert_eq!(new, &stored);
            }
            other => panic!("n{i}: {other:?}"),
        }
    }
    for i in 5..20 {
        assert!(matches!(&outcomes[i], Ok(Created::New(o)) if *o == orders[i]), "n{i}: {:?}", outcomes[i]);
        assert_eq!(store.order(&orders[i].id).await.unwrap().as_ref(), Some(&orders[i]));
    }
    if db.engine == Engine::Postgres {
        // 25 orders created at once: a few batches, and one statement alone for each of
        // the five that found its out_trade_no taken. One by one would be 25.
        let statements: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM order_insert_statements").fetch_one(&pool).await.unwrap();
        assert!(statements <= 12, "{statements} statements inserted 25 orders");
    }

    // Orders the database refuses fail a statement they share; their neighbours still go in.
    let mut orders = Vec::new();
    for i in 0..10 {
        let mut order = dynamic_order(&shop.id, &format!("m{i}"), "1.00");
        if i % 2 == 0 {
            order.kind = "no such kind".into();
        }
        orders.push(order);
    }
    let outcomes = create_all(&orders).await;
    for (i, (order, outcome)) in orders.iter().zip(&outcomes).enumerate() {
        if i % 2 == 0 {
            assert!(outcome.is_err(), "m{i}: {outcome:?}");
            assert_eq!(store.order(&order.id).await.unwrap(), None);
        } else {
            assert!(matches!(outcome, Ok(Created::New(o)) if o == order), "m{i}: {outcome:?}");
            assert_eq!(store.order(&order.id).await.unwrap().as_ref(), Some(order));
        }
    }
    let listed = store
        .list_orders(&shop.id, &paykit_store::orders::OrderFilter { limit: 100, ..Default::default() })
        .await
        .unwrap();
    assert_eq!(listed.len(), 25);
});

engine_tests!(
    an_order_waiting_on_a_row_lock_does_not_hold_up_other_new_orders,
    async move |store: Store, db: &TestDb| {
        use paykit_store::orders::Created;
        if db.engine == Engine::Sqlite {
            return; // no row locks: SQLite's one writer is the lane itself
        }
        let (shop, _) = store.create_merchant("Shop", None, now()).await.unwrap();
        let (other_shop, _) = store.create_merchant("Other Shop", None, now()).await.unwrap();
        let grouped = store.clone().with_group_commit(64);
        let first = dynamic_order(&shop.id, "taken", "1.00");
        grouped.create_order(&first).await.unwrap();

        // Another transaction is writing the order (as a payment would), so an insert of its
        // out_trade_no waits for that transaction's end.
        let raw = raw_pool(db).await;
        let mut holder = raw.begin().await.unwrap();
        sqlx::query("UPDATE orders SET updated_at_us = updated_at_us + 1 WHERE id = $1")
            .bind(&first.id)
            .execute(&mut *holder)
            .await
            .unwrap();
        let retry = {
            let (grouped, order) = (grouped.clone(), dynamic_order(&shop.id, "taken", "1.00"));
            tokio::spawn(async move { grouped.create_order(&order).await })
        };
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        // Orders created meanwhile, for this merchant and another, do not wait with it.
        let others: Vec<_> = (0..5)
            .map(|i| {
                let merchant = if i % 2 == 0 { &shop.id } else { &other_shop.id };
                let (grouped, order) = (grouped.clone(), dynamic_order(merchant, &format!("new{i}"), "1.00"));
                tokio::spawn(async move { (grouped.create_order(&order).await, order) })
            })
            .collect();
        for task in others {
            let (created, order) = tokio::time::timeout(std::time::Duration::from_secs(10), task)
                .await
                .expect("a new order behind one that waits for a row lock")
                .unwrap();
            assert!(matches!(&created, Ok(Created::New(o)) if *o == order), "{created:?}");
        }
        assert!(!retry.is_finished(), "the retry waits for the row");
        holder.commit().await.unwrap();
        let retried = retry.await.unwrap();
        assert!(matches!(&retried, Ok(Created::Existing(o)) if o.id == first.id), "{retried:?}");
    }
);

engine_tests!(verify_reads_one_snapshot_while_money_moves, async move |store: Store, _db: &TestDb| {
    use paykit_store::wallet_money::Payee;
    let bank = open(&store, "system", "sandbox_bank", AccountKind::External).await;
    let payer = store.create_user("13800000001", "hash", now()).await.unwrap().unwrap();
    let payee = store.create_user("13800000002", "hash", now()).await.unwrap().unwrap();
    let wallet = open(&store, "user", &payer.id, AccountKind::WalletBalance).await;
    post(&store, EntryKind::TopUp, &bank.id, &wallet.id, "1000.00").await.unwrap();
    // Transfers in and out of escrow, one after another, while the ledger is verified:
    // each check of an escrow reads its balance and what is owed out of it, and a commit
    // between the two reads would show a mismatch that never was.
    let mover = {
        let store = store.clone();
        tokio::spawn(async move {
            for _ in 0..150 {
                let sent = store
                    .create_transfer(
                        paykit_store::wallet_money::TransferToMake {
                            payer: &payer.id,
                            payee: Payee::User(&payee.id),
                            amount: cny("0.01"),
                            memo: "",
                            expires_at: now().plus_secs(3600),
                        },
                        None,
                        now(),
                    )
                    .await
                    .unwrap();
                store.accept_transfer(&sent.id, &payee.id, "13800000002", now()).await.unwrap();
            }
        })
    };
    let mut verified = 0;
    while !mover.is_finished() {
        let report = store.verify_ledger().await.unwrap();
        assert!(report.is_ok(), "after {verified} clean runs: {:?}", report.violations);
        verified += 1;
    }
    mover.await.unwrap();
    assert!(verified > 1, "the ledger was verified while money moved");
});

/// Creates an order as its signed request would: the nonce claimed in flight, then spent
/// with the order; `key`, the key the request was checked with from memory, whose status
/// the write reads.
fn create_signed(
    store: &Store,
    merchant_id: &str,
    nonce: String,
    out_trade_no: String,
    key: Option<String>,
) -> impl Future<Output = Result<paykit_store::orders::Created, StoreError>> + Send + use<> {
    let (store, m) = (store.clone(), merchant_id.to_owned());
    async move {
        let mut claim = store.claim_write_nonce(&m, &nonce, now()).expect("not in flight");
        if let Some(key) = &key {
            claim = claim.confirming_key(key);
        }
        store.create_order_spending(&dynamic_order(&m, &out_trade_no, "1.00"), claim).await
    }
}

/// The store without group commit, then through SQLite's lane or PostgreSQL's order
/// batches; each with another process's store on the same database.
async fn plain_then_grouped(store: &Store, db: &TestDb) -> [(&'static str, Store, Store); 2] {
    [
        ("plain", store.clone(), db.store().await),
        ("group", store.clone().with_group_commit(16), db.store().await.with_group_commit(16)),
    ]
}

engine_tests!(a_new_orders_nonce_commits_with_it_or_nothing_does, async move |store: Store, db: &TestDb| {
    use paykit_store::nonces::NonceUse::Write;
    use paykit_store::orders::Created;
    let (merchant, _) = store.create_merchant("Nonce Shop", None, now()).await.unwrap();
    let m = merchant.id.as_str();
    let create =
        |store: &Store, nonce: String, out_trade_no: String| create_signed(store, m, nonce, out_trade_no, None);
    for (label, store, other_process) in plain_then_grouped(&store, db).await {
        let nonce = |n: &str| format!("{label}-nonce-{n}");
        let no = |n: &str| format!("{label}-{n}");
        let created = create(&store, nonce("first"), no("A")).await.unwrap();
        assert!(matches!(created, Created::New(_)), "{label}: {created:?}");
        assert!(!other_process.spend_nonce(m, &nonce("first"), now(), Write).await.unwrap(), "{label}: stored with it");

        // Replayed in another process, which has not seen it in flight: nothing is written.
        let replay = create(&other_process, nonce("first"), no("B")).await;
        assert!(matches!(replay, Err(StoreError::NonceReplayed)), "{label}: {replay:?}");
        assert_eq!(store.order_by_out_trade_no(m, &no("B")).await.unwrap(), None, "{label}");

        // A request whose commit went through but whose answer was lost with the connection
        // goes again on its own: it finds its nonce stored and its own order under its id.
        if label == "plain" {
            let order = dynamic_order(m, &no("lost"), "1.00");
            let claim = store.claim_write_nonce(m, &nonce("lost"), now()).unwrap();
            store.create_order_spending(&order, claim).await.unwrap();
            let claim = other_process.claim_write_nonce(m, &nonce("lost"), now()).unwrap();
            let again = other_process.create_order_spending(&order, claim).await;
            assert!(matches!(&again, Ok(Created::New(o)) if o.id == order.id), "{again:?}");
        }

        // An out_trade_no already taken: the order that has it, and the nonce is spent.
        let again = create(&store, nonce("second"), no("A")).await.unwrap();
        assert!(matches!(again, Created::Existing(_)), "{label}: {again:?}");
        assert!(!other_process.spend_nonce(m, &nonce("second"), now(), Write).await.unwrap(), "{label}: spent");

        // At once (in one batch on SQLite, whose lane a test can hold; in whatever batches
        // form on PostgreSQL): replays, new orders and taken out_trade_nos, each with its
        // own answer.
        for i in 0..4 {
            assert!(store.spend_nonce(m, &nonce(&format!("old{i}")), now(), Write).await.unwrap());
        }
        let held = store.pause_group_commit().await;
        let racers: Vec<_> = (0..12)
            .map(|i| {
                let (nonce, out_trade_no) = match i % 3 {
                    0 => (nonce(&format!("old{}", i / 3)), no(&format!("replayed{i}"))),
                    1 => (nonce(&format!("new{i}")), no(&format!("new{i}"))),
                    _ => (nonce(&format!("taken{i}")), no("A")),
                };
                tokio::spawn(create(&store, nonce, out_trade_no))
            })
            .collect();
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        drop(held);
        for (i, racer) in racers.into_iter().enumerate() {
            let outcome = racer.await.unwrap();
            match i % 3 {
                0 => assert!(matches!(outcome, Err(StoreError::NonceReplayed)), "{label} {i}: {outcome:?}"),
                1 => assert!(matches!(outcome, Ok(Created::New(_))), "{label} {i}: {outcome:?}"),
                _ => assert!(matches!(outcome, Ok(Created::Existing(_))), "{label} {i}: {outcome:?}"),
            }
            if i % 3 != 0 {
                let spent = nonce(&format!("{}{i}", if i % 3 == 1 { "new" } else { "taken" }));
                assert!(!other_process.spend_nonce(m, &spent, now(), Write).await.unwrap(), "{label} {i}: spent");
            }
        }
        for i in 0..4 {
            let replayed = store.order_by_out_trade_no(m, &no(&format!("replayed{}", i * 3))).await.unwrap();
            assert_eq!(replayed, None, "{label}: a replay writes nothing");
        }
    }
});

engine_tests!(
    a_new_order_checked_with_a_remembered_key_commits_only_while_the_key_is_active,
    async move |store: Store, db: &TestDb| {
        use paykit_store::nonces::NonceUse::Write;
        use paykit_store::orders::Created;
        let (merchant, first) = store.create_merchant("Key Shop", None, now()).await.unwrap();
        let m = merchant.id.as_str();
        let second = store.rotate_merchant_key(m, now()).await.unwrap().unwrap();
        // Read active once, so remembered: the secret from memory, the status still to read.
        assert!(store.known_signing_key("merchant", m, &first.key_id).is_none(), "not read yet");
        for key in [&first, &second] {
            let read = store.active_signing_key("merchant", m, &key.key_id).await.unwrap().unwrap();
            let known = store.known_signing_key("merchant", m, &key.key_id).expect("remembered");
            assert_eq!((known.key_id, known.secret), (read.key_id, read.secret));
        }
        assert!(store.revoke_key(m, &second.key_id, now()).await.unwrap());
        assert!(store.known_signing_key("merchant", m, &second.key_id).is_some(), "a secret never changes");
        let create = |store: &Store, key_id: String, nonce: String, out_trade_no: String| {
            create_signed(store, m, nonce, out_trade_no, Some(key_id))
        };
        for (label, store, other_process) in plain_then_grouped(&store, db).await {
            let nonce = |n: &str| format!("{label}-nonce-{n}");
            let no = |n: &str| format!("{label}-{n}");
            let created = create(&store, first.key_id.clone(), nonce("active"), no("A")).await;
            assert!(matches!(created, Ok(Created::New(_))), "{label}: {created:?}");
            let refused = create(&store, second.key_id.clone(), nonce("revoked"), no("B")).await;
            assert!(matches!(refused, Err(StoreError::KeyRevoked)), "{label}: {refused:?}");
            assert_eq!(store.order_by_out_trade_no(m, &no("B")).await.unwrap(), None, "{label}: nothing written");
            assert!(
                other_process.spend_nonce(m, &nonce("revoked"), now(), Write).await.unwrap(),
                "{label}: nonce unspent"
            );
            // A taken out_trade_no says nothing about its order to a revoked key either.
            let refused = create(&store, second.key_id.clone(), nonce("revoked-taken"), no("A")).await;
            assert!(matches!(refused, Err(StoreError::KeyRevoked)), "{label}: {refused:?}");

            // At once (one batch on SQLite, whatever batches form on PostgreSQL): each its own.
            let held = store.pause_group_commit().await;
            let racers: Vec<_> = (0..8)
                .map(|i| {
                    let key = if i % 2 == 0 { &first } else { &second };
                    tokio::spawn(create(
                        &store,
                        key.key_id.clone(),
                        nonce(&format!("at-once{i}")),
                        no(&format!("at-once{i}")),
                    ))
                })
                .collect();
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            drop(held);
            for (i, racer) in racers.into_iter().enumerate() {
                let outcome = racer.await.unwrap();
                let written = store.order_by_out_trade_no(m, &no(&format!("at-once{i}"))).await.unwrap();
                if i % 2 == 0 {
                    assert!(matches!(outcome, Ok(Created::New(_))), "{label} {i}: {outcome:?}");
                    assert!(written.is_some(), "{label} {i}");
                } else {
                    assert!(matches!(outcome, Err(StoreError::KeyRevoked)), "{label} {i}: {outcome:?}");
                    assert!(written.is_none(), "{label} {i}");
                }
            }
        }
    }
);

engine_tests!(
    a_new_order_given_up_midway_keeps_its_nonce_in_flight_until_it_commits,
    async move |store: Store, db: &TestDb| {
        if db.engine != Engine::Sqlite {
            return; // only SQLite's lane, which settles new orders, can be held from a test
        }
        let (merchant, _) = store.create_merchant("Impatient Shop", None, now()).await.unwrap();
        let m = merchant.id.as_str();
        let grouped = store.clone().with_group_commit(16);
        let held = grouped.pause_group_commit().await.unwrap();
        let claim = grouped.claim_write_nonce(m, "givenupgivenup00", now()).unwrap();
        let order = dynamic_order(m, "GIVEN-UP", "1.00");
        // The request goes away while its order waits for the lane: the order still commits,
        // and until it has, a replay in this process is refused as in flight.
        let gone =
            tokio::time::timeout(std::time::Duration::from_millis(20), grouped.create_order_spending(&order, claim));
        assert!(gone.await.is_err(), "the lane is held");
        assert!(grouped.claim_write_nonce(m, "givenupgivenup00", now()).is_none(), "in flight until its commit");
        drop(held);
        for _ in 0..200 {
            if grouped.order(&order.id).await.unwrap().is_some() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(grouped.order(&order.id).await.unwrap().is_some(), "committed without anyone waiting");
        // Out of flight once committed: the task lets go of the claim just after the commit.
        let mut claim = None;
        for _ in 0..200 {
            claim = grouped.claim_write_nonce(m, "givenupgivenup00", now());
            if claim.is_some() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let claim = claim.expect("out of flight once committed");
        let replay = grouped.create_order_spending(&dynamic_order(m, "REPLAY", "1.00"), claim).await;
        assert!(matches!(replay, Err(StoreError::NonceReplayed)), "{replay:?}");
    }
);
