//! `DatabaseService::connect`: retrying while the server starts, giving up after the deadline,
//! failing at once when waiting cannot help.

use std::time::{Duration, Instant};

use service::{ConnectFailure, DatabaseConfig, DatabaseService, DatabaseUrl, Error};
use test_support::{FaultProxy, TestBackend, TestDatabase};

#[tokio::test]
async fn connect_waits_for_a_server_that_comes_up_within_the_deadline() {
    let db = TestDatabase::new(TestBackend::Postgres).await;
    let proxy = FaultProxy::start(db.config()).await;
    proxy.refuse();
    let mut config = proxy.config_for(db.config());
    config.connect_deadline = Duration::from_secs(20);
    let started = Instant::now();

    let comes_up = async {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        proxy.forward();
    };
    let (service, ()) = tokio::join!(DatabaseService::connect(&config), comes_up);

    let service = service.expect("connected once the server answered");
    assert!(started.elapsed() >= Duration::from_millis(1500));
    assert!(service.is_ready().await);
}

#[tokio::test]
async fn connect_gives_up_after_the_deadline_with_a_typed_error() {
    let db = TestDatabase::new(TestBackend::Postgres).await;
    let proxy = FaultProxy::start(db.config()).await;
    proxy.refuse();
    let mut config = proxy.config_for(db.config());
    config.connect_deadline = Duration::from_secs(1);
    let started = Instant::now();

    let err = DatabaseService::connect(&config).await.unwrap_err();

    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_secs(1) && elapsed < Duration::from_secs(4),
        "{elapsed:?}"
    );
    match &err {
        Error::Connect(e) => assert!(e.failure.is_transient(), "{err}"),
        other => panic!("expected Error::Connect, got {other:?}"),
    }
    assert!(err.is_unavailable());
}

#[tokio::test]
async fn connect_fails_at_once_on_an_unknown_database_without_showing_the_password() {
    let db = TestDatabase::new(TestBackend::Postgres).await;
    let mut url = url::Url::parse(&db.config().url.expose_secret()).unwrap();
    url.set_path("/no_such_database_here");
    url.set_password(Some("hunter2-secret")).unwrap();
    let mut config = DatabaseConfig::new(DatabaseUrl::parse(url.to_string()).unwrap());
    config.connect_deadline = Duration::from_secs(30);
    let started = Instant::now();

    let err = DatabaseService::connect(&config).await.unwrap_err();

    assert!(started.elapsed() < Duration::from_secs(5), "no retrying");
    assert!(
        matches!(&err, Error::Connect(e) if e.failure == ConnectFailure::UnknownDatabase),
        "{err:?}"
    );
    assert!(!err.to_string().contains("hunter2-secret"), "{err}");
    assert!(!format!("{err:?}").contains("hunter2-secret"), "{err:?}");
    assert!(!format!("{config:?}").contains("hunter2-secret"));
}

#[tokio::test]
async fn connect_to_sqlite_in_a_missing_read_only_file_fails_at_once() {
    let path = std::env::temp_dir().join(format!("db_test_missing_{}.sqlite", std::process::id()));
    let config = DatabaseConfig::new(
        DatabaseUrl::parse(format!("sqlite://{}?mode=ro", path.display())).unwrap(),
    );

    let err = DatabaseService::connect(&config).await.unwrap_err();

    assert!(
        matches!(&err, Error::Connect(e) if e.failure == ConnectFailure::CannotOpenFile),
        "{err:?}"
    );
}

#[tokio::test]
async fn services_are_cheap_clones_of_one_pool_and_close_together() {
    let db = TestDatabase::new(TestBackend::Sqlite).await;
    let service = DatabaseService::connect(db.config()).await.unwrap();
    let clone = service.clone();

    clone.close().await.unwrap();

    assert!(
        !service.is_ready().await,
        "closing a clone closes the shared pool"
    );
    let err = service::user::get(&service, 1).await.unwrap_err();
    assert!(err.is_unavailable(), "{err:?}");
}

#[tokio::test]
async fn database_schema_puts_the_tables_and_the_migrations_in_that_schema() {
    use sea_orm::ConnectionTrait;
    let db = TestDatabase::empty(TestBackend::Postgres).await;
    db.connection()
        .execute_unprepared("CREATE SCHEMA orders")
        .await
        .unwrap();
    let mut config = db.config().clone();
    config.schema = Some("orders".into());
    let service = DatabaseService::connect(&config).await.unwrap();

    service
        .apply_migrations(&service::MigratorOptions::default())
        .await
        .unwrap();
    let ada = service::user::create(
        &service,
        service::user::NewUser {
            email: "ada@x.io".into(),
            name: "Ada".into(),
        },
    )
    .await
    .unwrap();

    assert_eq!(
        service.health().await.status,
        service::HealthStatus::Healthy
    );
    let row = db
        .connection()
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT (SELECT count(*) FROM orders.\"user\"), \
                    (SELECT count(*) FROM pg_tables WHERE schemaname = 'public')",
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.try_get_by_index::<i64>(0).unwrap(), 1);
    assert_eq!(
        row.try_get_by_index::<i64>(1).unwrap(),
        0,
        "nothing in public"
    );
    assert_eq!(ada.id, 1);
}

#[tokio::test]
async fn statement_timeout_cancels_a_slow_statement_on_the_server() {
    use sea_orm::ConnectionTrait;
    let db = TestDatabase::new(TestBackend::Postgres).await;
    let mut config = db.config().clone();
    config.statement_timeout = Some(Duration::from_millis(200));
    let service = DatabaseService::connect(&config).await.unwrap();
    let started = Instant::now();

    let err = service
        .connection()
        .execute_unprepared("SELECT pg_sleep(5)")
        .await
        .unwrap_err();

    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(err.to_string().contains("statement timeout"), "{err}");
    assert!(service.is_ready().await);
}
