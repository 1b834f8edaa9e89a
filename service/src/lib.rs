//! The service layer of the data package: what a Rust service imports to talk to its database.
//!
//! * [`DatabaseConfig`] — configuration from the environment (`DATABASE_URL`, `DB_ECHO`, pool
//!   settings) or from code; the password never shows in `Debug`, errors or logs.
//! * [`DatabaseService`] — the pooled connection: `connect` (retrying while the server starts),
//!   [`health`](DatabaseService::health) (a typed, JSON-serialisable [`HealthReport`]),
//!   [`is_ready`](DatabaseService::is_ready), [`close`](DatabaseService::close). Cheap to clone;
//!   put it in your framework's state.
//! * [`Executor`] — what the repositories run on: the service (the primary), a [`Reader`]
//!   (a read replica, falling back to the primary), a [`Transaction`]
//!   ([`DatabaseService::begin`]), or SeaORM's own connection and transaction.
//! * [`user`] — the `user` repository.
//! * [`Error`] — one error type: `NotFound`, `Conflict`, `Validation`, `Unavailable`, …
//! * [`metrics`] — what is recorded for operators (pool usage, query latency and errors,
//!   replica lag, migrations) through the `metrics` facade, for the recorder you install.
//! * `testing` (feature `testing`) — `TestTransaction`, a transaction that is always rolled
//!   back; the rest of the test support (a fresh migrated database per test, clusters, a
//!   pooler, a fault proxy) is the `test-support` crate, which enables this feature.
//!
//! ```no_run
//! # async fn example() -> service::Result<()> {
//! use service::{DatabaseConfig, DatabaseService, user};
//!
//! let db = DatabaseService::connect(&DatabaseConfig::from_env()?).await?;
//! let ada = user::create(
//!     &db,
//!     user::NewUser { email: "Ada@Example.com".into(), name: "Ada".into() },
//! )
//! .await?;
//! assert_eq!(ada.email, "ada@example.com");
//! println!("{:?}", db.health().await.status);
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

pub mod config;
mod connect;
mod database;
pub mod error;
pub mod health;
pub mod metrics;
mod routing;
mod transaction;
pub mod user;

#[cfg(feature = "testing")]
pub mod testing;

pub use config::{ConfigError, DatabaseConfig, DatabaseUrl};
pub use connection::connect::{ConnectError, ConnectFailure};
pub use database::DatabaseService;
pub use error::{Error, Result};
pub use health::{
    HealthReport, HealthStatus, MigrationsReport, NodeRole, PoolReport, ReplicaReport,
};
pub use migrator::MigratorOptions;
pub use routing::{Executor, InvalidWalPosition, Reader, WalPosition};
/// The SeaORM version this crate is built on, for downstream code that writes its own queries
/// against [`DatabaseService::connection`] without a separate (and possibly different)
/// `sea-orm` dependency.
pub use sea_orm;
pub use transaction::Transaction;
