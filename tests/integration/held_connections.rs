//! The fast path's held connections (`DB_CONNECTION_HOLD`): one round trip per statement,
//! without losing what the pool guarantees — a cancelled statement never leaves its connection
//! to the next caller, a server restart costs no wrong answer, SeaORM's path is never starved,
//! the pool never grows past its size, and lifetimes and idle timeouts still recycle.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, Database, DbBackend, Statement, TransactionTrait};
use service::user::{self, User};
use service::{DatabaseConfig, DatabaseService, DatabaseUrl, Error};
use test_support::{TestBackend, TestCluster, TestDatabase, new_user, scalar};

/// A service on `url` with `max` connections, named `app` in `pg_stat_activity`.
async fn service(url: &str, max: u32, app: &str) -> DatabaseService {
    let mut config = DatabaseConfig::new(DatabaseUrl::parse(url).unwrap());
    config.max_connections = max;
    config.acquire_timeout = Duration::from_secs(3);
    config.application_name = app.to_owned();
    DatabaseService::connect(&config).await.unwrap()
}

async fn seed(db: &DatabaseService, count: usize) -> Vec<User> {
    let mut users = Vec::new();
    for n in 0..count {
        users.push(
            user::create(&db, new_user(&format!("seed{n}@x.io"), "Held"))
                .await
                .unwrap(),
        );
    }
    users
}

