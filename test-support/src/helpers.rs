//! Small helpers the test suites share: the per-backend test macro, a one-value query, a free
//! port, a user to create, and a configuration that answers refusals quickly.

use std::time::Duration;

use sea_orm::{ConnectionTrait, Statement};

use service::config::DatabaseConfig;
use service::user::NewUser;

pub use super::cluster::free_port;

/// Generates `<name>::postgres` and `<name>::sqlite` tests from an `async fn <name>(TestBackend)`,
/// each under `#[tokio::test]`, or under the test attribute given first:
///
/// ```ignore
/// test_support::on_both_backends!(creates_a_user, lists_users);
/// test_support::on_both_backends!(#[tokio::test(flavor = "multi_thread", worker_threads = 2)] serves);
/// ```
#[macro_export]
macro_rules! on_both_backends {
    (#[$test:meta] $($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[$test]
                async fn postgres() {
                    super::$name($crate::TestBackend::Postgres).await;
                }

                #[$test]
                async fn sqlite() {
                    super::$name($crate::TestBackend::Sqlite).await;
                }
            }
        )*
    };
    ($($name:ident),* $(,)?) => {
        $crate::on_both_backends!(#[::tokio::test] $($name),*);
    };
}

/// The single integer `sql` returns (a count, a setting), on `conn`'s backend.
///
/// # Panics
///
/// When the query fails or returns no integer.
pub async fn scalar(conn: &impl ConnectionTrait, sql: &str) -> i64 {
    conn.query_one_raw(Statement::from_string(conn.get_database_backend(), sql))
        .await
        .unwrap_or_else(|err| panic!("{sql}: {err}"))
        .unwrap_or_else(|| panic!("{sql}: no row"))
        .try_get_by_index(0)
        .unwrap_or_else(|err| panic!("{sql}: {err}"))
}

/// A user to create, with this email and name.
#[must_use]
pub fn new_user(email: &str, name: &str) -> NewUser {
    NewUser {
        email: email.to_owned(),
        name: name.to_owned(),
    }
}

/// `config` with short timeouts (4 connections, 500 ms to acquire, 1 s to connect), so that a
/// refusing server is answered quickly.
#[must_use]
pub fn with_quick_timeouts(config: &DatabaseConfig) -> DatabaseConfig {
    let mut config = config.clone();
    config.max_connections = 4;
    config.acquire_timeout = Duration::from_millis(500);
    config.connect_timeout = Duration::from_secs(1);
    config
}
