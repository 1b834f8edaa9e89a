//! Test support for the project's tests and for downstream crates: a fresh migrated database
//! per test, throw-away clusters, standbys, a pooler and a fault proxy, and the small helpers
//! the test suites share. Add it as a dev-dependency:
//! `test-support = { path = "../db/test-support" }`.
//!
//! * [`TestDatabase`] — a fresh, fully migrated database per test, on PostgreSQL or SQLite.
//!   On PostgreSQL it is a uniquely named database copied from a migrated template (about
//!   0.1 s), dropped when the handle drops after a passing test and kept, with its name printed,
//!   after a failing one. Leftovers of crashed runs are dropped by a later run once they are an
//!   hour old. On SQLite it is a temporary file, handled the same way.
//! * [`TestTransaction`] — a transaction that is always rolled back (the Python template's
//!   `db_session` fixture): whatever the test writes through it is gone afterwards, even if the
//!   code under test "commits" (a nested `begin()` on it is a savepoint).
//! * [`TestCluster`] — a PostgreSQL cluster of a test's own (stop, restart, password
//!   authentication) without touching the shared server.
//! * [`TestReplicaPair`] — a primary and a streaming standby ([`TestCluster::start_standby_of`]),
//!   and [`TestPgBouncer`] — a connection pooler in front of a cluster, for tests of read
//!   replicas and poolers.
//! * [`TestFormation`] — a pg_auto_failover formation (a monitor and two nodes) with timeouts
//!   tuned for tests: switchovers, a primary killed, the URL as `pg_autoctl show uri` prints it.
//! * [`FaultProxy`] — a TCP proxy that makes the PostgreSQL server refuse, hang or come back,
//!   for tests of outages.
//! * [`AdminSession`] — a superuser session that does to a test's own database or role what a
//!   DBA does: refuse connections, terminate sessions, rename, make read-only, limit
//!   connections.
//!
//! Where PostgreSQL comes from (decided once per test binary): `TEST_DATABASE_URL` (an admin
//! URL; the server's `postgres` database is a good choice) when set; otherwise a server on
//! `localhost:5432` (user `postgres`) when one answers; otherwise a private throw-away cluster
//! started from the local PostgreSQL installation (`initdb`/`pg_ctl` on `PATH` or under
//! `/usr/lib/postgresql/*/bin`) on a free loopback port, removed when the test binary exits.
//! If none works, the test fails with a message naming these three ways; it never skips.
//!
//! ```no_run
//! use test_support::{TestBackend, TestDatabase, TestTransaction};
//! use service::user;
//!
//! #[tokio::test]
//! async fn creates_a_user() {
//!     let db = TestDatabase::new(TestBackend::Postgres).await;
//!     let tx = TestTransaction::begin(db.connection()).await;
//!     let ada = user::create(&tx, user::NewUser { email: "ada@x.io".into(), name: "Ada".into() })
//!         .await
//!         .unwrap();
//!     assert_eq!(user::get(&tx, ada.id).await.unwrap().name, "Ada");
//! }
//! ```

mod admin;
mod cluster;
mod formation;
mod helpers;
mod pgbouncer;
mod postgres;
mod proxy;
mod replica_pair;
mod tls_cluster;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use migration::{Migrator, MigratorTrait};
use sea_orm::DatabaseConnection;

use service::DatabaseService;
use service::config::{DatabaseConfig, DatabaseUrl};

pub use admin::AdminSession;
pub use cluster::TestCluster;
pub use formation::{FORMATION_DATABASE, TestFormation};
pub use helpers::{free_port, new_user, scalar, with_quick_timeouts};
pub use pgbouncer::{PoolMode, TestPgBouncer};
pub use proxy::FaultProxy;
pub use replica_pair::TestReplicaPair;
/// The always-rolled-back transaction lives in `service` (it is one of the service's executors);
/// it is re-exported here so tests import all their support from one place.
pub use service::testing::TestTransaction;
pub use tls_cluster::{ServerCertificate, TestTlsCluster};

/// Which database a [`TestDatabase`] runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestBackend {
    /// A database on the test PostgreSQL server (see the module documentation).
    Postgres,
    /// A temporary SQLite file.
    Sqlite,
}

/// A database of its own for one test, connected through a [`DatabaseService`].
///
/// Dropped after a passing test (the database, or the SQLite file, is removed); kept after a
/// failing one (a panicking test), with its name printed so it can be inspected.
#[derive(Debug)]
pub struct TestDatabase {
    service: DatabaseService,
    config: DatabaseConfig,
    place: Place,
}

#[derive(Debug)]
enum Place {
    Postgres { name: String },
    Sqlite { path: PathBuf },
}

