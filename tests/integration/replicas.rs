//! Read replicas against a real primary and streaming standby (private clusters on loopback):
//! which node serves reads, read-your-writes, a replica that stops, lags or is promoted, and
//! a primary URL that points at a standby.

use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, Database, DatabaseConnection, DbBackend, Statement};
use service::user::{self, NewUser, UserChanges};
use service::{
    ConnectFailure, DatabaseConfig, DatabaseService, DatabaseUrl, Error, HealthStatus, NodeRole,
};
use test_support::{TestReplicaPair, new_user};

/// Starts the pair and connects a service to it, once the replica is in rotation.
async fn connect(pair: &TestReplicaPair) -> DatabaseService {
    let service = DatabaseService::connect(&pair.config()).await.unwrap();
    wait_for("the replica to enter rotation", || {
        let service = service.clone();
        async move { service.reader().replica_name().is_some() }
    })
    .await;
    service
}

/// Waits until the replica has replayed every write made so far.
async fn wait_for_replay(service: &DatabaseService) {
    let written = service.write_position().await.unwrap().unwrap();
    wait_for("the replica to replay the writes", || {
        let service = service.clone();
        async move { service.reader_after(written).replica_name().is_some() }
    })
    .await;
}

fn config_for(url: &str) -> DatabaseConfig {
    let mut config = DatabaseConfig::new(DatabaseUrl::parse(url).unwrap());
    config.max_connections = 4;
    config.connect_deadline = Duration::from_secs(2);
    config.health_timeout = Duration::from_secs(1);
    config
}

async fn wait_for<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(15);
    while !condition().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Index scans of `user` on the server at `url`, as its statistics count them once the
/// sessions that ran them have ended.
async fn user_index_scans(db: &DatabaseConnection) -> i64 {
    db.query_one_raw(Statement::from_string(
        DbBackend::Postgres,
        r#"SELECT coalesce(idx_scan, 0) FROM pg_stat_user_tables WHERE relname = 'user'"#,
    ))
    .await
    .unwrap()
    .unwrap()
    .try_get_by_index(0)
    .unwrap()
}

#[tokio::test]
async fn reads_through_a_reader_are_served_by_the_replica_and_writes_by_the_primary() {
    let pair = TestReplicaPair::start("app").await;
    let service = connect(&pair).await;
    let created = user::create(&service, new_user("user1@x.io", "User 1"))
        .await
        .unwrap();
    wait_for_replay(&service).await;
    let stats_primary = Database::connect(pair.primary.url("app")).await.unwrap();
    let stats_replica = Database::connect(pair.standby.url("app")).await.unwrap();
    let primary_before = user_index_scans(&stats_primary).await;
    let replica_before = user_index_scans(&stats_replica).await;

    for _ in 0..200 {
        let reader = service.reader();
        assert_eq!(reader.replica_name(), Some(pair.standby_name().as_str()));
        assert_eq!(user::get(&reader, created.id).await.unwrap(), created);
    }
    // Sessions report their statistics when they end.
    service.close().await.unwrap();

    wait_for("the replica's statistics to count 200 reads", || {
        let stats = stats_replica.clone();
        async move { user_index_scans(&stats).await - replica_before >= 200 }
    })
    .await;
    assert_eq!(
        user_index_scans(&stats_primary).await - primary_before,
        0,
        "no read went to the primary"
    );
}

#[tokio::test]
async fn a_caller_reads_its_own_writes_while_plain_reads_may_be_stale() {
    let pair = TestReplicaPair::start("app").await;
    let service = connect(&pair).await;
    let ada = user::create(&service, new_user("user1@x.io", "User 1"))
        .await
        .unwrap();
    wait_for_replay(&service).await;

    pair.pause_replay().await;
    let changes = UserChanges {
        name: Some("Ada Lovelace".into()),
        email: None,
    };
    user::update(&service, ada.id, changes).await.unwrap();
    let written = service.write_position().await.unwrap().unwrap();
    // A small write stays far below the lag bound: the paused replica stays in rotation.
    assert!(service.reader().replica_name().is_some());
    assert_eq!(
        user::get(&service.reader(), ada.id).await.unwrap().name,
        "User 1",
        "a plain read is served by the paused replica"
    );
    let own = service.reader_after(written);
    assert_eq!(own.replica_name(), None, "the replica has not replayed it");
    assert_eq!(user::get(&own, ada.id).await.unwrap().name, "Ada Lovelace");

    // A row the replica has not received yet is looked for on the primary.
    let bob = user::create(&service, new_user("user2@x.io", "User 2"))
        .await
        .unwrap();
    assert_eq!(user::get(&service.reader(), bob.id).await.unwrap(), bob);
    let found = user::find_by_email(&service.reader(), "USER2@x.io")
        .await
        .unwrap();
    assert_eq!(found, Some(bob));

    pair.resume_replay().await;
    wait_for_replay(&service).await;
    let caught_up = service.reader();
    assert!(caught_up.replica_name().is_some());
    let fresh = user::get(&caught_up, ada.id).await.unwrap();
    assert_eq!(fresh.name, "Ada Lovelace", "the replica has it now");
}

