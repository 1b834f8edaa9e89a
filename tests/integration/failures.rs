//! Failure behaviour: atomic migrations, drift, the migration lock, read-only status, connection
//! failures, server restarts, pool exhaustion and hostile input.

use std::time::{Duration, Instant};

use migration::{Migrator, MigratorTrait};
use migrator::MigratorOptions;
use migrator::runner::{self, DownTo, MigrateError, UpTo};
use sea_orm::{ConnectionTrait, TransactionTrait};
use service::user::{self, NewUser, UserChanges};
use service::{ConnectFailure, DatabaseConfig, DatabaseService, DatabaseUrl, Error};

use crate::on_both_backends;
use crate::sql::table_exists;
use test_support::{TestBackend, TestCluster, TestDatabase, free_port, scalar as count};

on_both_backends!(
    a_migration_failing_part_way_leaves_nothing_behind,
    an_unknown_applied_migration_is_named_and_blocks_up_and_down,
    targets_move_to_the_named_version,
    concurrent_start_up_migrations_apply_each_migration_once,
    pool_exhaustion_answers_unavailable_promptly_and_recovers,
    hostile_input_is_rejected_or_stored_exactly,
);

/// A migrator whose second migration creates a table and then fails.
struct FailingMigrator;

mod failing {
    use migration::{
        ColumnDef, ConnectionTrait, DbErr, MigrationName, MigrationTrait, SchemaManager, Table,
    };

    pub struct M20990101_000001CreateGood;
    impl MigrationName for M20990101_000001CreateGood {
        fn name(&self) -> &str {
            "m20990101_000001_create_good"
        }
    }
    #[migration::async_trait::async_trait]
    impl MigrationTrait for M20990101_000001CreateGood {
        async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
            manager
                .create_table(
                    Table::create()
                        .table("good")
                        .col(ColumnDef::new("id").integer().primary_key())
                        .to_owned(),
                )
                .await
        }
        async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
            manager
                .drop_table(Table::drop().table("good").to_owned())
                .await
        }
        fn use_transaction(&self) -> Option<bool> {
            Some(true)
        }
    }

    pub struct M20990101_000002BreakHalfWay;
    impl MigrationName for M20990101_000002BreakHalfWay {
        fn name(&self) -> &str {
            "m20990101_000002_break_half_way"
        }
    }
    #[migration::async_trait::async_trait]
    impl MigrationTrait for M20990101_000002BreakHalfWay {
        async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
            manager
                .create_table(
                    Table::create()
                        .table("half_done")
                        .col(ColumnDef::new("id").integer().primary_key())
                        .to_owned(),
                )
                .await?;
            manager
                .get_connection()
                .execute_unprepared("INSERT INTO no_such_table VALUES (1)")
                .await
                .map(|_| ())
        }
        fn use_transaction(&self) -> Option<bool> {
            Some(true)
        }
    }
}

#[migration::async_trait::async_trait]
impl MigratorTrait for FailingMigrator {
    fn migrations() -> Vec<Box<dyn migration::MigrationTrait>> {
        vec![
            Box::new(failing::M20990101_000001CreateGood),
            Box::new(failing::M20990101_000002BreakHalfWay),
        ]
    }
}

const LOCK_TIMEOUT: Duration = Duration::from_secs(30);

/// The default options, waiting `timeout` for another migrator.
fn lock_timeout(timeout: Duration) -> MigratorOptions {
    MigratorOptions {
        lock_timeout: timeout,
        ..MigratorOptions::default()
    }
}

impl migrator::MigrationSources for FailingMigrator {}

async fn a_migration_failing_part_way_leaves_nothing_behind(backend: TestBackend) {
    let db = TestDatabase::empty(backend).await;
    let conn = db.connection();

    let err = runner::up::<FailingMigrator>(conn, UpTo::Latest, &lock_timeout(LOCK_TIMEOUT))
        .await
        .unwrap_err();

    match &err {
        MigrateError::Failed {
            migration,
            direction,
            ..
        } => {
            assert_eq!(migration, "m20990101_000002_break_half_way");
            assert_eq!(*direction, "up");
        }
        other => panic!("expected Failed, got {other:?}"),
    }
    assert!(
        err.to_string().contains("no_such_table"),
        "the cause: {err}"
    );
    assert!(
        table_exists(conn, "good").await,
        "the first migration stays"
    );
    assert!(!table_exists(conn, "half_done").await, "no partial schema");
    let status = migrator::status::<FailingMigrator, _>(conn).await.unwrap();
    assert_eq!(status.applied.len(), 1);
    assert_eq!(status.pending, ["m20990101_000002_break_half_way"]);
}

