//! [`TestTransaction`]: a transaction that is always rolled back (feature `testing`).
//!
//! It lives here, not in the `test-support` crate with the rest of the test support, because
//! it is one of the service's executors (the `Executor` trait is sealed); `test-support`
//! re-exports it.

use std::future::Future;
use std::ops::Deref;
use std::pin::Pin;

use crate::routing::{Executor, Route, Sealed, Transactional};
use sea_orm::{
    AccessMode, ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr,
    ExecResult, IsolationLevel, QueryResult, Statement, TransactionError, TransactionOptions,
    TransactionTrait,
};

/// A transaction for one test that is never committed: it is rolled back when dropped (or by
/// [`rollback`](Self::rollback)), so nothing the test wrote remains.
///
/// Pass `&tx` wherever a connection is expected (it implements `ConnectionTrait` and
/// `TransactionTrait`, so `user::create_many(&tx, …)` works too). Code under test that opens
/// its own transaction on it (`tx.begin()`) gets a savepoint, so its "commit" stays inside
/// this transaction too.
#[derive(Debug)]
pub struct TestTransaction {
    transaction: DatabaseTransaction,
}

impl TestTransaction {
    /// Begins the transaction on `db`.
    ///
    /// # Panics
    ///
    /// When the transaction cannot be started.
    pub async fn begin(db: &DatabaseConnection) -> Self {
        Self {
            transaction: db
                .begin()
                .await
                .unwrap_or_else(|err| panic!("cannot begin the test transaction: {err}")),
        }
    }

    /// Rolls back now (dropping does the same).
    ///
    /// # Errors
    ///
    /// The database error, if the rollback fails.
    pub async fn rollback(self) -> Result<(), DbErr> {
        self.transaction.rollback().await
    }
}

impl Deref for TestTransaction {
    type Target = DatabaseTransaction;

    fn deref(&self) -> &DatabaseTransaction {
        &self.transaction
    }
}

#[async_trait::async_trait]
impl ConnectionTrait for TestTransaction {
    fn get_database_backend(&self) -> DbBackend {
        self.transaction.get_database_backend()
    }

    async fn execute_raw(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        self.transaction.execute_raw(stmt).await
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        self.transaction.execute_unprepared(sql).await
    }

    async fn query_one_raw(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        self.transaction.query_one_raw(stmt).await
    }

    async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        self.transaction.query_all_raw(stmt).await
    }

    fn support_returning(&self) -> bool {
        self.transaction.support_returning()
    }
}

/// Every transaction begun here is a savepoint inside the test transaction.
#[async_trait::async_trait]
impl TransactionTrait for TestTransaction {
    type Transaction = DatabaseTransaction;

    async fn begin(&self) -> Result<DatabaseTransaction, DbErr> {
        self.transaction.begin().await
    }

    async fn begin_with_config(
        &self,
        isolation_level: Option<IsolationLevel>,
        access_mode: Option<AccessMode>,
    ) -> Result<DatabaseTransaction, DbErr> {
        self.transaction
            .begin_with_config(isolation_level, access_mode)
            .await
    }

    async fn begin_with_options(
        &self,
        options: TransactionOptions,
    ) -> Result<DatabaseTransaction, DbErr> {
        self.transaction.begin_with_options(options).await
    }

    async fn transaction<F, T, E>(&self, callback: F) -> Result<T, TransactionError<E>>
    where
        F: for<'c> FnOnce(
                &'c DatabaseTransaction,
            ) -> Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'c>>
            + Send,
        T: Send,
        E: std::fmt::Display + std::fmt::Debug + Send,
    {
        self.transaction.transaction(callback).await
    }

    async fn transaction_with_config<F, T, E>(
        &self,
        callback: F,
        isolation_level: Option<IsolationLevel>,
        access_mode: Option<AccessMode>,
    ) -> Result<T, TransactionError<E>>
    where
        F: for<'c> FnOnce(
                &'c DatabaseTransaction,
            ) -> Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'c>>
            + Send,
        T: Send,
        E: std::fmt::Display + std::fmt::Debug + Send,
    {
        self.transaction
            .transaction_with_config(callback, isolation_level, access_mode)
            .await
    }
}

impl Executor for TestTransaction {}

impl Sealed for TestTransaction {
    type Seaorm = DatabaseTransaction;

    fn seaorm(&self) -> &DatabaseTransaction {
        &self.transaction
    }

    fn route(&self) -> Route<'_> {
        Route::Seaorm
    }

    fn transactional(&self) -> Transactional<'_> {
        Transactional::Transaction(&self.transaction)
    }
}
