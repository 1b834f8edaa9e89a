//! Where and how the repositories' statements run: the one place that knows about pools.
//!
//! A repository states *what* to run (its SQL, rendered once as a [`CachedSql`], and its
//! values) and whether it reads or writes; its [`Executor`] decides *where* and *how*
//! ([`Route`]):
//!
//! * the service itself ([`DatabaseService`](crate::DatabaseService)) on PostgreSQL: everything
//!   runs on the primary; a one-row statement runs on sqlx directly, on a connection checked
//!   out here, and only the row goes through SeaORM ([`FromQueryResult`]); many rows go
//!   through `COPY` ([`bulk`]);
//! * a [`Reader`] ([`DatabaseService::reader`](crate::DatabaseService::reader)): reads run the
//!   same way on the replica it chose (falling back to the primary as [`Reader`] explains),
//!   writes on the primary;
//! * a [`Transaction`](crate::Transaction), SQLite, or SeaORM's own connection and
//!   transaction types: SeaORM's generic path.
//!
//! So a second repository is only its own queries and rules.

pub(crate) mod bulk;
mod cached;
mod executor;
pub(crate) mod follow;
pub(crate) mod held;
pub(crate) mod pool;
mod reader;
pub(crate) mod replicas;

use std::sync::Arc;

use sea_orm::sea_query::Values;
use sea_orm::{
    ConnectionTrait, DbBackend, DbErr, FromQueryResult, QueryResult, RuntimeErr, Value, sqlx,
};
use sea_query_sqlx::SqlxValues;

use crate::error::{Error, is_read_only_refusal};
use held::HeldConnections;
use pool::Pool;

pub(crate) use cached::CachedSql;
pub use executor::Executor;
pub(crate) use executor::sealed::Sealed;
pub(crate) use executor::{Route, Transactional};
pub use reader::Reader;
pub use replicas::{InvalidWalPosition, WalPosition};

/// Runs a read that returns at most one row (a lookup by key) and decodes that row into `M`.
///
/// On the PostgreSQL pool, or a [`Reader`], the statement runs on sqlx directly, on a
/// connection this function checks out itself: SeaORM's generic query path, like sqlx's own
/// `&PgPool` executor, moves several kilobytes of future state per call, which is most of the
/// client's work for a one-row statement (`docs/PERFORMANCE.md` has the figures). Statement
/// logging (`DB_ECHO`) still applies; SeaORM's metric callback (unused by this crate) is not
/// called on that path. On a replica, a failure or an absent row is asked again on the
/// primary, as [`Reader`] explains.
///
/// # Errors
///
/// The database's error, or a row that does not decode into `M`.
pub(crate) async fn read_optional<M, E>(
    db: &E,
    sql: &'static CachedSql,
    values: Vec<Value>,
) -> Result<Option<M>, DbErr>
where
    M: FromQueryResult,
    E: Executor,
{
    let (primary, replica) = match db.route() {
        Route::Seaorm => return seaorm_optional(db.seaorm(), sql, values).await,
        Route::Fast { primary, replica } => (primary, replica),
    };
    let sql = sql.sql(DbBackend::Postgres);
    if let Some(replica) = replica {
        let on_replica = fetch_on::<One>(&replica.pool, sql, values.clone(), Kind::Read);
        match on_replica.await {
            Ok(Some(row)) => return decode(row),
            // Not there yet, perhaps: the primary knows.
            Ok(None) => {}
            Err(err) => replica.read_failed(&err),
        }
    }
    fetch_on::<One>(primary, sql, values, Kind::Read)
        .await?
        .map(decode)
        .transpose()
}

/// Runs a read that returns any number of rows (a page) and decodes each into `M`, on the
/// paths of [`read_optional`]: on a replica, a failure is asked again on the primary (an
/// empty or short answer is not: a page may be as stale as the replica's lag bound allows).
///
/// # Errors
///
/// The database's error, or a row that does not decode into `M`.
pub(crate) async fn read_all<M, E>(
    db: &E,
    sql: &'static CachedSql,
    values: Vec<Value>,
) -> Result<Vec<M>, DbErr>
where
    M: FromQueryResult,
    E: Executor,
{
    let (primary, replica) = match db.route() {
        Route::Seaorm => {
            let db = db.seaorm();
            return M::find_by_statement(sql.statement(db.get_database_backend(), values))
                .all(db)
                .await;
        }
        Route::Fast { primary, replica } => (primary, replica),
    };
    let sql = sql.sql(DbBackend::Postgres);
    if let Some(replica) = replica {
        match fetch_on::<All>(&replica.pool, sql, values.clone(), Kind::Read).await {
            Ok(rows) => return rows.into_iter().map(decode).collect(),
            Err(err) => replica.read_failed(&err),
        }
    }
    fetch_on::<All>(primary, sql, values, Kind::Read)
        .await?
        .into_iter()
        .map(decode)
        .collect()
}

