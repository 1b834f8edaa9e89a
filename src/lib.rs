//! The data layer in one import: the SeaORM [`entity`] crate, the [`migration`] crate (the
//! migrations) and the [`migrator`] that runs them, the [`connection`] layer, and the
//! [`service`] crate (configuration, pooled connection with health reports, repositories).

pub use connection;
pub use entity;
pub use migration;
pub use migrator;
pub use service;
