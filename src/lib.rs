//! The data layer in one import: the SeaORM [`entity`] crate, the [`migration`] crate (the
//! migrations) and the [`migrator`] that runs them, the [`connection`] layer, and the
//! [`service`] crate (configuration, pooled connection with health reports, repositories).

pub use connection;
pub use entity;
pub use migration;
pub use migrator;
pub use service;

// The README's and the guides' Rust examples are compiled (and, unless marked `no_run`, run)
// as doctests of this crate, so the documentation cannot drift from the code.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct Readme;

#[cfg(doctest)]
#[doc = include_str!("../docs/service.md")]
struct ServiceGuide;

#[cfg(doctest)]
#[doc = include_str!("../docs/production.md")]
struct ProductionGuide;

#[cfg(doctest)]
#[doc = include_str!("../docs/testing.md")]
struct TestingGuide;

#[cfg(doctest)]
#[doc = include_str!("../docs/migrations.md")]
struct MigrationsGuide;

#[cfg(doctest)]
#[doc = include_str!("../docs/observability.md")]
struct ObservabilityGuide;
