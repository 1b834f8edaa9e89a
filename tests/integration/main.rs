//! Integration tests of the data layer, against real databases: every test that touches a
//! database runs on PostgreSQL and on SQLite (`<test>::postgres`, `<test>::sqlite`).
//!
//! PostgreSQL comes from `TEST_DATABASE_URL`, a local server on port 5432, or a private
//! cluster started for the run (see the `test-support` crate); a test never skips.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod autogenerate;
mod autogenerate_matrix;
mod bulk;
mod configuration;
mod failover;
mod failures;
mod health;
mod held_connections;
mod least_privilege;
mod migrations;
mod migrator_cli;
mod online_migrations;
mod poolers;
mod readme_service;
mod refusals;
mod replicas;
mod service;
mod session_guards;
mod shared_target;
mod sql;
mod test_support;
mod tls;
mod two_services;
mod user_repository;

pub(crate) use ::test_support::on_both_backends;