/// Runs a write that returns at most one row (`INSERT … RETURNING`) on the primary and decodes
/// that row into `M`; the fast path of [`read_optional`] applies.
///
/// # Errors
///
/// The database's error, or a row that does not decode into `M`.
pub(crate) async fn write_optional<M, E>(
    db: &E,
    sql: &'static CachedSql,
    values: Vec<Value>,
) -> Result<Option<M>, DbErr>
where
    M: FromQueryResult,
    E: Executor,
{
    match db.route() {
        Route::Seaorm => seaorm_optional(db.seaorm(), sql, values).await,
        Route::Fast { primary, .. } => {
            let sql = sql.sql(DbBackend::Postgres);
            fetch_on::<One>(primary, sql, values, Kind::Write)
                .await?
                .map(decode)
                .transpose()
        }
    }
}

async fn seaorm_optional<M, C>(
    db: &C,
    sql: &'static CachedSql,
    values: Vec<Value>,
) -> Result<Option<M>, DbErr>
where
    M: FromQueryResult,
    C: ConnectionTrait,
{
    M::find_by_statement(sql.statement(db.get_database_backend(), values))
        .one(db)
        .await
}

fn decode<M: FromQueryResult>(row: sqlx::postgres::PgRow) -> Result<M, DbErr> {
    M::from_query_result(&QueryResult::from(row), "")
}

/// Column `index` of `row`.
fn decode_column<'r, T>(row: &'r sqlx::postgres::PgRow, index: usize) -> Result<T, DbErr>
where
    T: sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
{
    sqlx::Row::try_get(row, index).map_err(query_error)
}

/// Whether a statement only reads (and may be run again) or writes (and may not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Read,
    /// A read whose caller is better served by an error now than by an answer after a wait
    /// for a server that went away (the WAL position after a request's writes, which only
    /// adds a header to an answer that is ready): it is not run again on another connection,
    /// and while the primary is being looked for it takes only a connection that is there.
    ReadOnce,
    Write,
}

/// What a statement's rows are collected into: its first row ([`One`]) or all of them
/// ([`All`]).
trait Fetch {
    type Rows;

    async fn fetch(
        conn: &mut sqlx::PgConnection,
        sql: &'static str,
        values: Vec<Value>,
    ) -> Result<Self::Rows, DbErr>;
}

/// The first row, if any (a lookup by key, `INSERT … RETURNING`).
struct One;

impl Fetch for One {
    type Rows = Option<sqlx::postgres::PgRow>;

    async fn fetch(
        conn: &mut sqlx::PgConnection,
        sql: &'static str,
        values: Vec<Value>,
    ) -> Result<Self::Rows, DbErr> {
        sqlx::query_with(sql, SqlxValues(Values(values)))
            .fetch_optional(conn)
            .await
            .map_err(query_error)
    }
}

/// Every row (a page).
struct All;

impl Fetch for All {
    type Rows = Vec<sqlx::postgres::PgRow>;

    async fn fetch(
        conn: &mut sqlx::PgConnection,
        sql: &'static str,
        values: Vec<Value>,
    ) -> Result<Self::Rows, DbErr> {
        sqlx::query_with(sql, SqlxValues(Values(values)))
            .fetch_all(conn)
            .await
            .map_err(query_error)
    }
}

