//! [`Transaction`]: a transaction on the service's primary.

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use sea_orm::{
    ConnectionTrait, DatabaseTransaction, DbBackend, DbErr, ExecResult, QueryResult, Statement,
};

use crate::error::{Error, Result};
use crate::routing::pool::Pool;
use crate::routing::{Executor, Route, Sealed, Transactional};

/// A transaction on the primary, from [`DatabaseService::begin`](crate::DatabaseService::begin).
///
/// Pass `&tx` to the repositories (`user::create(&tx, …)`) and to SeaORM queries; then
/// [`commit`](Self::commit) it. Dropped without a commit, it is rolled back. A write in it that
/// the server refuses as read-only retires the primary's idle sessions, as on the service.
/// `tx.begin()` (through `Deref` to SeaORM's `DatabaseTransaction`) opens a savepoint.
pub struct Transaction {
    transaction: DatabaseTransaction,
    primary: Arc<Pool>,
}

impl Transaction {
    /// Begins a transaction on `primary`.
    pub(crate) async fn begin(primary: Arc<Pool>) -> Result<Self> {
        use sea_orm::TransactionTrait as _;
        let seen = primary.credentials_seen();
        let mut begun = primary.conn.begin().await;
        if primary.password_renewed(&begun, seen).await {
            begun = primary.conn.begin().await;
        }
        let transaction = primary
            .retire_if_read_only(begun)
            .map_err(|err| Error::from_db("begin a transaction", err))?;
        Ok(Self {
            transaction,
            primary,
        })
    }

    /// Commits.
    ///
    /// # Errors
    ///
    /// [`Error::Unavailable`] / [`Error::Database`] (or [`Error::Contention`] for a
    /// serialisation failure) when the commit fails: nothing of the transaction remains.
    /// [`Error::CommitUnknown`] when the connection was lost after the `COMMIT` was sent: the
    /// transaction may have been committed.
    pub async fn commit(self) -> Result<()> {
        let result = self.transaction.commit().await;
        self.primary
            .retire_if_read_only(result)
            .map_err(|err| Error::from_write("commit a transaction", err))
    }

    /// Rolls back now (dropping it does the same, a moment later).
    ///
    /// # Errors
    ///
    /// [`Error::Unavailable`] / [`Error::Database`] when the rollback fails.
    pub async fn rollback(self) -> Result<()> {
        self.transaction
            .rollback()
            .await
            .map_err(|err| Error::from_db("roll back a transaction", err))
    }
}

impl Deref for Transaction {
    type Target = DatabaseTransaction;

    fn deref(&self) -> &DatabaseTransaction {
        &self.transaction
    }
}

impl fmt::Debug for Transaction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transaction")
            .field("backend", &self.transaction.get_database_backend())
            .finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl ConnectionTrait for Transaction {
    fn get_database_backend(&self) -> DbBackend {
        self.transaction.get_database_backend()
    }

    async fn execute_raw(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        let result = self.transaction.execute_raw(stmt).await;
        self.primary.retire_if_read_only(result)
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        let result = self.transaction.execute_unprepared(sql).await;
        self.primary.retire_if_read_only(result)
    }

    async fn query_one_raw(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        let result = self.transaction.query_one_raw(stmt).await;
        self.primary.retire_if_read_only(result)
    }

    async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        let result = self.transaction.query_all_raw(stmt).await;
        self.primary.retire_if_read_only(result)
    }

    fn support_returning(&self) -> bool {
        self.transaction.support_returning()
    }
}

impl Executor for Transaction {}

impl Sealed for Transaction {
    type Seaorm = Self;

    fn seaorm(&self) -> &Self {
        self
    }

    fn route(&self) -> Route<'_> {
        Route::Seaorm
    }

    fn transactional(&self) -> Transactional<'_> {
        Transactional::Transaction(&self.transaction)
    }
}