async fn an_unknown_applied_migration_is_named_and_blocks_up_and_down(backend: TestBackend) {
    let db = TestDatabase::new(backend).await;
    let conn = db.connection();
    conn.execute_unprepared(
        "INSERT INTO seaql_migrations (version, applied_at) VALUES ('m20991231_000000_newer', 0)",
    )
    .await
    .unwrap();

    let status = migrator::status::<Migrator, _>(conn).await.unwrap();
    let up = runner::up::<Migrator>(conn, UpTo::Latest, &lock_timeout(LOCK_TIMEOUT)).await;
    let down = runner::down::<Migrator>(conn, DownTo::Steps(1), &lock_timeout(LOCK_TIMEOUT)).await;

    assert_eq!(status.unknown.len(), 1);
    assert_eq!(status.unknown[0].version, "m20991231_000000_newer");
    for outcome in [up, down] {
        let err = outcome.unwrap_err();
        assert!(
            matches!(&err, MigrateError::UnknownApplied { versions } if versions == &["m20991231_000000_newer"]),
            "{err:?}"
        );
        assert!(err.to_string().contains("m20991231_000000_newer"));
    }
    assert_eq!(
        migrator::status::<Migrator, _>(conn)
            .await
            .unwrap()
            .applied
            .len(),
        3,
        "nothing was rolled back"
    );
}

async fn targets_move_to_the_named_version(backend: TestBackend) {
    let db = TestDatabase::empty(backend).await;
    let conn = db.connection();
    let second = "m20261127_000002_lowercase_user_emails";

    let applied = runner::up::<Migrator>(
        conn,
        UpTo::Version(second.into()),
        &lock_timeout(LOCK_TIMEOUT),
    )
    .await
    .unwrap();
    assert_eq!(applied.len(), 2);
    assert_eq!(applied[1], second);

    runner::up::<Migrator>(conn, UpTo::Latest, &lock_timeout(LOCK_TIMEOUT))
        .await
        .unwrap();
    let rolled_back = runner::down::<Migrator>(
        conn,
        DownTo::Version(second.into()),
        &lock_timeout(LOCK_TIMEOUT),
    )
    .await
    .unwrap();
    assert_eq!(
        rolled_back,
        ["m20261127_000003_create_user_email_lower_index"]
    );

    let err = runner::up::<Migrator>(
        conn,
        UpTo::Version("m2000_nope".into()),
        &lock_timeout(LOCK_TIMEOUT),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, MigrateError::NoSuchMigration(_)), "{err:?}");

    let all = runner::down::<Migrator>(conn, DownTo::Nothing, &lock_timeout(LOCK_TIMEOUT))
        .await
        .unwrap();
    assert_eq!(all.len(), 2);
    assert!(!table_exists(conn, "user").await);
    let err = runner::down::<Migrator>(
        conn,
        DownTo::Version(second.into()),
        &lock_timeout(LOCK_TIMEOUT),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, MigrateError::NotApplied(_)), "{err:?}");
}

async fn concurrent_start_up_migrations_apply_each_migration_once(backend: TestBackend) {
    let db = TestDatabase::empty(backend).await;
    let mut starting = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let service = DatabaseService::connect(db.config()).await.unwrap();
        starting.spawn(async move {
            service
                .apply_migrations(&service::MigratorOptions::default())
                .await
        });
    }

    let outcomes = starting.join_all().await;

    let mut applied_total = 0;
    for outcome in outcomes {
        match (backend, outcome) {
            (_, Ok(applied)) => applied_total += applied.len(),
            // SQLite has no advisory lock: a concurrent migrator may fail (cleanly), never
            // corrupt anything. PostgreSQL's lock makes every one succeed.
            (TestBackend::Sqlite, Err(_)) => {}
            (TestBackend::Postgres, Err(err)) => panic!("{err}"),
        }
    }
    assert_eq!(applied_total, 3, "each migration applied exactly once");
    let status = migrator::status::<Migrator, _>(db.connection())
        .await
        .unwrap();
    assert!(status.is_up_to_date());
    assert_eq!(
        count(db.connection(), "SELECT count(*) FROM seaql_migrations").await,
        3
    );
}

