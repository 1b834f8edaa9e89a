//! [`Executor`]: what the repositories run their statements on, and where each kind goes.

use sea_orm::{ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend};

use super::pool::Pool;
use super::replicas::Replica;

/// What a repository function runs on: the service's primary, a [`Reader`](crate::Reader)
/// (reads on a replica, with fallback to the primary), a [`Transaction`](crate::Transaction)
/// — or, for SeaORM code that already has one, a SeaORM `DatabaseConnection` or
/// `DatabaseTransaction` (including [`testing::TestTransaction`](crate)).
///
/// ```no_run
/// # async fn example(db: service::DatabaseService) -> service::Result<()> {
/// use service::user;
///
/// let ada = user::create(&db, user::NewUser { email: "ada@x.io".into(), name: "Ada".into() })
///     .await?;
/// let read = user::get(&db.reader(), ada.id).await?; // a replica may answer
/// let tx = db.begin().await?;
/// user::update(&tx, ada.id, user::UserChanges { name: Some("Ada L.".into()), email: None })
///     .await?;
/// tx.commit().await?;
/// # Ok(()) }
/// ```
///
/// The service's own executors carry the state of their pools (the pool, the connections held
/// between statements, the pool's metric keys): a one-row statement on the service or a reader
/// runs on sqlx directly (`docs/PERFORMANCE.md`), a read on a reader falls back to the primary
/// when its replica fails or has not replayed the row yet, and a write that the server refuses
/// as read-only retires the pool's idle sessions. SeaORM's own connection and transaction
/// types take SeaORM's generic path for everything.
///
/// The trait is sealed: a type of your own cannot implement it, so no repository meets an
/// executor it does not know. Pass the service (or a reader) where you would have wrapped it.
pub trait Executor: sealed::Sealed + Sync {}

/// Where a repository's statement runs, as its executor decides.
#[derive(Debug)]
pub enum Route<'a> {
    /// The service's PostgreSQL pool, and the replica a reader chose (still in rotation): the
    /// fast path. Writes go to `primary`.
    Fast {
        /// The primary's pool.
        primary: &'a Pool,
        /// The replica for reads, if any.
        replica: Option<&'a Replica>,
    },
    /// SeaORM's generic path, on [`Sealed::seaorm`](sealed::Sealed::seaorm): SQLite, a
    /// transaction, a plain SeaORM connection.
    Seaorm,
}

/// Something a transaction can be begun on (a savepoint when it is one already), for the
/// repositories' multi-statement writes.
#[derive(Debug)]
pub enum Transactional<'a> {
    /// A pool: a new transaction.
    Connection(&'a DatabaseConnection),
    /// A transaction: a savepoint in it.
    Transaction(&'a DatabaseTransaction),
}

pub(crate) mod sealed {
    use super::{ConnectionTrait, DbBackend, Route, Transactional};

    /// The executor's side the repositories use; not nameable outside this crate.
    pub trait Sealed {
        /// The SeaORM connection statements of the generic path run on.
        type Seaorm: ConnectionTrait;

        /// The SeaORM connection for statements the fast path does not take (queries built
        /// per call, updates, deletes). On the service's executors it retires read-only
        /// sessions and (for a reader) falls back from its replica by itself.
        fn seaorm(&self) -> &Self::Seaorm;

        /// Where a one-row statement (or a `COPY`) runs.
        fn route(&self) -> Route<'_>;

        /// Where a transaction for a multi-statement write begins.
        fn transactional(&self) -> Transactional<'_>;

        /// The database's kind.
        fn backend(&self) -> DbBackend {
            self.seaorm().get_database_backend()
        }
    }
}

impl Executor for DatabaseConnection {}

impl sealed::Sealed for DatabaseConnection {
    type Seaorm = Self;

    fn seaorm(&self) -> &Self {
        self
    }

    fn route(&self) -> Route<'_> {
        Route::Seaorm
    }

    fn transactional(&self) -> Transactional<'_> {
        Transactional::Connection(self)
    }
}

impl Executor for DatabaseTransaction {}

impl sealed::Sealed for DatabaseTransaction {
    type Seaorm = Self;

    fn seaorm(&self) -> &Self {
        self
    }

    fn route(&self) -> Route<'_> {
        Route::Seaorm
    }

    fn transactional(&self) -> Transactional<'_> {
        Transactional::Transaction(self)
    }
}

impl<E: Executor> Executor for &E {}

impl<E: Executor> sealed::Sealed for &E {
    type Seaorm = E::Seaorm;

    fn seaorm(&self) -> &E::Seaorm {
        (**self).seaorm()
    }

    fn route(&self) -> Route<'_> {
        (**self).route()
    }

    fn transactional(&self) -> Transactional<'_> {
        (**self).transactional()
    }

    fn backend(&self) -> DbBackend {
        (**self).backend()
    }
}
