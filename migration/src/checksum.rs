//! Checksums of applied migrations (as sqlx and Flyway's `validate` keep them): when a
//! migration is applied, the checksum of its source file is recorded, so a migration edited
//! after it ran somewhere is noticed (`status` names it, `up` refuses until told
//! `--allow-changed`).
//!
//! They live in a table of their own, `seaql_migrations_checksum (version, checksum)`, so
//! `seaql_migrations`, which `sea-orm-cli` reads, keeps SeaORM's layout. A database migrated
//! before checksums existed has no rows: nothing counts as changed, and the next `up` records
//! the current sources as the baseline of what is applied. The checksum is computed at build
//! time (`build.rs`) from `src/<version>.rs` with line endings normalised; a migration of
//! another migrator, with no source here, has none and is never reported.

use std::collections::BTreeMap;

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{DbBackend, Statement};

include!(concat!(env!("OUT_DIR"), "/checksums.rs"));

/// The table the checksums are recorded in.
pub const TABLE: &str = "seaql_migrations_checksum";

/// Earlier sources of a migration, replaced by an equivalent body (same schema, same data):
/// a database that recorded one of these is not reported as changed, and its next `up`
/// records the current checksum. Each entry says what changed.
pub const SUPERSEDED: &[(&str, &str, &str)] = &[
    (
        "m20261127_000002_lowercase_user_emails",
        "9557d23e46cfe76264a540bd036ddafd",
        "one UPDATE became keyset batches of short transactions: same rows lower-cased",
    ),
    (
        "m20261127_000003_create_user_email_lower_index",
        "c90077c75d47f6d5ff139668657b27e4",
        "CREATE UNIQUE INDEX became CREATE UNIQUE INDEX CONCURRENTLY: the same index",
    ),
    (
        "m20261127_000003_create_user_email_lower_index",
        "c9393e9f9b9d86ffc0e34f3d1c003bae",
        "the SQLite statement through the statement path, then built concurrently: the same index",
    ),
];

/// Whether `recorded` is this build's checksum of `version`, or an earlier one it supersedes.
#[must_use]
pub fn accepts(version: &str, recorded: &str) -> bool {
    of(version).is_none_or(|current| current == recorded)
        || SUPERSEDED
            .iter()
            .any(|(v, old, _)| *v == version && *old == recorded)
}

/// The checksum of this build's source of `version`.
#[must_use]
pub fn of(version: &str) -> Option<&'static str> {
    CHECKSUMS
        .iter()
        .find(|(v, _)| *v == version)
        .map(|(_, checksum)| *checksum)
}

/// The recorded checksums, by version (none when the table does not exist). Reads only.
///
/// # Errors
///
/// Any database error.
pub async fn recorded<C: ConnectionTrait>(db: &C) -> Result<BTreeMap<String, String>, DbErr> {
    let backend = db.get_database_backend();
    let exists = match backend {
        DbBackend::Postgres => {
            "SELECT 1 FROM pg_catalog.pg_tables WHERE schemaname = current_schema() AND tablename = $1"
        }
        _ => "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
    };
    if db
        .query_one_raw(Statement::from_sql_and_values(
            backend,
            exists,
            [TABLE.into()],
        ))
        .await?
        .is_none()
    {
        return Ok(BTreeMap::new());
    }
    let rows = db
        .query_all(
            &Query::select()
                .columns([Alias::new("version"), Alias::new("checksum")])
                .from(Alias::new(TABLE))
                .to_owned(),
        )
        .await?;
    rows.iter()
        .map(|row| Ok((row.try_get_by_index(0)?, row.try_get_by_index(1)?)))
        .collect()
}

/// The applied `versions` whose recorded checksum differs from this build's source.
#[must_use]
pub fn changed<'a>(
    versions: impl IntoIterator<Item = &'a str>,
    recorded: &BTreeMap<String, String>,
) -> Vec<String> {
    versions
        .into_iter()
        .filter(|v| recorded.get(*v).is_some_and(|r| !accepts(v, r)))
        .map(str::to_owned)
        .collect()
}

/// Records this build's checksum of each of `versions` that has none yet (or, with
/// `replace`, replaces it), creating the table if needed.
///
/// # Errors
///
/// Any database error.
pub async fn record<C: ConnectionTrait>(
    db: &C,
    versions: &[String],
    replace: bool,
) -> Result<(), DbErr> {
    db.execute(
        &Table::create()
            .table(Alias::new(TABLE))
            .if_not_exists()
            .col(
                ColumnDef::new(Alias::new("version"))
                    .string()
                    .not_null()
                    .primary_key(),
            )
            .col(ColumnDef::new(Alias::new("checksum")).string().not_null())
            .to_owned(),
    )
    .await?;
    for version in versions {
        let Some(checksum) = of(version) else {
            continue;
        };
        let mut on_conflict = OnConflict::column(Alias::new("version"));
        if replace {
            on_conflict.update_column(Alias::new("checksum"));
        } else {
            on_conflict.do_nothing();
        }
        db.execute(
            &Query::insert()
                .into_table(Alias::new(TABLE))
                .columns([Alias::new("version"), Alias::new("checksum")])
                .values_panic([version.as_str().into(), checksum.into()])
                .on_conflict(on_conflict)
                .to_owned(),
        )
        .await?;
    }
    Ok(())
}

/// Forgets the checksums of rolled-back `versions` (nothing when the table does not exist).
///
/// # Errors
///
/// Any database error.
pub async fn forget<C: ConnectionTrait>(db: &C, versions: &[String]) -> Result<(), DbErr> {
    if versions.is_empty() || recorded(db).await?.is_empty() {
        return Ok(());
    }
    db.execute(
        &Query::delete()
            .from_table(Alias::new(TABLE))
            .and_where(Expr::col(Alias::new("version")).is_in(versions.iter().map(String::as_str)))
            .to_owned(),
    )
    .await
    .map(|_| ())
}

/// Drops the checksum table (`reset`).
///
/// # Errors
///
/// Any database error.
pub async fn drop_table<C: ConnectionTrait>(db: &C) -> Result<(), DbErr> {
    db.execute(
        &Table::drop()
            .table(Alias::new(TABLE))
            .if_exists()
            .to_owned(),
    )
    .await
    .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_migration_has_a_checksum_and_only_a_differing_one_is_changed() {
        let version = "m20261127_000001_create_user_table";
        let current = of(version).expect("build.rs records every migration");
        assert_eq!(current.len(), 32);
        let mut recorded = BTreeMap::new();
        recorded.insert(version.to_owned(), current.to_owned());
        assert!(changed([version], &recorded).is_empty());
        recorded.insert(version.to_owned(), "0".repeat(32));
        assert_eq!(changed([version, "m_other"], &recorded), [version]);
        assert!(changed(["m_unrecorded"], &BTreeMap::new()).is_empty());
    }

    #[test]
    fn a_superseded_source_is_not_changed() {
        for (version, old, _) in SUPERSEDED {
            assert_ne!(of(version), Some(*old), "the current source differs");
            let recorded = BTreeMap::from([((*version).to_owned(), (*old).to_owned())]);
            assert!(changed([*version], &recorded).is_empty());
        }
    }
}