#[tokio::test]
async fn a_second_migrator_waits_for_the_lock_and_gives_up_after_its_timeout() {
    let db = TestDatabase::empty(TestBackend::Postgres).await;
    // Another migrator is running: a session holds the lock.
    let holder = db.connection().begin().await.unwrap();
    holder
        .execute_unprepared(&format!(
            "SELECT pg_advisory_lock({})",
            runner::MIGRATION_LOCK_KEY
        ))
        .await
        .unwrap();
    let started = Instant::now();

    let err = runner::up::<Migrator>(
        db.connection(),
        UpTo::Latest,
        &lock_timeout(Duration::from_secs(1)),
    )
    .await
    .unwrap_err();

    assert!(matches!(err, MigrateError::LockTimeout(_)), "{err:?}");
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert!(
        migrator::status::<Migrator, _>(db.connection())
            .await
            .unwrap()
            .applied
            .is_empty()
    );

    holder
        .execute_unprepared(&format!(
            "SELECT pg_advisory_unlock({})",
            runner::MIGRATION_LOCK_KEY
        ))
        .await
        .unwrap();
    drop(holder);
    let applied = runner::up::<Migrator>(
        db.connection(),
        UpTo::Latest,
        &lock_timeout(Duration::from_secs(5)),
    )
    .await
    .unwrap();
    assert_eq!(applied.len(), 3);
}

#[tokio::test]
async fn status_works_for_a_read_only_role_and_creates_nothing() {
    let db = TestDatabase::empty(TestBackend::Postgres).await;
    let role = format!("readonly_{}", std::process::id());
    let admin = db.connection();
    // A role is server-wide: clear one a crashed run may have left.
    admin
        .execute_unprepared(&format!(
            "DROP ROLE IF EXISTS {role}; CREATE ROLE {role} LOGIN"
        ))
        .await
        .unwrap();
    let mut url = url::Url::parse(&db.config().url.expose_secret()).unwrap();
    url.set_username(&role).unwrap();
    let reader = DatabaseService::connect(&DatabaseConfig::new(
        DatabaseUrl::parse(url.to_string()).unwrap(),
    ))
    .await
    .unwrap();

    let before = migrator::status::<Migrator, _>(reader.connection()).await;
    Migrator::up(admin, None).await.unwrap();
    admin
        .execute_unprepared(&format!(
            "GRANT SELECT ON seaql_migrations TO {role}; \
             REVOKE CREATE ON SCHEMA public FROM PUBLIC"
        ))
        .await
        .unwrap();
    let after = migrator::status::<Migrator, _>(reader.connection()).await;
    reader.close().await.unwrap();
    admin
        .execute_unprepared(&format!("DROP OWNED BY {role}; DROP ROLE {role}"))
        .await
        .unwrap();

    let before = before.unwrap();
    assert_eq!(before.pending.len(), 3, "nothing applied yet");
    assert!(after.unwrap().is_up_to_date());
}

#[tokio::test]
async fn status_on_an_empty_database_does_not_create_the_migrations_table() {
    let db = TestDatabase::empty(TestBackend::Postgres).await;

    let status = migrator::status::<Migrator, _>(db.connection())
        .await
        .unwrap();

    assert_eq!(status.pending.len(), 3);
    assert!(!table_exists(db.connection(), "seaql_migrations").await);
}

