//! [`Reader`]: a connection for reads that a replica may serve.

use std::fmt;
use std::sync::Arc;

use sea_orm::{ConnectionTrait, DbBackend, DbErr, ExecResult, QueryResult, Statement};

use super::executor::{Executor, Route, Transactional, sealed::Sealed};
use super::pool::Pool;
use super::replicas::Replica;

/// A connection for reads that a read replica may serve, from
/// [`DatabaseService::reader`](crate::DatabaseService::reader) (or
/// [`reader_after`](crate::DatabaseService::reader_after) to see your own writes).
///
/// Pass `&reader` to the repositories' read functions (`user::get`, `find_by_email`, `list`) —
/// or to any SeaORM query — as you would pass the service. The replica is chosen when the reader
/// is made (keep one per request, not longer); without replicas, or with none in rotation, it
/// is the primary. On a replica:
/// * a query that fails is run again on the primary (a replica that cannot be reached also
///   leaves rotation at once, and readers made before skip it from then on), so callers never
///   see an error because a replica failed; a replica that has no connection to give within
///   a second is given up for that query;
/// * a lookup that finds no row is asked again on the primary (a row written a moment ago may
///   not have arrived yet), so a create followed by a read never answers "not found";
/// * writes (`execute`) go to the primary. Transactions are not offered: begin them on
///   the service ([`DatabaseService::begin`](crate::DatabaseService::begin)).
#[derive(Clone)]
pub struct Reader {
    primary: Arc<Pool>,
    replica: Option<Arc<Replica>>,
}

impl Reader {
    pub(crate) fn new(primary: Arc<Pool>, replica: Option<Arc<Replica>>) -> Self {
        Self { primary, replica }
    }

    /// Which node serves this reader's queries now: the replica's `host:port/database`, or
    /// `None` for the primary.
    #[must_use]
    pub fn replica_name(&self) -> Option<&str> {
        self.replica().map(|replica| replica.name.as_str())
    }

    /// The replica chosen, while it is in rotation.
    fn replica(&self) -> Option<&Replica> {
        self.replica
            .as_deref()
            .filter(|replica| replica.in_rotation())
    }
}

impl fmt::Debug for Reader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reader")
            .field("replica", &self.replica_name())
            .finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl ConnectionTrait for Reader {
    fn get_database_backend(&self) -> DbBackend {
        self.primary.get_database_backend()
    }

    async fn execute_raw(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        self.primary.execute_raw(stmt).await
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        self.primary.execute_unprepared(sql).await
    }

    async fn query_one_raw(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        if let Some(replica) = self.replica() {
            match replica.pool.conn.query_one_raw(stmt.clone()).await {
                Ok(Some(row)) => return Ok(Some(row)),
                // Not there yet, perhaps: the primary knows.
                Ok(None) => {}
                Err(err) => replica.read_failed(&err),
            }
        }
        self.primary.query_one_raw(stmt).await
    }

    async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        if let Some(replica) = self.replica() {
            match replica.pool.conn.query_all_raw(stmt.clone()).await {
                Ok(rows) => return Ok(rows),
                Err(err) => replica.read_failed(&err),
            }
        }
        self.primary.query_all_raw(stmt).await
    }

    fn support_returning(&self) -> bool {
        self.primary.support_returning()
    }
}

impl Executor for Reader {}

impl Sealed for Reader {
    type Seaorm = Self;

    fn seaorm(&self) -> &Self {
        self
    }

    fn route(&self) -> Route<'_> {
        match self.primary.postgres() {
            Some(_) => Route::Fast {
                primary: &self.primary,
                replica: self.replica(),
            },
            None => Route::Seaorm,
        }
    }

    fn transactional(&self) -> Transactional<'_> {
        Transactional::Connection(&self.primary.conn)
    }
}
