//! Behind a connection pooler (PgBouncer in front of a private cluster): session mode works
//! for the service and its migrations; a transaction-mode pooler that mixes up prepared
//! statements is refused before it can return a wrong answer; a refused start-up parameter
//! says how to fix it; `DATABASE_DIRECT_URL` is what migrations use.

use std::time::Duration;

use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectionTrait, Database, sqlx};
use service::user::{self, NewUser};
use service::{ConnectFailure, DatabaseConfig, DatabaseService, DatabaseUrl, Error};

use crate::sql::table_exists;
use test_support::{PoolMode, TestCluster, TestPgBouncer};

/// Concurrent clients in every test here, over a pooler with fewer server connections.
const CLIENTS: usize = 8;
const SERVER_CONNECTIONS: u32 = 2;

async fn cluster_with_database(name: &str) -> TestCluster {
    let cluster = TestCluster::start();
    let admin = Database::connect(cluster.admin_url()).await.unwrap();
    admin
        .execute_unprepared(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    admin.close().await.unwrap();
    cluster
}

fn config(url: &str) -> DatabaseConfig {
    let mut config = DatabaseConfig::new(DatabaseUrl::parse(url).unwrap());
    config.max_connections = 4;
    config.connect_deadline = Duration::from_millis(500);
    config
}

#[tokio::test]
async fn through_a_session_pooler_the_service_migrates_and_answers_every_client_correctly() {
    let cluster = cluster_with_database("app").await;
    let bouncer = TestPgBouncer::start(cluster.port(), PoolMode::Session, 16);
    let service = DatabaseService::connect(&config(&bouncer.url("app")))
        .await
        .unwrap();
    assert_eq!(
        service
            .apply_migrations(&service::MigratorOptions::default())
            .await
            .unwrap()
            .len(),
        Migrator::migrations().len()
    );

    let clients = (0..CLIENTS).map(|client| {
        let service = service.clone();
        tokio::spawn(async move {
            for n in 0..25 {
                let email = format!("c{client}-{n}@x.io");
                let created = user::create(
                    &service,
                    NewUser {
                        email: email.clone(),
                        name: format!("client {client}"),
                    },
                )
                .await
                .unwrap();
                let read = user::get(&service, created.id).await.unwrap();
                assert_eq!(read, created);
                assert_eq!(read.email, email);
                let found = user::find_by_email(&service, &email).await.unwrap();
                assert_eq!(found, Some(created));
            }
        })
    });
    for client in clients {
        client.await.unwrap();
    }
    let page = user::list(&service, 500, None).await.unwrap();
    assert_eq!(page.users.len(), CLIENTS * 25);
}

#[tokio::test]
async fn a_transaction_pooler_that_mixes_up_statements_is_refused_by_every_client() {
    let cluster = cluster_with_database("app").await;
    let bouncer = TestPgBouncer::start(cluster.port(), PoolMode::Transaction, SERVER_CONNECTIONS);

    // What the refusal prevents: sqlx's own pool through this pooler runs other clients'
    // statements (each client's first statement is `sqlx_s_1`), with or without an error.
    let mixed_up = mixed_up_answers(&bouncer.url("app")).await;
    assert!(mixed_up > 0, "the pooler did not mix up any statement");

    let attempts = (0..CLIENTS).map(|_| {
        let config = config(&bouncer.url("app"));
        tokio::spawn(async move { DatabaseService::connect(&config).await })
    });
    for attempt in attempts {
        match attempt.await.unwrap() {
            Err(Error::Connect(err)) => {
                assert_eq!(err.failure, ConnectFailure::TransactionPooler, "{err}");
                let message = err.to_string();
                for fix in [
                    "transaction mode",
                    "pool_mode = session",
                    "max_prepared_statements",
                    "DATABASE_DIRECT_URL",
                ] {
                    assert!(message.contains(fix), "{message}");
                }
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
    }
}

/// Runs `SELECT $1::int4 + <client>` from 8 clients at once through sqlx's pool (the way
/// SeaORM runs queries) and counts the answers that were wrong or errors about prepared
/// statements.
async fn mixed_up_answers(url: &str) -> usize {
    let tasks = (0..CLIENTS).map(|client| {
        let url = url.to_owned();
        tokio::spawn(async move {
            let options: sqlx::postgres::PgConnectOptions = url.parse().unwrap();
            let Ok(mut conn) =
                sqlx::ConnectOptions::connect(&options.extra_float_digits(None)).await
            else {
                return 1;
            };
            let sql = format!("SELECT $1::int4 + {client}");
            let mut wrong = 0;
            for n in 0..200 {
                match sqlx::query_scalar::<_, i32>(sqlx::AssertSqlSafe(sql.clone()))
                    .bind(n)
                    .fetch_one(&mut conn)
                    .await
                {
                    Ok(answer) if answer == n + i32::try_from(client).unwrap() => {}
                    _ => wrong += 1,
                }
            }
            wrong
        })
    });
    let mut total = 0;
    for task in tasks {
        total += task.await.unwrap();
    }
    total
}

#[tokio::test]
async fn a_start_up_parameter_the_pooler_refuses_is_named_with_the_fix() {
    let cluster = cluster_with_database("app").await;
    let bouncer = TestPgBouncer::start(cluster.port(), PoolMode::Session, 4);
    let url = format!("{}?options=-c%20work_mem%3D8MB", bouncer.url("app"));
    match DatabaseService::connect(&config(&url)).await {
        Err(Error::Connect(err)) => {
            assert_eq!(
                err.failure,
                ConnectFailure::StartupParameterRefused("options".into())
            );
            assert!(
                err.to_string().contains("ignore_startup_parameters"),
                "{err}"
            );
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn apply_migrations_goes_to_the_direct_url() {
    let cluster = cluster_with_database("app").await;
    let direct = Database::connect(cluster.admin_url()).await.unwrap();
    direct
        .execute_unprepared("CREATE DATABASE app_direct")
        .await
        .unwrap();
    let bouncer = TestPgBouncer::start(cluster.port(), PoolMode::Session, 4);
    let mut config = config(&bouncer.url("app"));
    config.direct_url = Some(DatabaseUrl::parse(cluster.url("app_direct")).unwrap());
    let service = DatabaseService::connect(&config).await.unwrap();

    assert_eq!(
        service
            .apply_migrations(&service::MigratorOptions::default())
            .await
            .unwrap()
            .len(),
        Migrator::migrations().len()
    );

    let migrated = Database::connect(cluster.url("app_direct")).await.unwrap();
    assert!(table_exists(&migrated, "user").await);
    assert!(!table_exists(service.connection(), "user").await);
}