#[tokio::test]
async fn connection_failures_say_which_and_never_show_the_password() {
    let cluster = TestCluster::start_with_password("s3cret-pw");
    let good = url::Url::parse(&cluster.admin_url()).unwrap();
    let with = |edit: &dyn Fn(&mut url::Url)| {
        let mut url = good.clone();
        edit(&mut url);
        url.to_string()
    };
    let cases: Vec<(String, ConnectFailure)> = vec![
        (
            with(&|u| u.set_password(Some("wrong-s3cret")).unwrap()),
            ConnectFailure::Authentication,
        ),
        (
            with(&|u| u.set_path("/no_such_db")),
            ConnectFailure::UnknownDatabase,
        ),
        (
            with(&|u| u.set_port(Some(free_port().unwrap())).unwrap()),
            ConnectFailure::Refused,
        ),
        (
            with(&|u| u.set_host(Some("no-such-host.invalid")).unwrap()),
            ConnectFailure::HostNotFound,
        ),
    ];
    for (url, expected) in cases {
        let mut config = DatabaseConfig::new(DatabaseUrl::parse(url.clone()).unwrap());
        config.connect_deadline = Duration::from_millis(300);

        let err = DatabaseService::connect(&config).await.unwrap_err();

        let message = err.to_string();
        assert!(
            matches!(&err, Error::Connect(e) if e.failure == expected),
            "{url}: {err:?}"
        );
        assert!(!message.contains("s3cret"), "{message}");
        assert!(!message.contains('\n'), "one line: {message}");
    }
    let err = DatabaseConfig::from_lookup(|name| {
        (name == "DATABASE_URL").then(|| "postgres://postgres:s3cret-pw@[::1/x".to_owned())
    })
    .unwrap_err();
    assert!(!err.to_string().contains("s3cret"), "{err}");
    assert!(cluster_accepts(&cluster).await, "the right password works");
}