/// Runs `sql` with `values` on a connection of `pool` and returns its rows as `F` collects
/// them; the waits for a connection are recorded in `metrics`, the pool's.
///
/// The connection is one the fast path holds between statements when the pool's connections
/// are held (`DB_CONNECTION_HOLD`, see [`held`]): one round trip instead of two. A read that
/// fails because its connection was lost (a server restart, a terminated session) is run once
/// more on another connection; a write is not.
///
/// Checking out here, instead of passing `&PgPool` as the executor, is deliberate: sqlx's
/// `Executor for &Pool` boxes a future that holds both the checkout and the query, and copying
/// that state around is about half of the client's instructions for a one-row query. Counted
/// with callgrind on the benchmark's point select: 43 800 instructions per call through
/// `&PgPool`, 28 300 this way (`docs/PERFORMANCE.md`).
async fn fetch_on<F: Fetch>(
    state: &Pool,
    sql: &'static str,
    values: Vec<Value>,
    kind: Kind,
) -> Result<F::Rows, DbErr> {
    let pool = state.conn.get_postgres_connection_pool();
    let (held, metrics) = (state.held.as_ref(), &state.metrics);
    let again = (kind == Kind::Read).then(|| values.clone());
    let checkout = state.checkout(pool, kind != Kind::ReadOnce);
    let (renew, seen) = (
        state.credentials.is_some().then(|| values.clone()),
        state.credentials_seen(),
    );
    let mut outcome = attempt::<F>(state, checkout, sql, values).await;
    if let (Err(Attempt::Checkout(err)), Some(values)) = (&outcome, renew) {
        // The server refused a new connection's password: the statement was not sent.
        if state
            .password_renewed(&Err::<(), _>(err.clone()), seen)
            .await
        {
            let checkout = held::Checkout::from_pool(pool, metrics);
            outcome = attempt::<F>(state, checkout, sql, values).await;
        }
    }
    match (outcome, again) {
        (Ok(row), _) => Ok(row),
        (Err(Attempt::Statement(err)), Some(values))
            if Error::from_db("read", err.clone()).is_unavailable() =>
        {
            // The other held connections most likely died with this one.
            if let Some(held) = held {
                held.release_all();
            }
            let fresh = held::Checkout::answering(pool, metrics);
            attempt::<F>(state, fresh, sql, values)
                .await
                .map_err(Attempt::into_inner)
        }
        (Err(failed), _) => Err(failed.into_inner()),
    }
}

/// Where an attempt failed.
enum Attempt {
    /// No connection could be had (the pool timed out or is closed): trying again would wait
    /// again.
    Checkout(DbErr),
    /// The statement failed on its connection.
    Statement(DbErr),
}

impl Attempt {
    fn into_inner(self) -> DbErr {
        match self {
            Self::Checkout(err) | Self::Statement(err) => err,
        }
    }
}

/// One attempt of [`fetch_on`]: the connection `checkout` gives, the statement, and
/// the connection held again after success (when `held`). After a failure the connection goes
/// back through sqlx's path, which pings (or closes) it; after a read-only refusal it and the
/// pool's other sessions are closed.
async fn attempt<F: Fetch>(
    state: &Pool,
    checkout: impl Future<Output = Result<held::Checkout, sqlx::Error>>,
    sql: &'static str,
    values: Vec<Value>,
) -> Result<F::Rows, Attempt> {
    let mut checkout = checkout.await.map_err(|err| {
        let err = acquire_error(err);
        state.after_error(&err);
        Attempt::Checkout(err)
    })?;
    let result = F::fetch(&mut checkout.conn, sql, values).await;
    if let Err(err) = &result {
        state.after_error(err);
    }
    match &result {
        Ok(_) => {
            if let Some(held) = &state.held {
                HeldConnections::done(held, checkout);
            }
        }
        Err(err) if is_read_only_refusal(err) => {
            // Sessions keep the read-only state they started with: none may serve again.
            checkout.conn.close_on_drop();
            state.retire_idle_sessions();
        }
        Err(_) => {}
    }
    result.map_err(Attempt::Statement)
}

/// A sqlx error from checking a connection out, as SeaORM reports one: the statement was never
/// sent ([`Error::from_write`] tells this from a connection lost while a statement ran).
fn acquire_error(err: sqlx::Error) -> DbErr {
    match err {
        sqlx::Error::PoolTimedOut => DbErr::ConnectionAcquire(sea_orm::ConnAcquireErr::Timeout),
        sqlx::Error::PoolClosed => {
            DbErr::ConnectionAcquire(sea_orm::ConnAcquireErr::ConnectionClosed)
        }
        err => DbErr::Conn(RuntimeErr::SqlxError(Arc::new(err))),
    }
}

/// A sqlx error as SeaORM reports a failed query, so the usual error mapping applies.
fn query_error(err: sqlx::Error) -> DbErr {
    DbErr::Query(RuntimeErr::SqlxError(Arc::new(err)))
}
