//! The schema migrations and the migrator.
//!
//! * [`Migrator`] lists every migration in order. Apply them with [`runner::up`] (services:
//!   `DatabaseService::apply_migrations` in the `service` crate), which holds the migration
//!   lock, or from the command line (`main.rs`): `cargo run -p migration -- up` or
//!   `sea-orm-cli migrate up`. (`Migrator::up` itself takes no lock.)
//! * [`timestamps`] gives any new table `created_at`/`updated_at` and the trigger that keeps
//!   `updated_at` current, in one call.
//! * [`alter`] changes an existing table on PostgreSQL and SQLite alike (rebuilding SQLite
//!   tables where SQLite cannot alter in place); generated migrations use it.
//! * [`data`] holds the data migrations' work as plain functions.
//! * `autogen` (with the `cli` feature) compares the entities with the migrations: `cargo
//!   migrate check` and `cargo migrate autogenerate NAME`.
//! * [`status`] reads what is applied without writing anything.
//!
//! Every migration runs in a transaction on SQLite. On PostgreSQL too (`use_transaction`
//! returns `Some(true)`), except the two that keep a big `user` table writable (keyset
//! batches, a concurrent index: see [`batch`] and [`online`]), which are written to be run
//! again after an interruption; every PostgreSQL migration runs with a lock timeout and
//! retries ([`lock_wait`]).
//!
//! New migrations: `sea-orm-cli migrate generate NAME` (or `cargo migrate generate NAME`)
//! writes `src/mYYYYMMDD_HHMMSS_NAME.rs` and adds it to the list below. The generator rewrites
//! that list with a regular expression: keep it the only vector macro in this file, and its
//! `mod` lines together.

pub use sea_orm_migration::prelude::*;

pub mod alter;
#[cfg(feature = "cli")]
pub mod autogen;
pub mod batch;
pub mod checksum;
#[cfg(feature = "cli")]
pub mod cli;
pub mod connect;
pub mod data;
pub mod database_url;
pub mod lock_wait;
#[cfg(feature = "cli")]
pub mod offline;
pub mod online;
pub mod runner;
mod schema_dump;
mod status;
pub mod timestamps;

pub use schema_dump::schema_dump;
pub use status::{AppliedMigration, MigrationStatus, status};

/// Changes whenever a source file of this crate changes (computed by `build.rs`). Test support
/// names its migrated template databases with it, so an edited migration gets a new template.
pub const SOURCE_FINGERPRINT: &str = env!("MIGRATION_SOURCE_FINGERPRINT");

mod m20261127_000001_create_user_table;
mod m20261127_000002_lowercase_user_emails;
mod m20261127_000003_create_user_email_lower_index;

/// Every migration of the project, oldest first.
#[derive(Debug, Clone, Copy, Default)]
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261127_000001_create_user_table::Migration),
            Box::new(m20261127_000002_lowercase_user_emails::Migration),
            Box::new(m20261127_000003_create_user_email_lower_index::Migration),
        ]
    }
}
