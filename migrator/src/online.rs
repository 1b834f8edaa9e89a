//! Schema changes that keep a big table writable (PostgreSQL), for migrations that declare
//! themselves non-transactional (`use_transaction` returns `Some(false)`; SQLite keeps its
//! transaction, see [`crate::runner`]):
//!
//! * [`create_index`] builds an index `CONCURRENTLY`: writes go on while it is built. A build
//!   that failed or was interrupted leaves an `INVALID` index behind; the next run finds it,
//!   drops it and builds it again, and a build that fails drops what it left before returning
//!   the error. An index already built and valid is left as it is, so a run that died after
//!   building it but before recording the migration finishes without building it twice.
//! * [`crate::batch`] walks a table in short transactions for data migrations.
//!
//! Both run under the migration lock and the lock timeout of [`crate::lock_wait`].

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{DbBackend, Statement};

use crate::alter::{execute, quote};

/// Builds `index` without blocking writes (PostgreSQL: `CREATE INDEX CONCURRENTLY`, which
/// cannot run inside a transaction), or with `IF NOT EXISTS` on SQLite. `sqlite` is the
/// statement to use on SQLite instead, for an expression index SeaQuery cannot write there.
///
/// # Errors
///
/// Any database error (a unique index over duplicate values, a lock timeout); on PostgreSQL
/// the invalid index the failed build left is dropped first.
pub async fn create_index(
    manager: &SchemaManager<'_>,
    index: IndexCreateStatement,
    sqlite: Option<&str>,
) -> Result<(), DbErr> {
    let name = index
        .get_index_spec()
        .get_name()
        .ok_or_else(|| DbErr::Migration("online::create_index needs a named index".into()))?
        .to_owned();
    match manager.get_database_backend() {
        DbBackend::Postgres => {
            match index_state(manager, &name).await? {
                Some(true) => {
                    tracing::info!("index {name} is already built and valid");
                    return Ok(());
                }
                Some(false) => {
                    tracing::warn!(
                        "index {name} was left INVALID by a build that failed or was \
                         interrupted: dropping it and building it again"
                    );
                    drop_concurrently(manager, &name).await?;
                }
                None => {}
            }
            let sql = index.to_string(PostgresQueryBuilder);
            let sql = sql.replacen(" INDEX ", " INDEX CONCURRENTLY ", 1);
            if let Err(err) = execute(manager, sql).await {
                if index_state(manager, &name).await.ok().flatten() == Some(false) {
                    let _ = drop_concurrently(manager, &name).await;
                }
                return Err(err);
            }
            Ok(())
        }
        _ => {
            let sql = match sqlite {
                Some(sql) => sql.to_owned(),
                None => index
                    .to_owned()
                    .if_not_exists()
                    .to_string(SqliteQueryBuilder),
            };
            execute(manager, sql).await
        }
    }
}

/// Drops an index without blocking writes (PostgreSQL `DROP INDEX CONCURRENTLY`).
///
/// # Errors
///
/// Any database error.
pub async fn drop_index(manager: &SchemaManager<'_>, name: &str) -> Result<(), DbErr> {
    match manager.get_database_backend() {
        DbBackend::Postgres => drop_concurrently(manager, name).await,
        _ => execute(manager, format!("DROP INDEX IF EXISTS {}", quote(name))).await,
    }
}

async fn drop_concurrently(manager: &SchemaManager<'_>, name: &str) -> Result<(), DbErr> {
    execute(
        manager,
        format!("DROP INDEX CONCURRENTLY IF EXISTS {}", quote(name)),
    )
    .await
}

/// `Some(valid)` for an index of the current schema, `None` when there is none.
async fn index_state(manager: &SchemaManager<'_>, name: &str) -> Result<Option<bool>, DbErr> {
    let row = manager
        .get_connection()
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
             WHERE c.relname = $1 AND c.relnamespace = current_schema()::regnamespace",
            [name.into()],
        ))
        .await?;
    Ok(row.and_then(|r| r.try_get_by_index::<bool>(0).ok()))
}
