//! The migration toolkit: everything that runs, checks and writes the migrations of the
//! `migration` crate, which holds only the migrations themselves (as `sea-orm-migration` is to
//! a SeaORM project's `migration` crate).
//!
//! * [`runner`]: applies and rolls back under the migration lock, one implementation per
//!   backend ([`runner::Backend`]);
//! * [`options`]: the settings of a run (lock waits, batches), parsed once;
//! * [`status`] and [`checksum`]: what is applied, pending, unknown or edited since;
//! * helpers for migrations: [`timestamps`], [`alter`], [`batch`], [`online`], [`enums`];
//! * [`schema_dump`]: the catalog snapshot of the drift check;
//! * with the `cli` feature: the command line ([`cli`]), offline SQL (`offline`) and the
//!   comparison with the entities (`autogen`).
//!
//! A project declares its migrations with [`migrations!`].

pub mod alter;
#[cfg(feature = "cli")]
pub mod autogen;
pub mod batch;
pub mod checksum;
#[cfg(feature = "cli")]
pub mod cli;
pub mod enums;
#[cfg(feature = "cli")]
pub mod offline;
pub mod online;
pub mod options;
pub mod runner;
pub mod schema_dump;
pub mod status;
pub mod timestamps;

pub use checksum::{MigrationSources, Superseded};
pub use options::MigratorOptions;
pub use schema_dump::schema_dump;
pub use status::{AppliedMigration, MigrationStatus, status};

#[doc(hidden)]
pub use sea_orm_migration as __sea_orm_migration;

/// Declares a crate's migrations: one `mod` line each, oldest first. Expands to the modules,
/// the `Migrator` (SeaORM's [`MigratorTrait`](sea_orm_migration::MigratorTrait)), its sources
/// for the checksums ([`MigrationSources`]), and `SOURCE_FINGERPRINT`, which changes whenever
/// a migration's source does (test support names migrated template databases with it).
///
/// `sea-orm-cli migrate generate NAME` adds its `mod` line after the last one, inside the
/// macro, as `cargo migrate generate NAME` does.
///
/// ```ignore
/// migrator::migrations! {
///     superseded: SUPERSEDED,
///     mod m20261127_000001_create_user_table;
/// }
/// ```
#[macro_export]
macro_rules! migrations {
    ($(superseded: $superseded:expr,)? $(mod $name:ident;)*) => {
        $(mod $name;)*

        /// Every migration of the project, oldest first.
        #[derive(Debug, Clone, Copy, Default)]
        pub struct Migrator;

        impl $crate::__sea_orm_migration::MigratorTrait for Migrator {
            fn migrations() -> ::std::vec::Vec<
                ::std::boxed::Box<dyn $crate::__sea_orm_migration::MigrationTrait>,
            > {
                ::std::vec![$(::std::boxed::Box::new($name::Migration)),*]
            }
        }

        impl $crate::MigrationSources for Migrator {
            fn sources() -> ::std::vec::Vec<(&'static str, &'static str)> {
                ::std::vec![$((
                    ::std::stringify!($name),
                    ::std::include_str!(::std::concat!(
                        ::std::env!("CARGO_MANIFEST_DIR"),
                        "/src/",
                        ::std::stringify!($name),
                        ".rs"
                    )),
                )),*]
            }

            $(fn superseded() -> &'static [$crate::Superseded] {
                $superseded
            })?
        }

        /// Changes whenever the source of a migration (or the list) changes.
        pub const SOURCE_FINGERPRINT: $crate::checksum::Fingerprint =
            $crate::checksum::Fingerprint(&[
                ::std::include_str!(::std::concat!(::std::env!("CARGO_MANIFEST_DIR"), "/src/lib.rs")),
                $(::std::include_str!(::std::concat!(
                    ::std::env!("CARGO_MANIFEST_DIR"),
                    "/src/",
                    ::std::stringify!($name),
                    ".rs"
                ))),*
            ]);
    };
}
