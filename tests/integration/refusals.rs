//! What a running service answers when the server refuses (what a DBA does for maintenance,
//! what a failover looks like from the client), through the repository: every refusal is
//! `Error::Unavailable`, never `Error::Database`, and the service recovers by itself once the
//! condition clears. The same conditions through the API: `api/tests/http/refusals.rs`.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sea_orm::TransactionTrait;
use sea_orm::sqlx::Connection;
use sea_orm::sqlx::postgres::PgConnection;
use service::user::{self, UserChanges};
use service::{DatabaseConfig, DatabaseService, DatabaseUrl, Error};
use test_support::{
    AdminSession, TestBackend, TestCluster, TestDatabase, new_user, with_quick_timeouts,
};

/// How long the service may take to serve again once a condition clears.
const RECOVERY: Duration = Duration::from_secs(2);

/// The reason of an `Error::Unavailable`; fails on anything else.
fn unavailable_reason<T: std::fmt::Debug>(result: service::Result<T>) -> String {
    match result {
        Err(Error::Unavailable { reason, .. }) => reason,
        other => panic!("expected Error::Unavailable, got {other:?}"),
    }
}

/// Runs `attempt` until it succeeds, at most `within` after the first try; every failure on
/// the way must be `Error::Unavailable`. Returns the value and how long it took.
async fn recovers<T, F, Fut>(within: Duration, mut attempt: F) -> (T, Duration)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = service::Result<T>>,
{
    let started = Instant::now();
    loop {
        match attempt().await {
            Ok(value) => return (value, started.elapsed()),
            Err(err) => {
                assert!(err.is_unavailable(), "only outages on the way: {err:?}");
                assert!(
                    started.elapsed() < within,
                    "not recovered within {within:?}: {err}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

/// Collects the reasons of `count` rounds of a read and a write, all of which must be
/// `Error::Unavailable`.
async fn refused_reasons(service: &DatabaseService, id: i32, rounds: usize) -> Vec<String> {
    let mut reasons = Vec::new();
    for round in 0..rounds {
        reasons.push(unavailable_reason(user::get(&service, id).await));
        reasons.push(unavailable_reason(user::get(&service, id).await));
        reasons.push(unavailable_reason(
            user::create(
                &service,
                new_user(&format!("refused-{round}@x.io"), "Someone"),
            )
            .await,
        ));
    }
    reasons
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_connections_are_unavailable_until_they_are_allowed_again() {
    let db = TestDatabase::new(TestBackend::Postgres).await;
    let service = DatabaseService::connect(&with_quick_timeouts(db.config()))
        .await
        .unwrap();
    let ada = user::create(&service, new_user("ada@x.io", "Someone"))
        .await
        .unwrap();
    let admin = AdminSession::for_database(&db).await;

    admin.allow_connections(&db.name(), false).await;
    admin.terminate_sessions(&db.name()).await;

    // The pooled sessions are dead (57P01 or a closed socket), then every new one is refused
    // (55000): all of it is an outage.
    let reasons = refused_reasons(&service, ada.id, 4).await;
    assert!(
        reasons
            .iter()
            .any(|r| r.starts_with("the database is not accepting connections (55000:")),
        "{reasons:#?}"
    );

    admin.allow_connections(&db.name(), true).await;

    let (read, _) = recovers(RECOVERY, || user::get(&service, ada.id)).await;
    assert_eq!(read, ada);
    user::create(&service, new_user("grace@x.io", "Someone"))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_over_its_connection_limit_is_unavailable_while_the_pool_grows_until_the_limit_is_raised()
 {
    let cluster = TestCluster::start();
    let admin = AdminSession::connect(&cluster.admin_url()).await;
    admin.execute("CREATE ROLE app LOGIN").await;
    admin.execute("CREATE DATABASE app OWNER app").await;
    let mut app_url = url::Url::parse(&cluster.url("app")).unwrap();
    app_url.set_username("app").unwrap();
    let app_url = app_url.to_string();
    let config = with_quick_timeouts(&DatabaseConfig::new(
        DatabaseUrl::parse(app_url.clone()).unwrap(),
    ));
    let migrator = DatabaseService::connect(&config).await.unwrap();
    migrator
        .apply_migrations(&service::MigratorOptions::default())
        .await
        .unwrap();
    let ada = user::create(&migrator, new_user("ada@x.io", "Someone"))
        .await
        .unwrap();
    migrator.close().await.unwrap();
    let service = DatabaseService::connect(&config).await.unwrap();
    // Both sessions of the pool busy, and the role limited to them: the pool must grow for the
    // next statement, and the server refuses.
    let first = service.connection().begin().await.unwrap();
    let second = service.connection().begin().await.unwrap();
    admin.set_connection_limit("app", Some(2)).await;
    // An idle session the pool opened besides (a checkout while another returned) goes too.
    admin
        .execute(
            "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity \
             WHERE usename = 'app' AND state = 'idle'",
        )
        .await;
    admin.wait_for_sessions_of("app", 2).await;

    // sqlx retries a refused 53300 until the acquire timeout, then gives up. (A session
    // terminated above, if the pool had one idle, fails its statement first.)
    let mut waited = None;
    for _ in 0..3 {
        let started = Instant::now();
        let reason = unavailable_reason(user::get(&service, ada.id).await);
        if reason == "timed out waiting for a pooled connection" {
            waited = Some(started.elapsed());
            break;
        }
    }
    let waited = waited.expect("the pool could not grow");
    assert!(waited >= config.acquire_timeout, "{waited:?}");
    // What the server says to a third session of the role, asked directly.
    let refused = PgConnection::connect(&app_url).await.unwrap_err();
    let code = refused.as_database_error().and_then(|e| e.code());
    assert_eq!(code.as_deref(), Some("53300"), "{refused}");

    admin.set_connection_limit("app", None).await;

    let (read, _) = recovers(RECOVERY, || user::get(&service, ada.id)).await;
    assert_eq!(read, ada);
    assert!(service.health().await.pool.size >= 3, "the pool grew");
    drop((first, second));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_to_a_read_only_database_are_unavailable_and_resume_once_it_is_writable() {
    let db = TestDatabase::new(TestBackend::Postgres).await;
    let service = DatabaseService::connect(&with_quick_timeouts(db.config()))
        .await
        .unwrap();
    let conn = &service;
    let ada = user::create(conn, new_user("ada@x.io", "Someone"))
        .await
        .unwrap();
    let bob = user::create(conn, new_user("bob@x.io", "Someone"))
        .await
        .unwrap();
    let admin = AdminSession::for_database(&db).await;

    admin.set_read_only(&db.name(), true).await;
    admin.terminate_sessions(&db.name()).await;

    // Reads are served (once the terminated sessions are replaced by read-only ones) …
    let (read, _) = recovers(RECOVERY, || user::get(conn, ada.id)).await;
    assert_eq!(read, ada);
    // … writes are refused, as an outage that says why.
    let reasons = [
        unavailable_reason(user::create(conn, new_user("grace@x.io", "Someone")).await),
        unavailable_reason(
            user::update(
                conn,
                ada.id,
                UserChanges {
                    name: Some("Ada L.".into()),
                    ..UserChanges::default()
                },
            )
            .await,
        ),
        unavailable_reason(user::delete(conn, bob.id).await),
    ];
    for reason in &reasons {
        assert!(
            reason.starts_with("the server is read-only") && reason.contains("(25006:"),
            "{reason}"
        );
    }

    admin.set_read_only(&db.name(), false).await;

    // No session is terminated this time: the service replaces its read-only sessions itself.
    let (created, _) = recovers(RECOVERY, || {
        user::create(conn, new_user("grace@x.io", "Someone"))
    })
    .await;
    assert_eq!(created.email, "grace@x.io");
    let changes = UserChanges {
        name: Some("Ada L.".into()),
        ..UserChanges::default()
    };
    let (updated, _) = recovers(RECOVERY, || user::update(conn, ada.id, changes.clone())).await;
    assert_eq!(updated.name, "Ada L.");
    recovers(RECOVERY, || user::delete(conn, bob.id)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_renamed_away_is_unavailable_until_it_is_renamed_back() {
    let db = TestDatabase::new(TestBackend::Postgres).await;
    let service = DatabaseService::connect(&with_quick_timeouts(db.config()))
        .await
        .unwrap();
    let ada = user::create(&service, new_user("ada@x.io", "Someone"))
        .await
        .unwrap();
    let admin = AdminSession::for_database(&db).await;
    // Still named like a test database, so a later run sweeps it if this test dies here.
    let away = format!("{}_away", db.name());

    admin.rename_database(&db.name(), &away).await;

    let reasons = refused_reasons(&service, ada.id, 4).await;
    assert!(
        reasons
            .iter()
            .any(|r| r.starts_with("the database does not exist") && r.contains("(3D000:")),
        "{reasons:#?}"
    );

    admin.rename_database(&away, &db.name()).await;

    let (read, _) = recovers(RECOVERY, || user::get(&service, ada.id)).await;
    assert_eq!(read, ada);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_restart_ends_statements_in_flight_refuses_while_down_and_the_pool_recovers() {
    let cluster = Arc::new(TestCluster::start());
    allow_prepared_transactions(&cluster).await;
    let config = with_quick_timeouts(&DatabaseConfig::new(
        DatabaseUrl::parse(cluster.admin_url()).unwrap(),
    ));
    let service = DatabaseService::connect(&config).await.unwrap();
    service
        .apply_migrations(&service::MigratorOptions::default())
        .await
        .unwrap();
    let ada = user::create(&service, new_user("ada@x.io", "Someone"))
        .await
        .unwrap();
    // An update in flight: it waits for a row lock that a prepared transaction holds (a
    // session holding it would end with the shutdown too, and might release the update first).
    let admin = AdminSession::connect(&cluster.admin_url()).await;
    admin
        .execute(&format!(
            r#"BEGIN; SELECT 1 FROM "user" WHERE id = {} FOR UPDATE; PREPARE TRANSACTION 'hold'"#,
            ada.id
        ))
        .await;
    let in_flight = tokio::spawn({
        let service = service.clone();
        async move {
            user::update(
                &service,
                ada.id,
                UserChanges {
                    name: Some("Ada L.".into()),
                    ..UserChanges::default()
                },
            )
            .await
        }
    });
    wait_for_lock_waiter(&admin).await;

    let stopping = cluster.clone();
    tokio::task::spawn_blocking(move || stopping.stop())
        .await
        .unwrap();

    // The write in flight is ended by the shutdown (57P01): it had been sent, so the service
    // cannot tell whether it was applied, says so, and does not send it again …
    match in_flight.await.unwrap() {
        Err(Error::CommitUnknown { reason, .. }) => assert!(reason.contains("(57P01:"), "{reason}"),
        other => panic!("expected Error::CommitUnknown, got {other:?}"),
    }
    // … and while the server is down, nothing is served.
    unavailable_reason(user::get(&service, ada.id).await);
    unavailable_reason(user::create(&service, new_user("grace@x.io", "Someone")).await);

    let restarting = cluster.clone();
    tokio::task::spawn_blocking(move || restarting.restart())
        .await
        .unwrap();

    let (read, _) = recovers(RECOVERY, || user::get(&service, ada.id)).await;
    assert_eq!(read.name, ada.name, "the update in flight was not applied");
    AdminSession::connect(&cluster.admin_url())
        .await
        .execute("ROLLBACK PREPARED 'hold'")
        .await;
}

/// Restarts `cluster` with `max_prepared_transactions` above 0.
async fn allow_prepared_transactions(cluster: &Arc<TestCluster>) {
    AdminSession::connect(&cluster.admin_url())
        .await
        .execute("ALTER SYSTEM SET max_prepared_transactions = 2")
        .await;
    let restarting = cluster.clone();
    tokio::task::spawn_blocking(move || {
        restarting.stop();
        restarting.restart();
    })
    .await
    .unwrap();
}

/// Waits (at most 10 s) until a session of the cluster waits for a lock.
async fn wait_for_lock_waiter(admin: &AdminSession) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while admin
        .count("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")
        .await
        == 0
    {
        assert!(Instant::now() < deadline, "the update never waited");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