#[tokio::test]
async fn a_stopped_replica_costs_no_read_and_rejoins_when_it_is_back() {
    let pair = TestReplicaPair::start("app").await;
    let service = connect(&pair).await;
    let ada = user::create(&service, new_user("user1@x.io", "User 1"))
        .await
        .unwrap();
    wait_for_replay(&service).await;
    // Readers made before the stop still point at the replica.
    let readers: Vec<_> = (0..20).map(|_| service.reader()).collect();

    pair.standby.stop();
    for reader in &readers {
        assert_eq!(user::get(reader, ada.id).await.unwrap(), ada);
    }
    let page = user::list(&readers[0], 10, None).await.unwrap();
    assert_eq!(page.users, std::slice::from_ref(&ada));
    assert_eq!(service.reader().replica_name(), None, "out of rotation");
    let report = service.health().await;
    assert_eq!(report.status, HealthStatus::Degraded);
    assert!(report.can_serve(), "{report:?}");
    assert_eq!(report.replicas.len(), 1);
    assert!(!report.replicas[0].reachable, "{report:?}");
    assert!(!report.replicas[0].in_rotation, "{report:?}");
    assert!(report.replicas[0].error.is_some(), "{report:?}");

    pair.standby.restart();
    wait_for("the replica to rejoin", || {
        let service = service.clone();
        async move { service.reader().replica_name().is_some() }
    })
    .await;
    pair.pause_replay().await;
    user::update(
        &service,
        ada.id,
        UserChanges {
            name: Some("Changed".into()),
            email: None,
        },
    )
    .await
    .unwrap();
    assert_eq!(
        user::get(&service.reader(), ada.id).await.unwrap().name,
        "User 1",
        "served by the replica again"
    );
    let report = service.health().await;
    assert_eq!(report.status, HealthStatus::Healthy, "{report:?}");
    assert_eq!(report.replicas[0].role, Some(NodeRole::Standby));
}

#[tokio::test]
async fn a_replica_lagging_past_the_bound_leaves_rotation_until_it_catches_up() {
    let pair = TestReplicaPair::start("app").await;
    let mut config = pair.config();
    config.replica_max_lag = 256 * 1024;
    let service = DatabaseService::connect(&config).await.unwrap();
    wait_for("the replica to enter rotation", || {
        let service = service.clone();
        async move { service.reader().replica_name().is_some() }
    })
    .await;

    pair.pause_replay().await;
    let users: Vec<NewUser> = (0..10_000)
        .map(|n| new_user(&format!("user{n}@x.io"), &format!("User {n}")))
        .collect();
    user::create_many(&service, &users).await.unwrap();
    wait_for("the replica to leave rotation", || {
        let service = service.clone();
        async move { service.reader().replica_name().is_none() }
    })
    .await;
    let report = service.health().await;
    assert_eq!(report.status, HealthStatus::Degraded);
    assert!(report.can_serve());
    let lag = report.replicas[0].lag_bytes.unwrap();
    assert!(lag > 256 * 1024, "lag {lag}");
    assert!(report.replicas[0].reachable);
    assert!(
        report.replicas[0]
            .error
            .as_deref()
            .is_some_and(|e| e.contains("DB_REPLICA_MAX_LAG")),
        "{report:?}"
    );
    let page = user::list(&service.reader(), 500, None).await.unwrap();
    assert_eq!(page.users.len(), 500, "fresh rows, from the primary");

    pair.resume_replay().await;
    wait_for("the replica to catch up and rejoin", || {
        let service = service.clone();
        async move { service.reader().replica_name().is_some() }
    })
    .await;
    assert_eq!(service.health().await.status, HealthStatus::Healthy);
}

#[tokio::test]
async fn the_primary_pool_refuses_a_standby_and_a_promoted_replica_leaves_rotation() {
    let pair = TestReplicaPair::start("app").await;
    let mut config = config_for(&pair.standby.url("app"));
    config.connect_deadline = Duration::from_millis(300);
    match DatabaseService::connect(&config).await {
        Err(Error::Connect(err)) => {
            assert_eq!(err.failure, ConnectFailure::Standby);
            assert!(
                err.to_string().contains("must point at the primary"),
                "{err}"
            );
        }
        other => panic!("expected a refusal, got {other:?}"),
    }

    let service = connect(&pair).await;
    pair.standby.promote();
    wait_for("the promoted replica to leave rotation", || {
        let service = service.clone();
        async move { service.reader().replica_name().is_none() }
    })
    .await;
    let report = service.health().await;
    assert_eq!(report.replicas[0].role, Some(NodeRole::Primary));
    assert!(!report.replicas[0].in_rotation);
    assert!(report.can_serve());
    // Once promoted it is a primary like any other.
    let promoted = DatabaseService::connect(&config).await.unwrap();
    user::create(&promoted, new_user("user1@x.io", "User 1"))
        .await
        .unwrap();
}
