//! The data layer in one import: the SeaORM [`entity`] crate, the [`migration`] crate and the
//! [`service`] crate (configuration, pooled connection with health reports, repositories).

pub use entity;
pub use migration;
pub use service;
