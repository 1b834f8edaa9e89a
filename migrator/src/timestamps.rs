//! `created_at` / `updated_at` for any table, in one call.
//!
//! The project's rule is that every table carries both columns and that `updated_at` moves on
//! every `UPDATE`, whoever runs it (the ORM, raw SQL, another client). The ORM alone cannot
//! promise that, so the database does it with a trigger:
//!
//! * PostgreSQL: one shared trigger function, `set_updated_at()`, and a `BEFORE UPDATE` trigger
//!   per table that sets `NEW.updated_at := statement_timestamp()` (the statement's start, so a
//!   row updated later in the same transaction as its insert still moves forward).
//! * SQLite: an `AFTER UPDATE` trigger per table that writes the current time into the row
//!   (SQLite's `recursive_triggers` is off by default, so the trigger's own `UPDATE` does not
//!   fire it again).
//!
//! On SQLite both the column default and the trigger write one text format,
//! `YYYY-MM-DDTHH:MM:SS.SSS+00:00` (RFC 3339, millisecond resolution), so values compare and
//! sort correctly as text and decode as `DateTime<FixedOffset>`. (`CURRENT_TIMESTAMP` would
//! give a different format with second resolution.)

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

/// The SQLite expression that both the column default and the trigger use.
const SQLITE_NOW: &str = "strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')";

/// The shared PostgreSQL trigger function. `CREATE OR REPLACE` because `migrate fresh` drops
/// tables and types but not functions.
const PG_CREATE_FUNCTION: &str = r#"CREATE OR REPLACE FUNCTION set_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := statement_timestamp();
    RETURN NEW;
END
$$"#;

/// Drops the shared function once no trigger uses it any more (the last table's `down`).
const PG_DROP_FUNCTION_IF_UNUSED: &str = r#"DO $$
BEGIN
    IF to_regproc('set_updated_at') IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgfoid = to_regproc('set_updated_at')) THEN
        DROP FUNCTION set_updated_at();
    END IF;
END
$$"#;

#[derive(DeriveIden)]
enum Timestamps {
    CreatedAt,
    UpdatedAt,
}

/// Creates `table` with `created_at` and `updated_at` added (timestamp with time zone, not null,
/// default now) and installs the trigger that keeps `updated_at` current.
///
/// # Errors
///
/// Any error from creating the table or the trigger; inside the migration's transaction
/// nothing is left behind.
pub async fn create_table(
    manager: &SchemaManager<'_>,
    mut table: TableCreateStatement,
) -> Result<(), DbErr> {
    let name = table
        .get_table_name()
        .and_then(table_ref_name)
        .ok_or_else(|| {
            DbErr::Migration(
                "timestamps::create_table needs a statement with a plain table name".into(),
            )
        })?;
    let backend = manager.get_database_backend();
    table
        .col(timestamp_column(Timestamps::CreatedAt, backend))
        .col(timestamp_column(Timestamps::UpdatedAt, backend));
    manager.create_table(table).await?;
    create_trigger(manager, &name).await
}

/// Drops `table` and its `updated_at` trigger (and, on PostgreSQL, the shared trigger function
/// when no other table uses it).
///
/// # Errors
///
/// Any error from dropping the trigger, the table or the function.
pub async fn drop_table(manager: &SchemaManager<'_>, table: impl IntoIden) -> Result<(), DbErr> {
    let table = table.into_iden();
    let name = table.to_string();
    drop_trigger(manager, &name).await?;
    manager
        .drop_table(Table::drop().table(table).to_owned())
        .await?;
    if manager.get_database_backend() == DbBackend::Postgres {
        execute(manager, PG_DROP_FUNCTION_IF_UNUSED.to_owned()).await?;
    }
    Ok(())
}

/// "Now" as the database writes it into `created_at`/`updated_at`: `CURRENT_TIMESTAMP` on
/// PostgreSQL, the RFC 3339 millisecond text on SQLite. Code that sets `updated_at` itself
/// (the repositories do, so `RETURNING` shows the new value on SQLite, whose trigger runs after
/// the statement) uses this, so every writer produces the same format.
#[must_use]
pub fn now(backend: DbBackend) -> Expr {
    match backend {
        DbBackend::Sqlite => Expr::cust(SQLITE_NOW),
        _ => Expr::current_timestamp(),
    }
}

fn timestamp_column(column: Timestamps, backend: DbBackend) -> ColumnDef {
    ColumnDef::new(column)
        .timestamp_with_time_zone()
        .not_null()
        .default(now(backend))
        .to_owned()
}

async fn create_trigger(manager: &SchemaManager<'_>, table: &str) -> Result<(), DbErr> {
    let backend = manager.get_database_backend();
    let trigger = quote(&trigger_name(table));
    let quoted_table = quote(table);
    match backend {
        DbBackend::Postgres => {
            execute(manager, PG_CREATE_FUNCTION.to_owned()).await?;
            execute(
                manager,
                format!(
                    "CREATE TRIGGER {trigger} BEFORE UPDATE ON {quoted_table} \
                     FOR EACH ROW EXECUTE FUNCTION set_updated_at()"
                ),
            )
            .await
        }
        DbBackend::Sqlite => {
            execute(
                manager,
                format!(
                    "CREATE TRIGGER {trigger} AFTER UPDATE ON {quoted_table} FOR EACH ROW BEGIN \
                     UPDATE {quoted_table} SET \"updated_at\" = {SQLITE_NOW} \
                     WHERE rowid = NEW.rowid; END"
                ),
            )
            .await
        }
        other => Err(DbErr::BackendNotSupported {
            db: other.as_str(),
            ctx: "timestamps::create_trigger",
        }),
    }
}

async fn drop_trigger(manager: &SchemaManager<'_>, table: &str) -> Result<(), DbErr> {
    let trigger = quote(&trigger_name(table));
    let sql = match manager.get_database_backend() {
        DbBackend::Postgres => format!("DROP TRIGGER IF EXISTS {trigger} ON {}", quote(table)),
        _ => format!("DROP TRIGGER IF EXISTS {trigger}"),
    };
    execute(manager, sql).await
}

fn trigger_name(table: &str) -> String {
    format!("{table}_set_updated_at")
}

/// Quotes an identifier the way SeaQuery does for PostgreSQL and SQLite (both use `"`), so a
/// table named `user` (reserved on PostgreSQL) works in the raw trigger DDL too.
fn quote(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}

fn table_ref_name(table: &TableRef) -> Option<String> {
    match table {
        TableRef::Table(TableName(_, name), _) => Some(name.to_string()),
        _ => None,
    }
}

/// Through the statement path (not `execute_unprepared`), so offline mode (`up --sql`) sees it.
async fn execute(manager: &SchemaManager<'_>, sql: String) -> Result<(), DbErr> {
    crate::alter::execute(manager, sql).await
}
