//! [`TestTransaction`]: a transaction that is always rolled back.

use std::ops::Deref;

use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr, ExecResult,
    QueryResult, Statement, TransactionTrait,
};

/// A transaction for one test that is never committed: it is rolled back when dropped (or by
/// [`rollback`](Self::rollback)), so nothing the test wrote remains.
///
/// Pass `&tx` wherever a connection is expected (it implements `ConnectionTrait`). Code under
/// test that opens its own transaction on it (`tx.begin()`) gets a savepoint, so its "commit"
/// stays inside this transaction too.
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
