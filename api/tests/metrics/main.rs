//! `GET /metrics` after real traffic through the API, on PostgreSQL and SQLite: creates, reads,
//! a conflict, invalid input, a 404, an exhausted pool and (PostgreSQL) the database refusing
//! connections. Each scrape is parsed by the Prometheus project's own Python client
//! (`prometheus_client.parser`), and the counters must have moved by exactly what was sent,
//! with no label carrying an email, an id, a path or SQL.
//!
//! The recorder is one per process, so these tests have a binary of their own and take turns
//! ([`TURN`]); each compares a scrape taken before its traffic with one taken after.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod scrape;

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use api::Application;
use reqwest::{Method, StatusCode};
use sea_orm::TransactionTrait;
use serde_json::{Value, json};
use service::{DatabaseConfig, DatabaseService};
use tokio::sync::{Mutex, oneshot};
use tokio::task::JoinHandle;

use scrape::Scrape;
use test_support::{FaultProxy, TestBackend, TestDatabase, TestReplicaPair};

/// One test at a time: the counters are the process's.
static TURN: Mutex<()> = Mutex::const_new(());

/// How long a request waits for a pooled connection before it answers 503.
const ACQUIRE_TIMEOUT: Duration = Duration::from_millis(300);

/// The API over `service`, with `/metrics` on its own address or (`metrics_apart`) on one of
/// its own.
struct Server {
    base: String,
    metrics_url: String,
    http: reqwest::Client,
    /// Every request sent and its answer: `(method, route template, status)` → count.
    sent: BTreeMap<(String, String, String), f64>,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<io::Result<()>>,
}

impl Server {
    async fn start(service: DatabaseService, metrics_apart: bool) -> Self {
        let handle = api::metrics::install_recorder().expect("the Prometheus recorder");
        let app = Application::bind(loopback(), service).await.unwrap();
        let app = if metrics_apart {
            app.with_metrics_on(handle, loopback()).await.unwrap()
        } else {
            app.with_metrics(handle)
        };
        let addr = app.local_addr();
        let metrics_addr = app.metrics_addr().unwrap();
        let (shutdown, signal) = oneshot::channel::<()>();
        let task = tokio::spawn(app.run_until(async {
            let _ = signal.await;
        }));
        Self {
            base: format!("http://{addr}"),
            metrics_url: format!("http://{metrics_addr}/metrics"),
            http: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            sent: BTreeMap::new(),
            shutdown: Some(shutdown),
            task,
        }
    }

    /// Sends `method path` (with `body` as JSON), counts it under `route`, returns the status
    /// and the body.
    async fn send(
        &mut self,
        method: Method,
        path: &str,
        route: &str,
        body: Option<Value>,
    ) -> (StatusCode, String) {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        *self
            .sent
            .entry((
                method.to_string(),
                route.to_owned(),
                status.as_u16().to_string(),
            ))
            .or_default() += 1.0;
        (status, text)
    }

    async fn create(&mut self, email: &str) -> (StatusCode, Value) {
        let body = json!({"email": email, "name": "Someone"});
        let (status, text) = self
            .send(Method::POST, "/users", "/users", Some(body))
            .await;
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn get_user(&mut self, id: i64) -> StatusCode {
        self.send(Method::GET, &format!("/users/{id}"), "/users/{id}", None)
            .await
            .0
    }

    /// Polls `/health` until it answers 200 (at most 10 s).
    async fn wait_until_healthy(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (status, body) = self.send(Method::GET, "/health", "/health", None).await;
            if status == StatusCode::OK {
                return;
            }
            assert!(Instant::now() < deadline, "still unhealthy: {body}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn scrape(&self) -> Scrape {
        let response = self.http.get(&self.metrics_url).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()[reqwest::header::CONTENT_TYPE],
            api::metrics::CONTENT_TYPE
        );
        Scrape::parse(&response.text().await.unwrap())
    }

    async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        tokio::time::timeout(Duration::from_secs(20), self.task)
            .await
            .expect("the server stops")
            .unwrap()
            .unwrap();
    }
}

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// A small pool that gives up on a connection quickly, so an exhausted pool answers soon.
fn small_pool(config: &DatabaseConfig) -> DatabaseConfig {
    let mut config = config.clone();
    config.max_connections = 2;
    config.acquire_timeout = ACQUIRE_TIMEOUT;
    config.connect_timeout = Duration::from_secs(1);
    config
}

