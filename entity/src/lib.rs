//! The entities: the model of the schema. `cargo migrate check` compares them with the
//! migrations and `cargo migrate autogenerate NAME` writes a migration for the difference.
//!
//! A new entity is one line in the list below (and a line in `prelude.rs`). A module declared
//! outside the list is no entity of the model: `check` and `autogenerate` name any file of
//! `src/` missing from it, and what to add.

pub mod prelude;

/// This crate's sources, as the workspace's `.cargo/config.toml` sets `ENTITY_SOURCE_DIR` (an
/// absolute path per checkout); `None` when built outside the workspace. Reading it here makes
/// the compiler record it, so a build from another checkout that shares the target folder (a
/// global `target-dir`) recompiles this crate instead of reusing that checkout's entities.
pub const SOURCE_DIR: Option<&str> = option_env!("ENTITY_SOURCE_DIR");

use sea_orm::sea_query::{IndexCreateStatement, TableCreateStatement};
use sea_orm::{DbBackend, Schema};

/// Declares the entity modules, [`MODULES`] (their names) and [`tables`] (their statements).
macro_rules! entities {
    ($(pub mod $name:ident;)*) => {
        $(pub mod $name;)*

        /// The name of every entity module, in declaration order.
        pub const MODULES: &[&str] = &[$(stringify!($name)),*];

        /// Every entity's `CREATE TABLE` and `CREATE INDEX` statements for `backend`, as
        /// SeaORM derives them from the entity: the model the migrations are compared with.
        #[must_use]
        pub fn tables(backend: DbBackend) -> Vec<(TableCreateStatement, Vec<IndexCreateStatement>)> {
            let schema = Schema::new(backend);
            vec![$((
                schema.create_table_from_entity($name::Entity),
                schema.create_index_from_entity($name::Entity),
            )),*]
        }
    };
}

entities! {
    pub mod user;
}
