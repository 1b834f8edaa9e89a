//! The entities: the model of the schema. `cargo migrate check` compares them with the
//! migrations and `cargo migrate autogenerate NAME` writes a migration for the difference; a
//! new entity is a module here (and a line in `prelude.rs`), nothing else to register.

pub mod prelude;

pub mod user;