/// Waits until every connection of the service's pool is back in it, idle.
async fn wait_until_all_idle(db: &DatabaseService) {
    let pool = db.connection().get_postgres_connection_pool();
    let deadline = Instant::now() + Duration::from_secs(2);
    while pool.num_idle() != pool.size() as usize {
        assert!(
            Instant::now() < deadline,
            "connections still out of the pool: {} of {}",
            pool.size() as usize - pool.num_idle(),
            pool.size()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn a_statement_cancelled_part_way_never_leaves_its_connection_to_the_next_caller() {
    let test_db = TestDatabase::new(TestBackend::Postgres).await;
    let db = service(&test_db.config().url.expose_secret(), 2, "held-cancel").await;
    let users = seed(&db, 20).await;
    // An uncommitted insert of the same email makes the next one wait on the unique index.
    let blocker = test_db.connection().begin().await.unwrap();
    user::create(&blocker, new_user("blocked@x.io", "Held"))
        .await
        .unwrap();

    let cancelled = tokio::time::timeout(
        Duration::from_millis(200),
        user::create(&db, new_user("blocked@x.io", "Held")),
    )
    .await;
    assert!(
        cancelled.is_err(),
        "the insert was waiting and got cancelled"
    );
    blocker.rollback().await.unwrap();

    // The connection that ran it answers the abandoned insert first: a caller handed it as it
    // was would read that answer. Every read must get the user it asked for.
    for round in 0..5 {
        for expected in &users {
            assert_eq!(
                &user::get(&db, expected.id).await.unwrap(),
                expected,
                "round {round}"
            );
        }
    }
    wait_until_all_idle(&db).await;
    assert!(db.health().await.pool.size <= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_restart_under_load_costs_no_wrong_answer_and_writes_fail_at_most_once_per_connection()
 {
    const MAX: u32 = 4;
    let cluster = TestCluster::start();
    let db = service(&cluster.admin_url(), MAX, "held-restart").await;
    db.apply_migrations(&service::MigratorOptions::default())
        .await
        .unwrap();
    let users = Arc::new(seed(&db, 50).await);
    let running = Arc::new(AtomicBool::new(true));
    let back_at: Arc<std::sync::Mutex<Option<Instant>>> = Arc::default();

    let workers: Vec<_> = (0..8)
        .map(|worker| {
            let (db, users, running, back_at) =
                (db.clone(), users.clone(), running.clone(), back_at.clone());
            tokio::spawn(async move {
                let (mut read_errors_after, mut write_errors_after) = (0, 0);
                let mut created = Vec::new();
                let mut n = 0;
                while running.load(Ordering::Relaxed) {
                    n += 1;
                    let started = Instant::now();
                    let after_restart =
                        |at: Instant| back_at.lock().unwrap().is_some_and(|b| at > b);
                    let expected = &users[fastrand::usize(..users.len())];
                    match user::get(&db, expected.id).await {
                        Ok(found) => assert_eq!(&found, expected, "a wrong answer"),
                        Err(err) => {
                            assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
                            if after_restart(started) {
                                read_errors_after += 1;
                            }
                        }
                    }
                    let email = format!("w{worker}-{n}@x.io");
                    let started = Instant::now();
                    match user::create(&db, new_user(&email, "Held")).await {
                        Ok(stored) => {
                            assert_eq!(stored.email, email, "a wrong answer");
                            created.push(email);
                        }
                        Err(err) => {
                            // A write whose held connection died under it may have been sent.
                            assert!(
                                matches!(
                                    err,
                                    Error::Unavailable { .. } | Error::CommitUnknown { .. }
                                ),
                                "{err:?}"
                            );
                            if after_restart(started) {
                                write_errors_after += 1;
                            }
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                    }
                }
                (read_errors_after, write_errors_after, created)
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_millis(500)).await;
    tokio::task::block_in_place(|| {
        cluster.stop();
        std::thread::sleep(Duration::from_millis(300));
        cluster.restart();
    });
    *back_at.lock().unwrap() = Some(Instant::now());
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Every session of the service terminated while connections are held: reads that find
    // theirs dead are run again, writes fail once per connection.
    let admin = Database::connect(cluster.admin_url()).await.unwrap();
    let terminated = scalar(
        &admin,
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE application_name = 'held-restart'",
    )
    .await;
    assert!(terminated > 0);
    tokio::time::sleep(Duration::from_secs(1)).await;
    running.store(false, Ordering::Relaxed);

    let (mut read_errors, mut write_errors, mut created) = (0, 0, Vec::new());
    for worker in workers {
        let (reads, writes, emails) = worker.await.unwrap();
        read_errors += reads;
        write_errors += writes;
        created.extend(emails);
    }
    assert_eq!(
        read_errors, 0,
        "reads after the restart are served (a lost connection is retried)"
    );
    assert!(
        write_errors <= MAX as usize,
        "{write_errors} writes failed after the restart, for {MAX} terminated sessions"
    );
    let check = Database::connect(cluster.admin_url()).await.unwrap();
    let stored = scalar(
        &check,
        r#"SELECT count(*) FROM "user" WHERE email LIKE 'w%'"#,
    )
    .await;
    assert!(
        stored >= created.len() as i64,
        "every acknowledged write is stored"
    );
    let distinct = scalar(&check, r#"SELECT count(DISTINCT email) FROM "user""#).await;
    assert_eq!(
        distinct,
        scalar(&check, r#"SELECT count(*) FROM "user""#).await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seaorm_transactions_and_health_keep_working_while_the_fast_path_saturates_the_pool() {
    const MAX: u32 = 4;
    let test_db = TestDatabase::new(TestBackend::Postgres).await;
    let db = service(&test_db.config().url.expose_secret(), MAX, "held-saturate").await;
    let users = Arc::new(seed(&db, 50).await);
    let changed = user::create(&db, new_user("changed@x.io", "Held"))
        .await
        .unwrap();
    let running = Arc::new(AtomicBool::new(true));
    let readers: Vec<_> = (0..8)
        .map(|_| {
            let (db, users, running) = (db.clone(), users.clone(), running.clone());
            tokio::spawn(async move {
                let mut reads = 0u64;
                while running.load(Ordering::Relaxed) {
                    let expected = &users[fastrand::usize(..users.len())];
                    assert_eq!(&user::get(&db, expected.id).await.unwrap(), expected);
                    reads += 1;
                }
                reads
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;

    let stats = test_db.connection();
    let mut worst = Duration::ZERO;
    let mut backends = 0;
    for n in 0..20 {
        let started = Instant::now();
        let tx = db.connection().begin().await.unwrap();
        tx.execute_unprepared(&format!(
            r#"UPDATE "user" SET name = 'tx {n}' WHERE id = {}"#,
            changed.id
        ))
        .await
        .unwrap();
        tx.commit().await.unwrap();
        let report = db.health().await;
        assert!(report.can_serve(), "{report:?}");
        assert!(report.pool.size <= MAX, "{report:?}");
        worst = worst.max(started.elapsed());
        backends = backends.max(
            scalar(
                stats,
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'held-saturate'",
            )
            .await,
        );
    }
    running.store(false, Ordering::Relaxed);
    let mut reads = 0;
    for reader in readers {
        reads += reader.await.unwrap();
    }
    assert!(reads > 1000, "the readers ran ({reads})");
    assert!(
        worst < Duration::from_secs(1),
        "a transaction and a health check took {worst:?}"
    );
    assert!(
        backends <= i64::from(MAX),
        "{backends} sessions for a pool of {MAX}"
    );
    wait_until_all_idle(&db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_lifetime_and_idle_timeout_still_recycle_held_connections() {
    let test_db = TestDatabase::new(TestBackend::Postgres).await;
    let mut config = test_db.config().clone();
    config.max_connections = 2;
    config.max_lifetime = Some(Duration::from_millis(300));
    config.idle_timeout = Some(Duration::from_millis(300));
    config.application_name = "held-recycle".into();
    let db = DatabaseService::connect(&config).await.unwrap();
    let users = seed(&db, 5).await;

    let mut pids = HashSet::new();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(2) {
        for expected in &users {
            assert_eq!(&user::get(&db, expected.id).await.unwrap(), expected);
        }
        let row = test_db
            .connection()
            .query_all_raw(Statement::from_string(
                DbBackend::Postgres,
                "SELECT pid FROM pg_stat_activity WHERE application_name = 'held-recycle'",
            ))
            .await
            .unwrap();
        pids.extend(row.iter().map(|r| r.try_get_by_index::<i32>(0).unwrap()));
    }
    assert!(
        pids.len() > 2,
        "connections older than DB_MAX_LIFETIME were replaced: {pids:?}"
    );

    let deadline = Instant::now() + Duration::from_secs(5);
    while db.health().await.pool.size > 1 {
        assert!(
            Instant::now() < deadline,
            "idle connections were not closed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn connections_are_held_by_default_and_given_back_at_once_with_the_hold_off() {
    let test_db = TestDatabase::new(TestBackend::Postgres).await;
    for (hold, held_after_a_read) in [(Some(Duration::from_secs(5)), true), (None, false)] {
        let mut config = test_db.config().clone();
        config.max_connections = 1;
        config.connection_hold = hold;
        let db = DatabaseService::connect(&config).await.unwrap();
        let ada = user::create(&db, new_user("ada@x.io", "Held")).await;
        let id = match ada {
            Ok(ada) => ada.id,
            Err(_) => {
                user::find_by_email(&db, "ada@x.io")
                    .await
                    .unwrap()
                    .unwrap()
                    .id
            }
        };
        user::get(&db, id).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let pool = db.connection().get_postgres_connection_pool();
        assert_eq!(
            pool.num_idle() == 0,
            held_after_a_read,
            "hold {hold:?}: {} idle of {}",
            pool.num_idle(),
            pool.size()
        );
        db.close().await.unwrap();
    }
    assert_eq!(
        DatabaseConfig::new(DatabaseUrl::parse("postgres://h/db").unwrap()).connection_hold,
        Some(Duration::from_millis(10)),
        "on by default"
    );
}