impl TestDatabase {
    /// A fresh database with every migration applied.
    ///
    /// # Panics
    ///
    /// When no database can be provided; the message says how to provide one.
    pub async fn new(backend: TestBackend) -> Self {
        Self::create(backend, true).await
    }

    /// A fresh database with nothing applied, for tests of the migrations themselves.
    ///
    /// # Panics
    ///
    /// When no database can be provided; the message says how to provide one.
    pub async fn empty(backend: TestBackend) -> Self {
        Self::create(backend, false).await
    }

    /// The service connected to this database (a pool of up to 5 connections).
    #[must_use]
    pub fn service(&self) -> &DatabaseService {
        &self.service
    }

    /// The pooled connection, for repositories and SeaORM queries.
    #[must_use]
    pub fn connection(&self) -> &DatabaseConnection {
        self.service.connection()
    }

    /// The configuration the service was connected with: use it to connect again (a server
    /// under test, a second pool) to the same database.
    #[must_use]
    pub fn config(&self) -> &DatabaseConfig {
        &self.config
    }

    /// The database's name (PostgreSQL) or file path (SQLite).
    #[must_use]
    pub fn name(&self) -> String {
        match &self.place {
            Place::Postgres { name } => name.clone(),
            Place::Sqlite { path } => path.display().to_string(),
        }
    }

    async fn create(backend: TestBackend, migrated: bool) -> Self {
        let unique = unique_suffix();
        let (url, place) = match backend {
            TestBackend::Postgres => {
                let name = format!("{}{unique}", postgres::TEST_DB_PREFIX);
                let url = postgres::create_database(&name, migrated).await;
                (url, Place::Postgres { name })
            }
            TestBackend::Sqlite => {
                static SWEPT: std::sync::Once = std::sync::Once::new();
                SWEPT.call_once(sweep_sqlite_leftovers);
                let path = std::env::temp_dir().join(format!("db_test_{unique}.sqlite"));
                let url = format!("sqlite://{}?mode=rwc", path.display());
                (url, Place::Sqlite { path })
            }
        };
        let mut config = DatabaseConfig::new(
            DatabaseUrl::parse(url).unwrap_or_else(|err| panic!("test database URL: {err}")),
        );
        config.max_connections = 5;
        config.application_name = "db-test".into();
        let service = DatabaseService::connect(&config)
            .await
            .unwrap_or_else(|err| panic!("cannot connect to the test database: {err}"));
        if migrated && backend == TestBackend::Sqlite {
            Migrator::up(service.connection(), None)
                .await
                .unwrap_or_else(|err| panic!("cannot migrate the test SQLite database: {err}"));
        }
        Self {
            service,
            config,
            place,
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "test failed: kept the test database {} for inspection ({}); a later test run \
                 removes it once it is an hour old",
                self.name(),
                self.config.url
            );
            return;
        }
        match &self.place {
            Place::Postgres { name } => postgres::drop_database(name),
            Place::Sqlite { path } => {
                for suffix in ["", "-wal", "-shm", "-journal"] {
                    let mut file = path.clone().into_os_string();
                    file.push(suffix);
                    let _ = std::fs::remove_file(file);
                }
            }
        }
    }
}

/// Leftovers (crashed runs, failed tests kept for inspection) older than this are removed by a
/// later run.
const LEFTOVER_MAX_AGE_SECS: u64 = 3600;

/// Removes `db_test_<unix seconds>_….sqlite*` files in the temporary folder older than
/// [`LEFTOVER_MAX_AGE_SECS`].
fn sweep_sqlite_leftovers() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    let now = unix_now();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let created = name
            .strip_prefix("db_test_")
            .filter(|rest| rest.contains(".sqlite"))
            .and_then(|rest| rest.split('_').next())
            .and_then(|secs| secs.parse::<u64>().ok());
        if created.is_some_and(|created| now.saturating_sub(created) > LEFTOVER_MAX_AGE_SECS) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// `<unix seconds>_<pid>_<counter>`: unique across parallel tests and processes, and tells a
/// later run how old a leftover is.
fn unique_suffix() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    format!(
        "{}_{}_{}",
        unix_now(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Runs `future` to completion on a runtime of its own, on a thread of its own, so it can be
/// called from `Drop` or from a `OnceLock` initialiser inside a test's runtime.
fn block_on_own_runtime<F>(future: F) -> F::Output
where
    F: std::future::Future + Send,
    F::Output: Send,
{
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a tokio runtime for test support")
                    .block_on(future)
            })
            .join()
            .expect("test support thread panicked")
    })
}