/// The `/metrics` acceptance case (see the module documentation).
async fn traffic_moves_the_counters_by_what_was_sent(backend: TestBackend) {
    let _turn = TURN.lock().await;
    // Before anything records: a process records nowhere until its recorder is installed.
    api::metrics::install_recorder().unwrap();
    let b = match backend {
        TestBackend::Postgres => "postgres",
        TestBackend::Sqlite => "sqlite",
    };
    // Nothing applied yet: the service migrates at start-up, as `api --migrate` does. The
    // test database's own service is closed, so the pool gauges are the server's alone.
    let db = TestDatabase::empty(backend).await;
    db.service().close().await.unwrap();
    let proxy = match backend {
        TestBackend::Postgres => Some(FaultProxy::start(db.config()).await),
        TestBackend::Sqlite => None,
    };
    let config = match &proxy {
        Some(proxy) => small_pool(&proxy.config_for(db.config())),
        None => small_pool(db.config()),
    };
    let service = DatabaseService::connect(&config).await.unwrap();
    let pending_before = service.health().await.migrations.unwrap().pending.len();
    assert_eq!(pending_before, 3);
    let mut server = Server::start(service.clone(), false).await;
    let before_migrating = server.scrape().await;
    assert_eq!(before_migrating.value("db_migrations_pending", &[]), 3.0);
    assert_eq!(before_migrating.value("db_migrations_applied", &[]), 0.0);
    service
        .apply_migrations(&service::MigratorOptions::default())
        .await
        .unwrap();
    server.wait_until_healthy().await;
    let before = server.scrape().await;
    server.sent.clear();

    // Creates, a conflict (another letter case), invalid input, reads, a miss, a list, an
    // update, deletes, a path that is not an id, a path that is no route.
    let (status, ada) = server.create("ada@example.com").await;
    assert_eq!(status, StatusCode::CREATED, "{ada}");
    let ada = ada["id"].as_i64().unwrap();
    let (status, grace) = server.create("grace@example.com").await;
    assert_eq!(status, StatusCode::CREATED, "{grace}");
    let grace = grace["id"].as_i64().unwrap();
    assert_eq!(
        server.create("ADA@example.com").await.0,
        StatusCode::CONFLICT
    );
    assert_eq!(
        server.create("ada at example.com").await.0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(server.get_user(ada).await, StatusCode::OK);
    let missing = grace + 1000;
    assert_eq!(server.get_user(missing).await, StatusCode::NOT_FOUND);
    let listed = server
        .send(Method::GET, "/users?limit=10", "/users", None)
        .await;
    assert_eq!(listed.0, StatusCode::OK);
    let path = format!("/users/{grace}");
    let patched = server
        .send(
            Method::PATCH,
            &path,
            "/users/{id}",
            Some(json!({"name": "Grace H."})),
        )
        .await;
    assert_eq!(patched.0, StatusCode::OK, "{}", patched.1);
    for expected in [StatusCode::NO_CONTENT, StatusCode::NOT_FOUND] {
        let deleted = server
            .send(Method::DELETE, &path, "/users/{id}", None)
            .await;
        assert_eq!(deleted.0, expected);
    }
    let not_an_id = server
        .send(Method::GET, "/users/ada@example.com", "/users/{id}", None)
        .await;
    assert_eq!(not_an_id.0, StatusCode::BAD_REQUEST);
    let no_route = server
        .send(Method::GET, "/ada@example.com/secret", "unmatched", None)
        .await;
    assert_eq!(no_route.0, StatusCode::NOT_FOUND);

    // Every connection taken by transactions: the pool is exhausted.
    let taken = [
        service.connection().begin().await.unwrap(),
        service.connection().begin().await.unwrap(),
    ];
    assert_eq!(
        server.get_user(ada).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "exhausted pool"
    );
    let exhausted = server.scrape().await;
    let pool = [("pool", "primary")];
    assert_eq!(exhausted.value("db_pool_connections_in_use", &pool), 2.0);
    assert_eq!(exhausted.value("db_pool_connections_idle", &pool), 0.0);
    assert_eq!(exhausted.value("db_pool_connections_max", &pool), 2.0);
    drop(taken);

    // PostgreSQL: the database refuses connections, then is back.
    let mut refused = 0.0;
    if let Some(proxy) = &proxy {
        proxy.refuse();
        assert_eq!(server.get_user(ada).await, StatusCode::SERVICE_UNAVAILABLE);
        let (status, _) = server.create("edsger@example.com").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        refused = 1.0;
        proxy.forward();
        server.wait_until_healthy().await;
    }
    assert_eq!(server.get_user(ada).await, StatusCode::OK, "recovered");

    let after = server.scrape().await;
    let delta = |name: &str, labels: &[(&str, &str)]| {
        after.value(name, labels) - before.value(name, labels)
    };

    // HTTP: exactly what was sent, by route template, method and status.
    for ((method, route, status), count) in &server.sent {
        let labels = [
            ("method", method.as_str()),
            ("route", route.as_str()),
            ("status", status.as_str()),
        ];
        assert_eq!(
            delta("http_requests_total", &labels),
            *count,
            "{method} {route} {status}"
        );
        assert_eq!(
            delta("http_request_duration_seconds_count", &labels),
            *count,
            "{method} {route} {status}"
        );
    }
    let total: f64 = server.sent.values().sum();
    assert_eq!(
        delta("http_requests_total", &[]),
        total,
        "nothing else counted"
    );

    // Queries that reached the database, by operation: validation refused one create first.
    for (operation, calls) in [
        ("user.create", 3.0 + refused),
        ("user.get", 4.0 + refused),
        ("user.list", 1.0),
        ("user.update", 1.0),
        ("user.delete", 2.0),
    ] {
        let labels = [("operation", operation), ("backend", b)];
        assert_eq!(
            delta("db_query_duration_seconds_count", &labels),
            calls,
            "{operation}"
        );
        assert_eq!(
            after.value(
                "db_query_duration_seconds_bucket",
                &[("le", "+Inf"), labels[0], labels[1]]
            ),
            after.value("db_query_duration_seconds_count", &labels),
            "{operation}: the +Inf bucket holds every call"
        );
    }
    // Errors, by operation and kind; nothing else failed.
    let errors = [
        ("user.create", "conflict", 1.0),
        ("user.create", "validation", 1.0),
        ("user.create", "unavailable", refused),
        ("user.get", "not_found", 1.0),
        ("user.get", "unavailable", 1.0 + refused),
        ("user.delete", "not_found", 1.0),
    ];
    for (operation, kind, count) in errors {
        let labels = [("operation", operation), ("backend", b), ("kind", kind)];
        assert_eq!(
            delta("db_query_errors_total", &labels),
            count,
            "{operation} {kind}"
        );
    }
    let expected_errors: f64 = errors.iter().map(|(_, _, count)| count).sum();
    assert_eq!(delta("db_query_errors_total", &[]), expected_errors);

    // The exhausted pool's wait, where it is measured: the PostgreSQL fast path.
    let wait = [("pool", "primary")];
    match backend {
        TestBackend::Postgres => {
            assert!(delta("db_pool_acquire_wait_seconds_count", &wait) >= 1.0);
            let waited = delta("db_pool_acquire_wait_seconds_sum", &wait);
            assert!(
                waited >= ACQUIRE_TIMEOUT.as_secs_f64() * 0.9,
                "waited {waited} s in all"
            );
        }
        TestBackend::Sqlite => assert_eq!(
            delta("db_pool_acquire_wait_seconds_count", &wait),
            0.0,
            "SeaORM's path checks out where no wait is measured"
        ),
    }

    // Migrations: applied by this process, and what the latest health check found.
    assert_eq!(after.value("db_migrations_applied", &[]), 3.0);
    assert_eq!(after.value("db_migrations_pending", &[]), 0.0);
    assert_eq!(after.value("db_migrations_unknown", &[]), 0.0);
    let took = after.value("db_migration_last_duration_seconds", &[("direction", "up")]);
    assert!(took > 0.0 && took < 60.0, "{took}");

    // Types, and the histograms rendered as histograms (buckets, not quantiles).
    for (family, kind) in [
        ("http_requests", "counter"),
        ("http_request_duration_seconds", "histogram"),
        ("db_query_duration_seconds", "histogram"),
        ("db_query_errors", "counter"),
        ("db_pool_connections_in_use", "gauge"),
        ("db_migrations_applied", "gauge"),
    ] {
        assert_eq!(after.family_type(family), Some(kind), "{family}");
    }
    if backend == TestBackend::Postgres {
        assert_eq!(
            after.family_type("db_pool_acquire_wait_seconds"),
            Some("histogram")
        );
    }

    // No label carries user data: every label is one of a known set, with values from fixed
    // sets, and nothing the clients sent shows anywhere in the text.
    let ids: Vec<String> = [ada, grace, missing]
        .iter()
        .map(ToString::to_string)
        .collect();
    after.assert_no_user_data(
        &["@", "example.com", "ada", "grace", "edsger", "secret"],
        &ids,
    );

    server.stop().await;
}

mod traffic_moves_the_counters_by_what_was_sent {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        super::traffic_moves_the_counters_by_what_was_sent(::test_support::TestBackend::Postgres)
            .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        super::traffic_moves_the_counters_by_what_was_sent(::test_support::TestBackend::Sqlite)
            .await;
    }
}

