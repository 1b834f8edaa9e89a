//! Checksums of applied migrations (as sqlx and Flyway's `validate` keep them): when a
//! migration is applied, the checksum of its source file is recorded, so a migration edited
//! after it ran somewhere is noticed (`status` names it, `up` refuses until told
//! `--allow-changed`).
//!
//! They live in a table of their own, `seaql_migrations_checksum (version, checksum)`, so
//! `seaql_migrations`, which `sea-orm-cli` reads, keeps SeaORM's layout. A database migrated
//! before checksums existed has no rows: nothing counts as changed, and the next `up` records
//! the current sources as the baseline of what is applied. The checksum is computed from each
//! migration's source text, which [`crate::migrations!`] embeds (line endings normalised); a
//! migrator without sources has none and is never reported.

use std::collections::BTreeMap;

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{DbBackend, Statement};

/// The table the checksums are recorded in.
pub const TABLE: &str = "seaql_migrations_checksum";

/// An earlier source of a migration, replaced by an equivalent body (same schema, same data):
/// a database that recorded it is not reported as changed, and its next `up` records the
/// current checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Superseded {
    /// The migration.
    pub version: &'static str,
    /// The checksum of its earlier source.
    pub checksum: &'static str,
    /// What changed, and why it is equivalent.
    pub reason: &'static str,
}

/// The migrations of a migrator with their sources: what [`crate::migrations!`] declares.
/// A migrator without sources (one written by hand, as in tests) has no checksums: nothing of
/// it is ever reported as changed.
pub trait MigrationSources: sea_orm_migration::MigratorTrait {
    /// Each migration's name and source text, oldest first.
    fn sources() -> Vec<(&'static str, &'static str)> {
        Vec::new()
    }

    /// Earlier sources of migrations that are accepted as the current one.
    fn superseded() -> &'static [Superseded] {
        &[]
    }
}

/// The checksum of a migration's source: FNV-1a (64 bit) of the text with line endings
/// normalised (a checkout that turns `\n` into `\r\n` is not an edit), twice with different
/// offsets for 128 bits, as hex. Stable across Rust versions, unlike `DefaultHasher`.
#[must_use]
pub fn checksum(source: &str) -> String {
    let normalised = || source.bytes().filter(|b| *b != b'\r');
    format!(
        "{:016x}{:016x}",
        fnv1a(0xcbf2_9ce4_8422_2325, normalised()),
        fnv1a(0x6c62_272e_07bb_0142, normalised())
    )
}

fn fnv1a(offset: u64, bytes: impl Iterator<Item = u8>) -> u64 {
    bytes.fold(offset, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The sources of a crate's migrations, shown as one 64-bit FNV-1a hash in hex: it changes
/// whenever any of them does.
#[derive(Debug, Clone, Copy)]
pub struct Fingerprint(pub &'static [&'static str]);

impl std::fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hash = self.0.iter().fold(0xcbf2_9ce4_8422_2325, |hash, source| {
            fnv1a(hash, source.bytes().filter(|b| *b != b'\r').chain([0]))
        });
        write!(f, "{hash:016x}")
    }
}

/// This build's checksums of a migrator's migrations, and the superseded ones it accepts.
#[derive(Debug, Clone, Default)]
pub struct Checksums {
    current: BTreeMap<String, String>,
    superseded: &'static [Superseded],
}

impl Checksums {
    /// The checksums of `M`'s migrations.
    #[must_use]
    pub fn of<M: MigrationSources>() -> Self {
        Self {
            current: M::sources()
                .into_iter()
                .map(|(name, source)| (name.to_owned(), checksum(source)))
                .collect(),
            superseded: M::superseded(),
        }
    }

    /// The checksum of this build's source of `version`.
    #[must_use]
    pub fn current(&self, version: &str) -> Option<&str> {
        self.current.get(version).map(String::as_str)
    }

    /// Whether `recorded` is this build's checksum of `version`, or an earlier one it
    /// supersedes.
    #[must_use]
    pub fn accepts(&self, version: &str, recorded: &str) -> bool {
        self.current(version)
            .is_none_or(|current| current == recorded)
            || self
                .superseded
                .iter()
                .any(|s| s.version == version && s.checksum == recorded)
    }

    /// The applied `versions` whose recorded checksum differs from this build's source.
    #[must_use]
    pub fn changed<'a>(
        &self,
        versions: impl IntoIterator<Item = &'a str>,
        recorded: &BTreeMap<String, String>,
    ) -> Vec<String> {
        versions
            .into_iter()
            .filter(|v| recorded.get(*v).is_some_and(|r| !self.accepts(v, r)))
            .map(str::to_owned)
            .collect()
    }
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

/// Records this build's checksum of each of `versions` that has none yet (or, with
/// `replace`, replaces it), creating the table if needed.
///
/// # Errors
///
/// Any database error.
pub async fn record<C: ConnectionTrait>(
    db: &C,
    checksums: &Checksums,
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
        let Some(checksum) = checksums.current(version) else {
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
    fn the_checksum_ignores_carriage_returns() {
        assert_eq!(checksum("a\r\nb"), checksum("a\nb"));
        assert_ne!(checksum("a\nb"), checksum("a\nc"));
        assert_eq!(checksum("").len(), 32);
    }

    #[test]
    fn only_a_differing_checksum_is_changed_and_a_superseded_one_is_accepted() {
        let version = "m20261127_000001_create_user_table";
        let checksums = Checksums {
            current: BTreeMap::from([(version.to_owned(), checksum("now"))]),
            superseded: &[Superseded {
                version: "m20261127_000001_create_user_table",
                checksum: "0123",
                reason: "test",
            }],
        };
        let mut recorded = BTreeMap::from([(version.to_owned(), checksum("now"))]);
        assert!(checksums.changed([version], &recorded).is_empty());
        recorded.insert(version.to_owned(), "0123".to_owned());
        assert!(checksums.changed([version], &recorded).is_empty());
        recorded.insert(version.to_owned(), "0".repeat(32));
        assert_eq!(
            checksums.changed([version, "m_other"], &recorded),
            [version]
        );
        assert!(
            checksums
                .changed(["m_unrecorded"], &BTreeMap::new())
                .is_empty()
        );
    }
}
