//! The service's sessions carry a guard against leaked transactions: PostgreSQL ends a session
//! whose transaction sits idle longer than `DB_IDLE_IN_TRANSACTION_TIMEOUT` (five minutes by
//! default), so its row locks are released; the caller then gets `Unavailable` naming why.

use std::time::Duration;

use sea_orm::{ConnectionTrait, DbBackend, Statement};
use service::{DatabaseConfig, DatabaseService, Error, user};
use test_support::{TestBackend, TestDatabase, new_user};

async fn setting(service: &DatabaseService, name: &str) -> String {
    service
        .connection()
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            format!("SELECT current_setting('{name}')"),
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get_by_index::<String>(0)
        .unwrap()
}

#[tokio::test]
async fn sessions_get_the_idle_in_transaction_timeout_by_default_and_as_configured() {
    let db = TestDatabase::new(TestBackend::Postgres).await;
    let default = DatabaseService::connect(db.config()).await.unwrap();
    assert_eq!(
        setting(&default, "idle_in_transaction_session_timeout").await,
        "5min"
    );
    default.close().await.unwrap();

    let url = db.config().url.expose_secret();
    let config = DatabaseConfig::from_lookup(|name| match name {
        "DATABASE_URL" => Some(url.clone()),
        "DB_IDLE_IN_TRANSACTION_TIMEOUT" => Some("1m".to_owned()),
        _ => None,
    })
    .unwrap();
    let configured = DatabaseService::connect(&config).await.unwrap();
    assert_eq!(
        setting(&configured, "idle_in_transaction_session_timeout").await,
        "1min"
    );
    configured.close().await.unwrap();
}

#[tokio::test]
async fn a_transaction_left_idle_is_ended_and_its_locks_released() {
    let db = TestDatabase::new(TestBackend::Postgres).await;
    let mut config = db.config().clone();
    config.idle_in_transaction_timeout = Some(Duration::from_millis(500));
    let service = DatabaseService::connect(&config).await.unwrap();
    let ada = user::create(&service, new_user("ada@x.io", "Ada"))
        .await
        .unwrap();
    let leaked = service.begin().await.unwrap();
    user::update(
        &leaked,
        ada.id,
        user::UserChanges {
            name: Some("Leaked".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();

    tokio::time::sleep(Duration::from_millis(1500)).await;
    // The row lock is gone: another writer is not blocked.
    let other = tokio::time::timeout(
        Duration::from_secs(2),
        user::update(
            &service,
            ada.id,
            user::UserChanges {
                name: Some("Other".into()),
                ..Default::default()
            },
        ),
    )
    .await
    .expect("not blocked by the leaked transaction");
    let after = user::get(&leaked, ada.id).await;

    assert_eq!(other.unwrap().name, "Other");
    match after {
        Err(Error::Unavailable { reason, .. }) => assert!(
            reason.contains("DB_IDLE_IN_TRANSACTION_TIMEOUT") || reason.contains("connection"),
            "{reason}"
        ),
        other => panic!("the leaked transaction's session is gone: {other:?}"),
    }
}
