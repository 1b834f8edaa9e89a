//! The SQLite backend of the runner. SQLite has no advisory locks; each step runs in a
//! `BEGIN IMMEDIATE` transaction that first re-reads what is pending. The immediate
//! transaction takes SQLite's write lock at once, so concurrent migrators take turns migration
//! by migration (waiting up to SQLite's busy timeout, 5 s) and skip what another one already
//! applied; one that waits longer gives up with "database is locked", having changed nothing.
//!
//! The run uses one connection with foreign key enforcement off (SQLite ignores
//! `PRAGMA foreign_keys` inside a transaction, and rebuilding a referenced table with it on
//! would cascade deletes, see [`crate::alter`]); each step instead runs
//! `PRAGMA foreign_key_check` before it commits and fails, changing nothing, if a row would
//! point at a missing parent. A pool of one connection (the migrator's, an in-memory database)
//! is used as it is; a larger pool gets a dedicated connection for the run, since the setting
//! is per connection.

use sea_orm_migration::sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr, RuntimeErr,
    SqliteTransactionMode, SqlxSqliteConnector, Statement, TransactionOptions, TransactionTrait,
    sqlx,
};

use super::{Backend, MigrateError, Session, db_err};
use crate::options::MigratorOptions;

/// A run on SQLite: its connection, whether it is a dedicated one, and whether foreign keys
/// were enforced before the run.
#[derive(Debug)]
pub struct Sqlite {
    session: DatabaseConnection,
    dedicated: bool,
    enforced: bool,
}

impl Backend for Sqlite {
    async fn open(
        db: &DatabaseConnection,
        _options: &MigratorOptions,
    ) -> Result<Self, MigrateError> {
        let pool = db.get_sqlite_connection_pool();
        let dedicated = pool.options().get_max_connections() > 1;
        let session = if dedicated {
            let pool = sqlx::sqlite::SqlitePoolOptions::new()
                .max_connections(1)
                .min_connections(0)
                .idle_timeout(None)
                .max_lifetime(None)
                .acquire_timeout(pool.options().get_acquire_timeout())
                .connect_with((*pool.connect_options()).clone())
                .await
                .map_err(|e| MigrateError::Database {
                    operation: "open a connection for the migrations",
                    source: DbErr::Conn(RuntimeErr::SqlxError(std::sync::Arc::new(e))),
                })?;
            SqlxSqliteConnector::from_sqlx_sqlite_pool(pool)
        } else {
            db.clone()
        };
        let enforced = session
            .query_one_raw(Statement::from_string(
                DbBackend::Sqlite,
                "PRAGMA foreign_keys",
            ))
            .await
            .map_err(db_err("read the foreign key setting"))?
            .and_then(|row| row.try_get_by_index::<i32>(0).ok())
            == Some(1);
        session
            .execute_raw(set(false))
            .await
            .map_err(db_err("turn foreign key enforcement off for the run"))?;
        Ok(Self {
            session,
            dedicated,
            enforced,
        })
    }

    fn connection(&self) -> &DatabaseConnection {
        &self.session
    }

    async fn step<T>(
        &self,
        work: impl AsyncFnOnce(Session<'_>) -> Result<T, MigrateError>,
    ) -> Result<T, MigrateError> {
        let transaction = self
            .session
            .begin_with_options(TransactionOptions {
                sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
                ..Default::default()
            })
            .await
            .map_err(db_err("begin a migration step"))?;
        let outcome = match work(Session::Transaction(&transaction)).await {
            Ok(value) => foreign_key_violations(&transaction).await.map(|()| value),
            Err(err) => Err(err),
        };
        match outcome {
            Ok(value) => {
                transaction
                    .commit()
                    .await
                    .map_err(db_err("commit a migration step"))?;
                Ok(value)
            }
            Err(err) => {
                let _ = transaction.rollback().await;
                Err(err)
            }
        }
    }

    async fn close(self) {
        if self.enforced {
            let _ = self.session.execute_raw(set(true)).await;
        }
        if self.dedicated {
            let _ = self.session.close_by_ref().await;
        }
    }
}

fn set(on: bool) -> Statement {
    Statement::from_string(
        DbBackend::Sqlite,
        format!("PRAGMA foreign_keys = {}", if on { "ON" } else { "OFF" }),
    )
}

/// Fails a SQLite step whose changes left a row pointing at a missing parent.
async fn foreign_key_violations(transaction: &DatabaseTransaction) -> Result<(), MigrateError> {
    let rows = transaction
        .query_all_raw(Statement::from_string(
            DbBackend::Sqlite,
            "SELECT \"table\", rowid, parent FROM pragma_foreign_key_check",
        ))
        .await
        .map_err(db_err("check the foreign keys"))?;
    if rows.is_empty() {
        return Ok(());
    }
    let listed: Vec<String> = rows
        .iter()
        .take(10)
        .map(|row| {
            let table: String = row.try_get_by_index(0).unwrap_or_default();
            let rowid: Option<i64> = row.try_get_by_index(1).unwrap_or_default();
            let parent: String = row.try_get_by_index(2).unwrap_or_default();
            format!("{table} row {} -> {parent}", rowid.unwrap_or_default())
        })
        .collect();
    Err(MigrateError::Database {
        operation: "commit the migration",
        source: DbErr::Migration(format!(
            "{} row(s) would violate foreign keys: {}",
            rows.len(),
            listed.join(", ")
        )),
    })
}
