//! Where and how the repositories' statements run: the one place that knows about pools.
//!
//! A repository states *what* to run (its SQL, rendered once as a [`CachedSql`], and its
//! values) and calls the functions here; they choose *where* and *how*:
//!
//! * given the PostgreSQL pool itself
//!   ([`DatabaseService::connection`](crate::DatabaseService::connection)), a one-row statement
//!   runs on sqlx directly, on a connection checked out here, and only the row goes through
//!   SeaORM ([`FromQueryResult`]); many rows go through `COPY` ([`bulk`]);
//! * given anything else (a transaction, SQLite), it takes SeaORM's generic path.
//!
//! So a second repository is only its own queries and rules.

pub(crate) mod bulk;
mod cached;

use std::any::Any;
use std::sync::Arc;

use sea_orm::sea_query::Values;
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseConnectionType, DbBackend, DbErr, FromQueryResult,
    QueryResult, RuntimeErr, Value, sqlx,
};
use sea_query_sqlx::SqlxValues;

pub(crate) use cached::CachedSql;

/// Runs a statement that returns at most one row (a lookup by key, an `INSERT … RETURNING`)
/// and decodes that row into `M`.
///
/// On the PostgreSQL pool the statement runs on sqlx directly, on a connection this function
/// checks out itself: SeaORM's generic query path, like sqlx's own `&PgPool` executor, moves
/// several kilobytes of future state per call, which is most of the client's work for a
/// one-row statement (`docs/PERFORMANCE.md` has the figures). Statement logging (`DB_ECHO`)
/// still applies; SeaORM's metric callback (unused by this crate) is not called on that path.
///
/// # Errors
///
/// The database's error, or a row that does not decode into `M`.
pub(crate) async fn fetch_optional<M, C>(
    db: &C,
    sql: &'static CachedSql,
    values: Vec<Value>,
) -> Result<Option<M>, DbErr>
where
    M: FromQueryResult,
    C: ConnectionTrait + 'static,
{
    match postgres_pool(db) {
        Some(pool) => {
            let row = fetch_optional_on(pool, sql.sql(DbBackend::Postgres), values).await?;
            row.map(|row| M::from_query_result(&QueryResult::from(row), ""))
                .transpose()
        }
        None => {
            M::find_by_statement(sql.statement(db.get_database_backend(), values))
                .one(db)
                .await
        }
    }
}

/// The sqlx pool behind `db` when `db` is a pooled PostgreSQL [`DatabaseConnection`] (what
/// [`DatabaseService::connection`](crate::DatabaseService::connection) returns), for the paths
/// that bypass SeaORM's generic query execution; `None` for a transaction, SQLite, or anything
/// else.
pub(crate) fn postgres_pool<C: ConnectionTrait + 'static>(db: &C) -> Option<&sqlx::PgPool> {
    (db as &dyn Any)
        .downcast_ref::<DatabaseConnection>()
        .filter(|conn| {
            matches!(
                conn.inner,
                DatabaseConnectionType::SqlxPostgresPoolConnection(_)
            )
        })
        .map(DatabaseConnection::get_postgres_connection_pool)
}

/// Runs `sql` with `values` on a connection checked out of `pool` and returns its first row,
/// if any. The connection goes back to the pool before the row is decoded.
///
/// Checking out here, instead of passing `&PgPool` as the executor, is deliberate: sqlx's
/// `Executor for &Pool` boxes a future that holds both the checkout and the query, and copying
/// that state around is about half of the client's instructions for a one-row query. Counted
/// with callgrind on the benchmark's point select: 43 800 instructions per call through
/// `&PgPool`, 28 300 this way (`docs/PERFORMANCE.md`).
async fn fetch_optional_on(
    pool: &sqlx::PgPool,
    sql: &'static str,
    values: Vec<Value>,
) -> Result<Option<sqlx::postgres::PgRow>, DbErr> {
    let mut conn = pool.acquire().await.map_err(query_error)?;
    sqlx::query_with(sql, SqlxValues(Values(values)))
        .fetch_optional(&mut *conn)
        .await
        .map_err(query_error)
}

/// A sqlx error as SeaORM reports a failed query, so the usual error mapping applies.
fn query_error(err: sqlx::Error) -> DbErr {
    DbErr::Query(RuntimeErr::SqlxError(Arc::new(err)))
}
