//! The connection layer shared by the migrator and the service: where the database is
//! ([`database_url`], secrets redacted), opening it and saying why that failed ([`connect`]),
//! and the one classification of database errors ([`classify`]). With the `logging` feature,
//! the binaries' log set-up ([`init_tracing`]).

pub mod classify;
pub mod connect;
pub mod database_url;
pub mod hosts;
#[cfg(feature = "logging")]
mod logging;
pub mod secrets;

pub use classify::{ErrorKind, classify};
pub use connect::{ConnectError, ConnectFailure};
pub use database_url::{UrlSource, redact};
#[cfg(feature = "logging")]
pub use logging::init_tracing;
