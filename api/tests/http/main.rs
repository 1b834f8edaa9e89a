//! The API over real HTTP: each test starts the server on a free port against a fresh
//! `TestDatabase` and calls it with an HTTP client. Every test that touches a database runs on
//! PostgreSQL and on SQLite (`<test>::postgres`, `<test>::sqlite`); outage tests run on
//! PostgreSQL behind a `FaultProxy`. A test never skips: without a database it fails.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod binary;
mod chaos;
mod failover;
mod health;
mod least_privilege;
mod outage;
mod poolers;
mod refusals;
mod replicas;
mod secrets;
mod shutdown;
mod support;
mod users;

/// `test_support::on_both_backends!` on a two-thread runtime (the server runs beside the client).
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        ::test_support::on_both_backends!(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)] $($name),*
        );
    };
}
pub(crate) use on_both_backends;
