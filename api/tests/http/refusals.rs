//! What the API answers when the server refuses (what a DBA does for maintenance, what a
//! failover looks like from the client): 503 with `Retry-After` and the generic body on every
//! route, never a 500 and nothing the server said; and 2xx again, without a restart, once the
//! condition clears. The same conditions through the repository:
//! `tests/integration/refusals.rs`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::{Response, StatusCode};
use sea_orm::TransactionTrait;
use serde_json::{Value, json};
use service::{DatabaseConfig, DatabaseUrl};

use crate::binary::{Running, TempDir};
use crate::support::{
    TestServer, assert_outcome_unknown, assert_unavailable, assert_users_unavailable,
    assert_users_unavailable_at, client, id_of, status_and_json,
};
use test_support::{AdminSession, TestBackend, TestCluster, TestDatabase, with_quick_timeouts};

/// How long the API may take to answer 2xx again once a condition clears.
const RECOVERY: Duration = Duration::from_secs(2);

/// Sends `request` until it answers 2xx, at most `within` after the first try; every answer on
/// the way must be a proper 503. Returns the 2xx response and how long it took.
async fn recovers(within: Duration, request: impl Fn() -> reqwest::RequestBuilder) -> Response {
    let started = Instant::now();
    loop {
        let response = request().send().await.unwrap();
        if response.status().is_success() {
            return response;
        }
        assert!(
            started.elapsed() < within,
            "not recovered within {within:?}: {}",
            response.status()
        );
        assert_unavailable(response).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The acceptance case, against the `api` binary: connections disallowed and sessions
/// terminated give 503 with `Retry-After` on every route, and 201 again within 2 s of
/// connections being allowed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_answers_503_with_retry_after_on_every_route_while_connections_are_refused() {
    let db = TestDatabase::new(TestBackend::Postgres).await;
    let dir = TempDir::new();
    let url = db.config().url.expose_secret();
    let mut api = Running::start(
        &dir.0,
        &[],
        &[
            ("DATABASE_URL", &url),
            ("API_ADDR", "127.0.0.1:0"),
            ("DB_ACQUIRE_TIMEOUT", "500ms"),
        ],
    );
    let base = format!("http://{}", api.wait_until_listening());
    let http = client();
    let post = |email: &str| {
        http.post(format!("{base}/users"))
            .json(&json!({"email": email, "name": "Someone"}))
    };
    let response = post("ada@example.com").send().await.unwrap();
    let (status, ada) = status_and_json(response).await;
    assert_eq!(status, StatusCode::CREATED, "{ada}");
    let admin = AdminSession::for_database(&db).await;

    admin.allow_connections(&db.name(), false).await;
    admin.terminate_sessions(&db.name()).await;

    for _ in 0..2 {
        assert_users_unavailable_at(&http, &base, id_of(&ada)).await;
        let health = http.get(format!("{base}/health")).send().await.unwrap();
        assert_unhealthy_without_details(health).await;
    }

    admin.allow_connections(&db.name(), true).await;
    let allowed = Instant::now();

    let created = recovers(RECOVERY, || post("grace@example.com")).await;
    assert_eq!(created.status(), StatusCode::CREATED);
    assert!(allowed.elapsed() < RECOVERY, "{:?}", allowed.elapsed());
    api.signal("TERM");
    let (status, log) = api.wait_for_exit();
    assert!(status.success(), "{status}\n{log}");
    assert!(
        log.contains("database unavailable") && log.contains("(55000:"),
        "the reason is in the log: {log}"
    );
    assert!(!log.contains("internal error"), "{log}");
}

/// `/health` while the database refuses: 503, `Retry-After`, no driver text.
async fn assert_unhealthy_without_details(response: Response) {
    crate::support::assert_retry_after(&response);
    let (status, report) = status_and_json(response).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{report}");
    assert_eq!(
        report,
        json!({"status": "unhealthy", "latency_ms": report["latency_ms"], "migrations": null})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_over_its_connection_limit_answers_503_until_the_limit_is_raised() {
    let cluster = TestCluster::start();
    let admin = AdminSession::connect(&cluster.admin_url()).await;
    admin.execute("CREATE ROLE app LOGIN").await;
    admin.execute("CREATE DATABASE app OWNER app").await;
    // The cluster's URLs name user `postgres`; this one is the role's.
    let url = cluster.url("app").replacen("postgres@", "app@", 1);
    let config = with_quick_timeouts(&DatabaseConfig::new(DatabaseUrl::parse(url).unwrap()));
    let migrator = service::DatabaseService::connect(&config).await.unwrap();
    migrator
        .apply_migrations(&service::MigratorOptions::default())
        .await
        .unwrap();
    migrator.close().await.unwrap();
    let server = TestServer::start(&config).await;
    let ada = server.create_user("ada@example.com", "Ada").await;
    // Both sessions of the pool busy, and the role limited to them: the pool must grow for the
    // next request, and the server refuses.
    let first = server.service.connection().begin().await.unwrap();
    let second = server.service.connection().begin().await.unwrap();
    admin.set_connection_limit("app", Some(2)).await;
    // An idle session the pool opened besides (a checkout while another returned) goes too.
    admin
        .execute(
            "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity \
             WHERE usename = 'app' AND state = 'idle'",
        )
        .await;
    admin.wait_for_sessions_of("app", 2).await;

    assert_users_unavailable(&server, id_of(&ada)).await;

    admin.set_connection_limit("app", None).await;

    let path = server.url(&format!("/users/{}", id_of(&ada)));
    let read = recovers(RECOVERY, || server.client.get(&path)).await;
    assert_eq!(read.json::<Value>().await.unwrap(), ada);
    drop((first, second));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_to_a_read_only_database_answer_503_and_succeed_again_once_it_is_writable() {
    let db = TestDatabase::new(TestBackend::Postgres).await;
    let server = TestServer::start(&with_quick_timeouts(db.config())).await;
    let ada = server.create_user("ada@example.com", "Ada").await;
    let bob = server.create_user("bob@example.com", "Bob").await;
    let admin = AdminSession::for_database(&db).await;
    let (ada_path, bob_path) = (
        server.url(&format!("/users/{}", id_of(&ada))),
        server.url(&format!("/users/{}", id_of(&bob))),
    );
    let grace = json!({"email": "grace@example.com", "name": "Grace"});
    let rename = json!({"name": "Ada L."});

    admin.set_read_only(&db.name(), true).await;
    admin.terminate_sessions(&db.name()).await;

    // Reads are served (once the terminated sessions are replaced) …
    let read = recovers(RECOVERY, || server.client.get(&ada_path)).await;
    assert_eq!(read.json::<Value>().await.unwrap(), ada);
    // … writes answer 503, and nothing says "read-only" to the client.
    assert_unavailable(server.post("/users", &grace).await).await;
    assert_unavailable(
        server
            .client
            .patch(&ada_path)
            .json(&rename)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_unavailable(server.client.delete(&bob_path).send().await.unwrap()).await;

    admin.set_read_only(&db.name(), false).await;

    // No session terminated: the service replaces its read-only sessions itself.
    let created = recovers(RECOVERY, || {
        server.client.post(server.url("/users")).json(&grace)
    })
    .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let updated = recovers(RECOVERY, || server.client.patch(&ada_path).json(&rename)).await;
    assert_eq!(updated.json::<Value>().await.unwrap()["name"], "Ada L.");
    let deleted = recovers(RECOVERY, || server.client.delete(&bob_path)).await;
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_renamed_away_answers_503_until_it_is_renamed_back() {
    let db = TestDatabase::new(TestBackend::Postgres).await;
    let server = TestServer::start(&with_quick_timeouts(db.config())).await;
    let ada = server.create_user("ada@example.com", "Ada").await;
    let admin = AdminSession::for_database(&db).await;
    // Still named like a test database, so a later run sweeps it if this test dies here.
    let away = format!("{}_away", db.name());

    admin.rename_database(&db.name(), &away).await;

    for _ in 0..2 {
        assert_users_unavailable(&server, id_of(&ada)).await;
    }

    admin.rename_database(&away, &db.name()).await;

    let path = server.url(&format!("/users/{}", id_of(&ada)));
    let read = recovers(RECOVERY, || server.client.get(&path)).await;
    assert_eq!(read.json::<Value>().await.unwrap(), ada);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_restart_answers_503_to_requests_in_flight_and_while_down_then_2xx() {
    let cluster = Arc::new(TestCluster::start());
    // Restarted once with prepared transactions allowed (for the lock below).
    let admin = AdminSession::connect(&cluster.admin_url()).await;
    admin
        .execute("ALTER SYSTEM SET max_prepared_transactions = 2")
        .await;
    let restarting = cluster.clone();
    tokio::task::spawn_blocking(move || {
        restarting.stop();
        restarting.restart();
    })
    .await
    .unwrap();
    let config = with_quick_timeouts(&DatabaseConfig::new(
        DatabaseUrl::parse(cluster.admin_url()).unwrap(),
    ));
    let migrator = service::DatabaseService::connect(&config).await.unwrap();
    migrator
        .apply_migrations(&service::MigratorOptions::default())
        .await
        .unwrap();
    migrator.close().await.unwrap();
    let server = Arc::new(TestServer::start(&config).await);
    let ada = server.create_user("ada@example.com", "Ada").await;
    let path = server.url(&format!("/users/{}", id_of(&ada)));
    // A request in flight: its update waits for a row lock that a prepared transaction holds
    // (a session holding it would end with the shutdown too, and might release the update
    // first).
    let admin = AdminSession::connect(&cluster.admin_url()).await;
    admin
        .execute(&format!(
            r#"BEGIN; SELECT 1 FROM "user" WHERE id = {} FOR UPDATE; PREPARE TRANSACTION 'hold'"#,
            id_of(&ada)
        ))
        .await;
    let in_flight = tokio::spawn({
        let (server, path) = (server.clone(), path.clone());
        async move {
            server
                .client
                .patch(&path)
                .json(&json!({"name": "Ada L."}))
                .send()
                .await
                .unwrap()
        }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while admin
        .count("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")
        .await
        == 0
    {
        assert!(Instant::now() < deadline, "the update never waited");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let stopping = cluster.clone();
    tokio::task::spawn_blocking(move || stopping.stop())
        .await
        .unwrap();

    // The update had been sent: whether it was applied cannot be known, and the answer says so.
    assert_outcome_unknown(in_flight.await.unwrap()).await;
    assert_users_unavailable(&server, id_of(&ada)).await;

    let restarting = cluster.clone();
    tokio::task::spawn_blocking(move || restarting.restart())
        .await
        .unwrap();

    let read = recovers(RECOVERY, || server.client.get(&path)).await;
    assert_eq!(
        read.json::<Value>().await.unwrap(),
        ada,
        "the update in flight was not applied"
    );
    AdminSession::connect(&cluster.admin_url())
        .await
        .execute("ROLLBACK PREPARED 'hold'")
        .await;
}
