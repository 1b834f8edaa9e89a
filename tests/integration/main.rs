//! Integration tests of the data layer, against real databases: every test that touches a
//! database runs on PostgreSQL and on SQLite (`<test>::postgres`, `<test>::sqlite`).
//!
//! PostgreSQL comes from `TEST_DATABASE_URL`, a local server on port 5432, or a private
//! cluster started for the run (see `service::testing`); a test never skips.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod bulk;
mod configuration;
mod failures;
mod health;
mod held_connections;
mod migrations;
mod online_migrations;
mod poolers;
mod refusals;
mod replicas;
mod service;
mod sql;
mod test_support;
mod user_repository;

/// Generates `<name>::postgres` and `<name>::sqlite` tests from an
/// `async fn <name>(TestBackend)`.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test]
                async fn postgres() {
                    super::$name(::service::testing::TestBackend::Postgres).await;
                }

                #[tokio::test]
                async fn sqlite() {
                    super::$name(::service::testing::TestBackend::Sqlite).await;
                }
            }
        )*
    };
}
pub(crate) use on_both_backends;