async fn cluster_accepts(cluster: &TestCluster) -> bool {
    let config = DatabaseConfig::new(DatabaseUrl::parse(cluster.admin_url()).unwrap());
    DatabaseService::connect(&config).await.is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pool_recovers_after_a_server_restart_under_load() {
    let cluster = TestCluster::start();
    let mut config = DatabaseConfig::new(DatabaseUrl::parse(cluster.admin_url()).unwrap());
    config.max_connections = 4;
    config.acquire_timeout = Duration::from_secs(1);
    config.connect_timeout = Duration::from_secs(1);
    config.application_name = "restart-test".into();
    let service = DatabaseService::connect(&config).await.unwrap();
    service
        .apply_migrations(&service::MigratorOptions::default())
        .await
        .unwrap();
    let ada = user::create(
        &service,
        NewUser {
            email: "ada@x.io".into(),
            name: "Ada".into(),
        },
    )
    .await
    .unwrap();

    let load = |service: DatabaseService| async move {
        let mut slowest_failure = Duration::ZERO;
        let mut failures = 0;
        let stop = Instant::now() + Duration::from_secs(6);
        while Instant::now() < stop {
            let started = Instant::now();
            match user::get(&service, ada.id).await {
                Ok(_) => {}
                Err(err) => {
                    assert!(err.is_unavailable(), "an outage is Unavailable: {err:?}");
                    failures += 1;
                    slowest_failure = slowest_failure.max(started.elapsed());
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
        (failures, slowest_failure)
    };
    let workers: Vec<_> = (0..8)
        .map(|_| tokio::spawn(load(service.clone())))
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let cluster = std::sync::Arc::new(cluster);
    let stopping = cluster.clone();
    tokio::task::spawn_blocking(move || stopping.stop())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let restarting = cluster.clone();
    tokio::task::spawn_blocking(move || restarting.restart())
        .await
        .unwrap();

    let mut failures = 0;
    for worker in workers {
        let (worker_failures, slowest) = worker.await.unwrap();
        failures += worker_failures;
        assert!(slowest < Duration::from_secs(3), "failed fast: {slowest:?}");
    }
    assert!(failures > 0, "requests failed while the server was down");
    let recovered = user::get(&service, ada.id).await.unwrap();
    assert_eq!(recovered.email, "ada@x.io");
    let report = service.health().await;
    assert!(report.pool.size <= 4, "{report:?}");
    let sessions = count(
        service.connection(),
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'restart-test'",
    )
    .await;
    assert!(sessions <= 4, "no leaked connections: {sessions}");
}

/// The pool's checkout-ping policy (`ping_after_idle`) after a server restart: connections that
/// sat idle through the restart are dead. Without the ping, the first queries on them fail;
/// with it, each is pinged, found dead and replaced before the query runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_broken_by_a_server_restart_are_replaced_before_use() {
    let cluster = TestCluster::start();
    let never = failures_after_restart(&cluster, None).await;
    assert_eq!(
        never, 4,
        "without the ping every dead connection fails a write"
    );
    let after_idle = failures_after_restart(&cluster, Some(Duration::from_millis(50))).await;
    assert_eq!(after_idle, 0, "idle connections are pinged and replaced");
}

/// Fills a pool of 4 connections, restarts the server, waits past `ping_after_idle` and runs 4
/// writes at once (one per pooled connection); returns how many failed.
async fn failures_after_restart(cluster: &TestCluster, ping_after_idle: Option<Duration>) -> usize {
    let mut config = DatabaseConfig::new(DatabaseUrl::parse(cluster.admin_url()).unwrap());
    config.max_connections = 4;
    config.ping_after_idle = ping_after_idle;
    let service = DatabaseService::connect(&config).await.unwrap();
    service
        .apply_migrations(&service::MigratorOptions::default())
        .await
        .unwrap();
    let email = format!("idle-{}@x.io", ping_after_idle.map_or(0, |d| d.as_millis()));
    let id = user::create(
        &service,
        NewUser {
            email,
            name: "Idle".into(),
        },
    )
    .await
    .unwrap()
    .id;
    let pool = service.connection().get_postgres_connection_pool();
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(pool.acquire().await.unwrap());
    }
    drop(held);
    // Connections go back to the pool after sqlx's own check on release.
    let deadline = Instant::now() + Duration::from_secs(5);
    while pool.num_idle() < 4 {
        assert!(Instant::now() < deadline, "the pool did not fill");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    tokio::task::block_in_place(|| {
        cluster.stop();
        cluster.restart();
    });
    tokio::time::sleep(Duration::from_millis(100)).await;

    // Writes: a read that finds its connection dead is run again on another one.
    let writes: Vec<_> = (0..4)
        .map(|n| {
            let service = service.clone();
            let email = format!(
                "after-{n}-{}@x.io",
                ping_after_idle.map_or(0, |d| d.as_millis())
            );
            tokio::spawn(async move {
                let new = NewUser {
                    email: email.clone(),
                    name: "After".into(),
                };
                (email, user::create(&service, new).await)
            })
        })
        .collect();
    let mut failures = 0;
    for write in writes {
        match write.await.unwrap() {
            (email, Ok(stored)) => assert_eq!(stored.email, email),
            (_, Err(err)) => {
                assert!(
                    err.is_unavailable(),
                    "a dead connection is Unavailable: {err:?}"
                );
                failures += 1;
            }
        }
    }
    assert!(
        user::get(&service, id).await.is_ok(),
        "the pool reconnects either way"
    );
    service.close().await.unwrap();
    failures
}

async fn pool_exhaustion_answers_unavailable_promptly_and_recovers(backend: TestBackend) {
    let db = TestDatabase::new(backend).await;
    let mut config = db.config().clone();
    config.max_connections = 2;
    config.acquire_timeout = Duration::from_millis(300);
    let service = DatabaseService::connect(&config).await.unwrap();
    let first = service.connection().begin().await.unwrap();
    let second = service.connection().begin().await.unwrap();
    let started = Instant::now();

    let err = user::list(&service, 10, None).await.unwrap_err();

    let waited = started.elapsed();
    assert!(err.is_unavailable(), "{err:?}");
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(2),
        "{waited:?}"
    );
    drop((first, second));
    assert!(user::list(&service, 10, None).await.is_ok());
}

async fn hostile_input_is_rejected_or_stored_exactly(backend: TestBackend) {
    let db = TestDatabase::new(backend).await;
    let conn = db.connection();
    let bystander = user::create(
        conn,
        NewUser {
            email: "bystander@x.io".into(),
            name: "B".into(),
        },
    )
    .await
    .unwrap();
    let stored_exactly = [
        (
            "robert');drop_table\"user\";--@x.io",
            "Robert'); DROP TABLE \"user\"; --",
        ),
        ("o'hara@x.io", "\" OR 1=1 --"),
        ("emoji🦀@例え.jp", "Zoë 🦀 Ünïcødé 名前 اسم"),
        ("back\\slash@x.io", "tab-free back\\slash %_ wildcards"),
        ("pad@x.io", "  surrounding spaces kept  "),
    ];
    for (email, name) in stored_exactly {
        let created = user::create(
            conn,
            NewUser {
                email: email.into(),
                name: name.into(),
            },
        )
        .await
        .unwrap_or_else(|err| panic!("{email:?}: {err:?}"));
        let read = user::get(conn, created.id).await.unwrap();
        assert_eq!(read.email, email.to_lowercase());
        assert_eq!(read.name, name);
        assert_eq!(
            user::find_by_email(conn, email)
                .await
                .unwrap()
                .map(|u| u.id),
            Some(created.id)
        );
    }
    let trimmed = user::create(
        conn,
        NewUser {
            email: "  Trim@X.io\t".into(),
            name: "t".into(),
        },
    )
    .await
    .unwrap();
    assert_eq!(trimmed.email, "trim@x.io");

    let long = "a".repeat(10_000);
    let rejected = [
        NewUser {
            email: format!("{long}@x.io"),
            name: "n".into(),
        },
        NewUser {
            email: "ok@x.io".into(),
            name: long.clone(),
        },
        NewUser {
            email: "nul\0@x.io".into(),
            name: "n".into(),
        },
        NewUser {
            email: "nul@x.io".into(),
            name: "a\0b".into(),
        },
        NewUser {
            email: "line\nbreak@x.io".into(),
            name: "n".into(),
        },
        NewUser {
            email: "ok2@x.io".into(),
            name: "\u{1b}[31mred".into(),
        },
    ];
    for input in rejected {
        let err = user::create(conn, input.clone()).await.unwrap_err();
        assert!(
            matches!(err, Error::Validation { .. }),
            "{input:?}: {err:?}"
        );
    }
    let err = user::update(
        conn,
        bystander.id,
        UserChanges {
            name: Some("x".repeat(10_001)),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::Validation { .. }), "{err:?}");

    // A JSON string with a lone UTF-16 surrogate never becomes a Rust string to store.
    assert!(serde_json::from_str::<String>(r#""\ud800""#).is_err());

    assert_eq!(
        user::get(conn, bystander.id).await.unwrap(),
        bystander,
        "no other row changed"
    );
    let all = user::list(conn, 100, None).await.unwrap();
    assert_eq!(
        all.users.len(),
        1 + 5 + 1,
        "table intact, nothing else written"
    );
}

/// The session holding the lock is terminated between two steps (as a server restart or an
/// administrator's `pg_terminate_backend` would): the next step must not run on the
/// replacement session, which does not hold the lock.
#[tokio::test]
async fn a_replaced_lock_session_stops_the_run_before_the_next_step() {
    use migrator::runner::{Backend as _, Postgres};
    use sea_orm::{DbBackend, Statement};
    let db = TestDatabase::new(TestBackend::Postgres).await;
    let conn = sea_orm::Database::connect(db.config().url.expose_secret())
        .await
        .unwrap();
    let run = Postgres::open(&conn, &lock_timeout(Duration::from_secs(5)))
        .await
        .unwrap();
    let terminated = conn
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT pg_terminate_backend($1, 5000)",
            [run.holder_pid().into()],
        ))
        .await
        .unwrap()
        .and_then(|row| row.try_get_by_index::<bool>(0).ok());
    assert_eq!(terminated, Some(true), "the lock session was terminated");
    let mut next_step_ran = false;
    let outcome = run
        .step(async |_| {
            next_step_ran = true;
            Ok(())
        })
        .await;
    run.close().await;
    assert!(
        matches!(outcome, Err(MigrateError::LockLost)),
        "{outcome:?}"
    );
    assert!(!next_step_ran);
    let held = count(
        &conn,
        &format!(
            // This test's database only: migrators of other tests, on other databases of the
            // same server, hold the same key at the same time.
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' \
             AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
             AND ((classid::bigint << 32) | objid::bigint) = {}",
            runner::MIGRATION_LOCK_KEY
        ),
    )
    .await;
    assert_eq!(held, 0, "the lock went with the terminated session");
}
