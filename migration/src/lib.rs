//! The project's migrations, oldest first: one file each, declared below.
//!
//! Apply them with `cargo migrate up` (or `sea-orm-cli migrate up`), or from a service with
//! `DatabaseService::apply_migrations`; the runner, its lock and every other tool are in the
//! `migrator` crate. New migrations: `cargo migrate generate NAME` (an empty one) or `cargo
//! migrate autogenerate NAME` (the difference between the entities and the migrations), or
//! `sea-orm-cli migrate generate NAME`: each writes `src/mYYYYMMDD_HHMMSS_NAME.rs` and adds its
//! `mod` line at the end of the list below.

pub use sea_orm_migration::prelude::*;

// The helpers the migrations use, as `crate::timestamps` and `crate::online`.
use migrator::{online, timestamps};

/// The data migrations' work, as functions (benchmarks call them too).
pub mod data {
    pub use crate::m20261127_000002_lowercase_user_emails::lowercase_emails;
}

/// Earlier sources of migrations, replaced by equivalent bodies (same schema, same data): a
/// database that recorded one of these is not reported as changed, and its next `up` records
/// the current checksum.
const SUPERSEDED: &[migrator::Superseded] = &[
    migrator::Superseded {
        version: "m20261127_000002_lowercase_user_emails",
        checksum: "9557d23e46cfe76264a540bd036ddafd",
        reason: "one UPDATE became keyset batches of short transactions: same rows lower-cased",
    },
    migrator::Superseded {
        version: "m20261127_000002_lowercase_user_emails",
        checksum: "df1bdb40b114407307b81aaac5b13c7e",
        reason: "the batched walk moved into this file from a module of its own: same statements",
    },
    migrator::Superseded {
        version: "m20261127_000003_create_user_email_lower_index",
        checksum: "c90077c75d47f6d5ff139668657b27e4",
        reason: "CREATE UNIQUE INDEX became CREATE UNIQUE INDEX CONCURRENTLY: the same index",
    },
    migrator::Superseded {
        version: "m20261127_000003_create_user_email_lower_index",
        checksum: "c9393e9f9b9d86ffc0e34f3d1c003bae",
        reason: "the SQLite statement through the statement path, then built concurrently: the same index",
    },
];

migrator::migrations! {
    superseded: SUPERSEDED,
    mod m20261127_000001_create_user_table;
    mod m20261127_000002_lowercase_user_emails;
    mod m20261127_000003_create_user_email_lower_index;
}
