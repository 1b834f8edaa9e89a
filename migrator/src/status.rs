//! What is applied, what is pending, and what the database has that the code does not, read
//! without creating or writing anything (so it works for a read-only role).

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{DbBackend, FromQueryResult, Statement};
use sea_orm_migration::seaql_migrations;
use serde::{Serialize, Serializer};

/// A migration recorded in the database's migrations table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AppliedMigration {
    /// The migration's name, e.g. `m20261127_000001_create_user_table`.
    pub version: String,
    /// When it was applied, in seconds since the Unix epoch (as SeaORM records it); in JSON,
    /// RFC 3339 in UTC.
    #[serde(serialize_with = "rfc3339")]
    pub applied_at: i64,
}

/// The migrations of the code compared with the ones recorded in the database.
///
/// In JSON (`status --json`), through [`StatusDocument`]: `{"up_to_date", "applied":
/// [{"version", "applied_at"}], "pending": [{"version"}], "unknown": […], "changed":
/// [{"version"}]}`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct MigrationStatus {
    /// Known to the code and recorded in the database, oldest first.
    pub applied: Vec<AppliedMigration>,
    /// Known to the code, not yet applied, in the order `up` will apply them.
    #[serde(serialize_with = "versions")]
    pub pending: Vec<String>,
    /// Recorded in the database but absent from the code: applied by a newer (or different)
    /// build. `up` and `down` refuse to run until this is resolved.
    pub unknown: Vec<AppliedMigration>,
    /// Applied, and edited since: the checksum recorded when it was applied differs from this
    /// build's source (see [`crate::checksum`]). `up` refuses to run until this is resolved.
    #[serde(serialize_with = "versions")]
    pub changed: Vec<String>,
}

/// The status as `status --json` prints it: whether it is up to date, then the lists.
#[derive(Debug, Serialize)]
pub struct StatusDocument<'a> {
    /// [`MigrationStatus::is_up_to_date`].
    pub up_to_date: bool,
    /// The lists.
    #[serde(flatten)]
    pub status: &'a MigrationStatus,
}

impl<'a> From<&'a MigrationStatus> for StatusDocument<'a> {
    fn from(status: &'a MigrationStatus) -> Self {
        Self {
            up_to_date: status.is_up_to_date(),
            status,
        }
    }
}

fn rfc3339<S: Serializer>(secs: &i64, serializer: S) -> Result<S::Ok, S::Error> {
    chrono::DateTime::from_timestamp(*secs, 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .serialize(serializer)
}

fn versions<S: Serializer>(names: &[String], serializer: S) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct Version<'a> {
        version: &'a str,
    }
    serializer.collect_seq(names.iter().map(|version| Version { version }))
}

impl MigrationStatus {
    /// True when nothing is pending and nothing unknown is recorded.
    #[must_use]
    pub fn is_up_to_date(&self) -> bool {
        self.pending.is_empty() && self.unknown.is_empty()
    }
}

/// Compares the migrations of `M` with the database's migrations table. Never creates the
/// table: a database without it has everything pending.
///
/// # Errors
///
/// Any database error while reading the catalog or the migrations table.
pub async fn status<M, C>(db: &C) -> Result<MigrationStatus, DbErr>
where
    M: crate::MigrationSources,
    C: ConnectionTrait,
{
    let table = M::migration_table_name();
    let recorded = if has_table(db, &table.to_string()).await? {
        let select = Query::select()
            .columns([
                seaql_migrations::Column::Version,
                seaql_migrations::Column::AppliedAt,
            ])
            .from(table)
            .order_by(seaql_migrations::Column::Version, Order::Asc)
            .to_owned();
        db.query_all(&select)
            .await?
            .iter()
            .map(|row| seaql_migrations::Model::from_query_result(row, ""))
            .collect::<Result<Vec<_>, _>>()?
    } else {
        Vec::new()
    };
    let mut status = compare(
        M::migrations().iter().map(|m| m.name().to_owned()),
        recorded,
    );
    let checksums = crate::checksum::recorded(db).await?;
    status.changed = crate::checksum::Checksums::of::<M>().changed(
        status.applied.iter().map(|a| a.version.as_str()),
        &checksums,
    );
    Ok(status)
}

fn compare(
    known: impl Iterator<Item = String>,
    recorded: Vec<seaql_migrations::Model>,
) -> MigrationStatus {
    let known: Vec<String> = known.collect();
    let mut status = MigrationStatus::default();
    for model in &recorded {
        let applied = AppliedMigration {
            version: model.version.clone(),
            applied_at: model.applied_at,
        };
        if known.contains(&model.version) {
            status.applied.push(applied);
        } else {
            status.unknown.push(applied);
        }
    }
    status.pending = known
        .into_iter()
        .filter(|name| !recorded.iter().any(|m| &m.version == name))
        .collect();
    status
}

/// Whether `table` exists in the current schema, asked of the catalog (read-only).
async fn has_table<C: ConnectionTrait>(db: &C, table: &str) -> Result<bool, DbErr> {
    let backend = db.get_database_backend();
    let sql = match backend {
        DbBackend::Postgres => {
            "SELECT 1 FROM pg_catalog.pg_tables WHERE schemaname = current_schema() AND tablename = $1"
        }
        DbBackend::Sqlite => "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
        other => {
            return Err(DbErr::BackendNotSupported {
                db: other.as_str(),
                ctx: "migration status",
            });
        }
    };
    let found = db
        .query_one_raw(Statement::from_sql_and_values(backend, sql, [table.into()]))
        .await?;
    Ok(found.is_some())
}