/// With a metrics address of its own, `/metrics` is served there and not on the API's address,
/// and scrapes are not counted as requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_on_their_own_address_are_not_on_the_api_address() {
    let _turn = TURN.lock().await;
    let db = TestDatabase::new(TestBackend::Sqlite).await;
    let mut server = Server::start(db.service().clone(), true).await;
    assert!(!server.metrics_url.starts_with(&server.base));

    let before = server.scrape().await;
    let (status, _) = server
        .send(Method::GET, "/metrics", "unmatched", None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "not on the API's address");
    let after = server.scrape().await;

    let unmatched = [("route", "unmatched"), ("status", "404")];
    let counted = after.value("http_requests_total", &unmatched)
        - before.value("http_requests_total", &unmatched);
    assert_eq!(counted, 1.0);
    assert_eq!(
        after.value("http_requests_total", &[]) - before.value("http_requests_total", &[]),
        1.0,
        "the two scrapes are not counted"
    );
    server.stop().await;
}

/// A read replica, from its probe: in rotation and its lag; then out of rotation while its
/// replay is paused and the primary writes more than `DB_REPLICA_MAX_LAG`; back once it has
/// caught up. Reads on it wait for its own pool's connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_shows_its_lag_rotation_and_pool() {
    let _turn = TURN.lock().await;
    api::metrics::install_recorder().unwrap();
    let pair = TestReplicaPair::start("app").await;
    let mut config = pair.config();
    config.replica_max_lag = 64 * 1024;
    let service = DatabaseService::connect(&config).await.unwrap();
    let mut server = Server::start(service.clone(), false).await;
    let name = pair.standby_name();
    let replica = [("replica", name.as_str())];
    let pool = [("pool", name.as_str())];
    let in_rotation = async |server: &Server, expected: f64| {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let scrape = server.scrape().await;
            if scrape.value("db_replica_in_rotation", &replica) == expected {
                return scrape;
            }
            assert!(
                Instant::now() < deadline,
                "db_replica_in_rotation never {expected}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    in_rotation(&server, 1.0).await;
    let (status, ada) = server.create("ada@example.com").await;
    assert_eq!(status, StatusCode::CREATED);
    let ada = ada["id"].as_i64().unwrap();
    for _ in 0..5 {
        assert_eq!(server.get_user(ada).await, StatusCode::OK);
    }

    let caught_up = in_rotation(&server, 1.0).await;
    assert!(caught_up.value("db_replica_lag_bytes", &replica) <= 64.0 * 1024.0);
    assert_eq!(caught_up.value("db_pool_connections_max", &pool), 4.0);
    assert!(caught_up.value("db_pool_acquire_wait_seconds_count", &pool) >= 1.0);
    assert_eq!(caught_up.family_type("db_replica_lag_bytes"), Some("gauge"));

    pair.pause_replay().await;
    let many: Vec<service::user::NewUser> = (0..2000)
        .map(|n| service::user::NewUser {
            email: format!("u{n}@example.com"),
            name: "Someone".into(),
        })
        .collect();
    service::user::create_many(&service, &many).await.unwrap();
    let behind = in_rotation(&server, 0.0).await;
    let lag = behind.value("db_replica_lag_bytes", &replica);
    assert!(lag > 64.0 * 1024.0, "{lag}");

    pair.resume_replay().await;
    let back = in_rotation(&server, 1.0).await;
    assert!(back.value("db_replica_lag_bytes", &replica) <= 64.0 * 1024.0);
    server.stop().await;
}
