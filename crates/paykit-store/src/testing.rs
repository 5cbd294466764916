//! Fresh databases for tests: a SQLite file in its own folder, or a PostgreSQL schema of
//! its own (from `PAYKIT_TEST_POSTGRES_URL`), so tests run in parallel without sharing rows.

use std::path::PathBuf;

use sqlx::Connection;

use crate::{Engine, Store, StoreConfig, ids};

/// Set in CI: PostgreSQL tests must run, so a missing URL fails instead of skipping.
pub const REQUIRE_POSTGRES_VAR: &str = "PAYKIT_TEST_REQUIRE_POSTGRES";
pub const POSTGRES_URL_VAR: &str = "PAYKIT_TEST_POSTGRES_URL";

/// A database that exists for one test and is removed when dropped.
pub struct TestDb {
    pub engine: Engine,
    /// A URL any paykit process can open (`DATABASE_URL`).
    pub url: String,
    cleanup: Cleanup,
}

enum Cleanup {
    Folder(PathBuf),
    Schema { admin_url: String, schema: String },
}

impl TestDb {
    /// A fresh database on `engine`, or `None` (after saying so loudly) when PostgreSQL is
    /// asked for and not configured.
    pub async fn new(engine: Engine) -> Option<TestDb> {
        match engine {
            Engine::Sqlite => {
                let dir = std::env::temp_dir().join(format!("paykit-test-{}", ids::random_base32(12)));
                std::fs::create_dir_all(&dir).expect("create a temporary folder");
                let url = format!("sqlite://{}", dir.join("paykit.db").display());
                Some(TestDb { engine, url, cleanup: Cleanup::Folder(dir) })
            }
            Engine::Postgres => {
                let Ok(admin_url) = std::env::var(POSTGRES_URL_VAR) else {
                    if std::env::var_os(REQUIRE_POSTGRES_VAR).is_some() {
                        panic!("{REQUIRE_POSTGRES_VAR} is set but {POSTGRES_URL_VAR} is not");
                    }
                    eprintln!(
                        "\n*** SKIPPED on PostgreSQL: set {POSTGRES_URL_VAR} (e.g. postgres://postgres@127.0.0.1:5432/test) to run it ***\n"
                    );
                    return None;
                };
                let schema = format!("t_{}", ids::random_base32(16));
                sqlx::any::install_default_drivers();
                let mut conn =
                    sqlx::AnyConnection::connect(&admin_url).await.expect("connect to PAYKIT_TEST_POSTGRES_URL");
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
                    .execute(&mut conn)
                    .await
                    .expect("create a test schema");
                conn.close().await.ok();
                let sep = if admin_url.contains('?') { '&' } else { '?' };
                let url = format!("{admin_url}{sep}options=-c%20search_path%3D{schema}");
                Some(TestDb { engine, url, cleanup: Cleanup::Schema { admin_url, schema } })
            }
        }
    }

    /// Opens and migrates the database.
    pub async fn store(&self) -> Store {
        let store = Store::connect(&self.url, &StoreConfig::default()).await.expect("open the test database");
        store.migrate().await.expect("migrate the test database");
        store
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        match &self.cleanup {
            Cleanup::Folder(dir) => {
                let _ = std::fs::remove_dir_all(dir);
            }
            Cleanup::Schema { admin_url, schema } => {
                let (admin_url, schema) = (admin_url.clone(), schema.clone());
                // Drop runs inside the test's runtime; a thread with its own runtime can
                // block on the async driver without stalling it.
                let _ = std::thread::spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
                    rt.block_on(async {
                        let mut conn = sqlx::AnyConnection::connect(&admin_url).await.ok()?;
                        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP SCHEMA IF EXISTS {schema} CASCADE")))
                            .execute(&mut conn)
                            .await
                            .ok()?;
                        conn.close().await.ok()
                    })
                })
                .join();
            }
        }
    }
}

/// Runs one async test body on both engines: `engine_tests!(name, |store, db| async move {…})`
/// makes `name::sqlite` and `name::postgres`.
#[macro_export]
macro_rules! engine_tests {
    ($name:ident, $body:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                let db =
                    $crate::testing::TestDb::new($crate::Engine::Sqlite).await.expect("sqlite is always available");
                let store = db.store().await;
                ($body)(store, &db).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                let Some(db) = $crate::testing::TestDb::new($crate::Engine::Postgres).await else {
                    return;
                };
                let store = db.store().await;
                ($body)(store, &db).await;
            }
        }
    };
}
