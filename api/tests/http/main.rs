//! The API over real HTTP: each test starts the server on a free port against a fresh
//! `TestDatabase` and calls it with an HTTP client. Every test that touches a database runs on
//! PostgreSQL and on SQLite (`<test>::postgres`, `<test>::sqlite`); outage tests run on
//! PostgreSQL behind a `FaultProxy`. A test never skips: without a database it fails.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod binary;
mod chaos;
mod health;
mod outage;
mod poolers;
mod refusals;
mod replicas;
mod shutdown;
mod support;
mod users;

/// Generates `<name>::postgres` and `<name>::sqlite` tests from an
/// `async fn <name>(TestBackend)`.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$name(::service::testing::TestBackend::Postgres).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name(::service::testing::TestBackend::Sqlite).await;
                }
            }
        )*
    };
}
pub(crate) use on_both_backends;
