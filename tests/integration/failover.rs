//! A primary that moves: multi-host URLs (as HA managers print them) against a real primary
//! and streaming standby, in either order, for the hosts chosen by every
//! `target_session_attrs`, the service and the migrator; on a pg_auto_failover formation, the
//! service and the migrator through a switchover. (A killed primary, through the `api` binary
//! beside a libpq client: `api/tests/http/failover.rs`.)

use std::time::Duration;

use connection::hosts::{self, HostList, TargetSessionAttrs};
use sea_orm::{ConnectionTrait, DbBackend, Statement};
use service::{DatabaseConfig, DatabaseService, DatabaseUrl};
use test_support::{TestFormation, TestReplicaPair};

use crate::migrator_cli::migrator_binary;
use crate::sql::{execute, query_text};

/// `postgres://postgres@127.0.0.1:<first>,127.0.0.1:<second>/<database>?target_session_attrs=…`
fn multi_host(first: u16, second: u16, database: &str, attrs: &str) -> String {
    format!(
        "postgres://postgres@127.0.0.1:{first},127.0.0.1:{second}/{database}\
         ?target_session_attrs={attrs}&sslmode=disable"
    )
}

/// The port of the server a service's primary pool is connected to.
async fn primary_port(service: &DatabaseService) -> u16 {
    server_port(service.connection()).await
}

/// The port of the server `db` runs its statements on.
async fn server_port(db: &impl ConnectionTrait) -> u16 {
    let row = db
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT inet_server_port()",
        ))
        .await
        .unwrap()
        .unwrap();
    u16::try_from(row.try_get_by_index::<i32>(0).unwrap()).unwrap()
}

fn config(url: &str) -> DatabaseConfig {
    let mut config = DatabaseConfig::new(DatabaseUrl::parse(url).unwrap());
    config.max_connections = 2;
    config.connect_deadline = Duration::from_secs(2);
    config
}

#[tokio::test]
async fn each_target_session_attrs_picks_its_host_in_either_order() {
    let pair = TestReplicaPair::start("app").await;
    let (primary, standby) = (pair.primary.port(), pair.standby.port());
    let cases = [
        ("any", primary, standby),
        ("read-write", primary, primary),
        ("primary", primary, primary),
        ("read-only", standby, standby),
        ("standby", standby, standby),
        ("prefer-standby", standby, standby),
    ];
    for (attrs, primary_first, standby_first) in cases {
        for (order, expected) in [
            ((primary, standby), primary_first),
            ((standby, primary), standby_first),
        ] {
            let url = multi_host(order.0, order.1, "app", attrs);
            let chosen = hosts::resolve(&url, Duration::from_secs(5)).await.unwrap();
            assert_eq!(
                query_text(&chosen, "SELECT CAST(inet_server_port() AS TEXT)").await,
                expected.to_string(),
                "target_session_attrs={attrs}, hosts {order:?}"
            );
        }
    }
}

#[tokio::test]
async fn with_no_host_of_the_wanted_kind_the_error_names_each_host() {
    let pair = TestReplicaPair::start("app").await;
    let list = HostList::parse(&format!(
        "postgres://postgres:hunter2@127.0.0.1:{},127.0.0.1:1/app?target_session_attrs=primary",
        pair.standby.port()
    ))
    .unwrap()
    .unwrap();
    assert_eq!(list.target_session_attrs(), TargetSessionAttrs::Primary);
    let failure = hosts::choose(&list, Duration::from_secs(5))
        .await
        .unwrap_err();
    let shown = failure.to_string();
    assert_eq!(
        shown,
        format!(
            "no host is suitable for target_session_attrs=primary: 127.0.0.1:{}: a standby; \
             127.0.0.1:1: connection refused (is the server running, and on that host and port?)",
            pair.standby.port()
        )
    );
    assert!(failure.is_transient(), "a standby may be promoted");
}

#[tokio::test]
async fn the_service_writes_to_the_primary_whichever_host_comes_first() {
    let pair = TestReplicaPair::start("app").await;
    let (primary, standby) = (pair.primary.port(), pair.standby.port());
    for (first, second) in [(standby, primary), (primary, standby)] {
        let url = multi_host(first, second, "app", "read-write");
        let service = DatabaseService::connect(&config(&url)).await.unwrap();
        assert_eq!(
            primary_port(&service).await,
            primary,
            "hosts {first},{second}"
        );
        let shown = format!("{service:?}");
        assert!(
            shown.contains(&format!("127.0.0.1:{first},127.0.0.1:{second}")),
            "{shown}"
        );
        service.close().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_db_read_from_standbys_the_standby_of_the_url_serves_reads_and_health_names_both() {
    let pair = TestReplicaPair::start("app").await;
    let (primary, standby) = (pair.primary.port(), pair.standby.port());
    // The standby first: the order of the hosts decides nothing.
    let url = multi_host(standby, primary, "app", "read-write");
    let mut config = config(&url);
    config.read_from_standbys = true;
    config.replica_probe_interval = Duration::from_millis(100);
    let service = DatabaseService::connect(&config).await.unwrap();
    service
        .apply_migrations(&service::MigratorOptions::default())
        .await
        .unwrap();
    let standby_name = format!("127.0.0.1:{standby}/app");
    let started = std::time::Instant::now();
    while service.reader().replica_name() != Some(standby_name.as_str()) {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the standby did not enter rotation"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let on_reader = server_port(&service.reader()).await;
    assert_eq!(on_reader, standby, "reads go to the standby");
    assert_eq!(
        primary_port(&service).await,
        primary,
        "writes to the primary"
    );

    // Read-your-writes, as with DATABASE_REPLICA_URLS.
    let ada = service::user::create(&service, test_support::new_user("ada@x.io", "Ada"))
        .await
        .unwrap();
    let position = service.write_position().await.unwrap().unwrap();
    let read = service::user::get(&service.reader_after(position), ada.id)
        .await
        .unwrap();
    assert_eq!(read, ada);

    let health = service.health().await;
    assert_eq!(health.status, service::HealthStatus::Healthy, "{health:?}");
    assert_eq!(health.primary, Some(format!("127.0.0.1:{primary}/app")));
    let role_of = |name: String| {
        health
            .replicas
            .iter()
            .find(|r| r.name == name)
            .map(|r| (r.role, r.in_rotation, r.error.clone()))
    };
    assert_eq!(
        role_of(standby_name.clone()),
        Some((Some(service::NodeRole::Standby), true, None))
    );
    assert_eq!(
        role_of(format!("127.0.0.1:{primary}/app")),
        Some((Some(service::NodeRole::Primary), false, None)),
        "the primary among the hosts is no fault"
    );
    service.close().await.unwrap();
}

#[tokio::test]
async fn the_migrator_migrates_the_primary_of_a_multi_host_url() {
    let pair = TestReplicaPair::start("app").await;
    execute(&pair.primary.admin_url(), r#"CREATE DATABASE "fresh""#).await;
    let url = multi_host(
        pair.standby.port(),
        pair.primary.port(),
        "fresh",
        "read-write",
    );
    let output = std::process::Command::new(migrator_binary())
        .args(["-u", &url, "up"])
        .env("RUST_LOG", "info")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "127.0.0.1:{},127.0.0.1:{}/fresh",
            pair.standby.port(),
            pair.primary.port()
        )),
        "the log names the hosts: {stderr}"
    );
    assert_ne!(
        query_text(
            &pair.primary.url("fresh"),
            r#"SELECT CAST(count(*) AS TEXT) FROM "seaql_migrations""#
        )
        .await,
        "0"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_follows_the_primary_through_a_switchover() {
    let formation = tokio::task::spawn_blocking(TestFormation::start)
        .await
        .unwrap();
    let ports = formation.node_ports();
    assert_eq!(
        formation.uri(),
        format!(
            "postgres://127.0.0.1:{},127.0.0.1:{}/appdb?target_session_attrs=read-write&sslmode=prefer",
            ports[0], ports[1]
        )
    );
    // The URL names no user: libpq and sqlx take it from PGUSER, or the operating system's.
    let url = formation
        .uri()
        .replacen("postgres://", "postgres://postgres@", 1);
    let mut config = config(&url);
    config.max_connections = 4;
    let service = DatabaseService::connect(&config).await.unwrap();
    service
        .apply_migrations(&service::MigratorOptions::default())
        .await
        .unwrap();
    let before = formation.primary_port().unwrap();
    assert_eq!(primary_port(&service).await, before);

    let switched = tokio::task::spawn_blocking(move || {
        formation.switchover();
        formation
    });
    let started = std::time::Instant::now();
    let (mut acknowledged, mut last_ok, mut gap) = (Vec::new(), started, Duration::ZERO);
    let mut n = 0;
    while !switched.is_finished() || started.elapsed() < Duration::from_secs(8) {
        n += 1;
        match service::user::create(&service, test_support::new_user(&format!("u{n}@x.io"), "U"))
            .await
        {
            Ok(user) => {
                gap = gap.max(last_ok.elapsed());
                last_ok = std::time::Instant::now();
                acknowledged.push(user.id);
            }
            Err(err) => assert!(err.is_unavailable(), "{err}"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "writes never resumed"
        );
    }
    let formation = switched.await.unwrap();
    let after = formation.primary_port().unwrap();
    assert_ne!(after, before);
    assert!(last_ok > started, "no write succeeded");
    assert_eq!(primary_port(&service).await, after, "the pool follows");
    let ids = acknowledged
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let found = query_text(
        &formation.node_url(after),
        &format!(r#"SELECT CAST(count(*) AS TEXT) FROM "user" WHERE id IN ({ids})"#),
    )
    .await;
    assert_eq!(
        found,
        acknowledged.len().to_string(),
        "every acknowledged write, once"
    );
    // A write whose connection broke after its COMMIT was sent may be there unacknowledged
    // (answered Unavailable): the rows may exceed the acknowledged writes by those.
    let rows: usize = query_text(
        &formation.node_url(after),
        r#"SELECT CAST(count(*) AS TEXT) FROM "user""#,
    )
    .await
    .parse()
    .unwrap();
    assert!(
        rows >= acknowledged.len() && rows <= n,
        "{rows} rows, {n} attempts"
    );
    eprintln!(
        "switchover: {} writes acknowledged, longest write gap {gap:?}",
        acknowledged.len()
    );
    service.close().await.unwrap();

    // A switchover while the service is idle: its pooled sessions die without a statement
    // failing, and with a ping on every checkout sqlx replaces them by itself, retrying the
    // old host (a standby now, which the session set-up refuses) without a word until
    // DB_ACQUIRE_TIMEOUT. The follower is told by the checkout that waits: the first write
    // after the switchover succeeds in well under the acquire timeout.
    let mut idle = config;
    idle.ping_after_idle = Some(Duration::ZERO);
    idle.acquire_timeout = Duration::from_secs(30);
    idle.connection_hold = None;
    let service = DatabaseService::connect(&idle).await.unwrap();
    service::user::create(&service, test_support::new_user("idle@x.io", "I"))
        .await
        .unwrap();
    let formation = tokio::task::spawn_blocking(move || {
        formation.switchover();
        formation
    })
    .await
    .unwrap();
    let back = formation.primary_port().unwrap();
    assert_eq!(back, before);
    let started = std::time::Instant::now();
    let mut n = 0;
    loop {
        n += 1;
        let attempt = test_support::new_user(&format!("after-idle{n}@x.io"), "I");
        match service::user::create(&service, attempt).await {
            Ok(_) => break,
            Err(err) => assert!(err.is_unavailable(), "{err}"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "writes never resumed"
        );
    }
    let waited = started.elapsed();
    assert!(
        waited < Duration::from_secs(5),
        "the first write after an idle switchover took {waited:?} (acquire timeout 30 s)"
    );
    assert_eq!(primary_port(&service).await, back, "the pool follows");
    eprintln!("idle switchover: the first write took {waited:?}");
    service.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_cut_off_by_a_switchover_is_finished_by_the_next_up_on_the_new_primary() {
    let formation = tokio::task::spawn_blocking(TestFormation::start)
        .await
        .unwrap();
    let url = formation
        .uri()
        .replacen("postgres://", "postgres://postgres@", 1);
    let migrate = |args: &[&str]| {
        let mut command = std::process::Command::new(migrator_binary());
        command.args(["-u", &url]).args(args);
        command
    };
    let created = migrate(&["up", "-n", "1"]).output().unwrap();
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let before = formation.primary_port().unwrap();
    // Enough mixed-case addresses that the batched lower-casing takes several seconds.
    execute(
        &formation.node_url(before),
        r#"INSERT INTO "user" (email, name)
           SELECT 'User' || g || '@Example.COM', 'U' FROM generate_series(1, 600000) g"#,
    )
    .await;

    let running = migrate(&["up"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The switchover starts once the first batches are committed.
    let started = std::time::Instant::now();
    while query_text(
        &formation.node_url(before),
        r#"SELECT CAST(count(*) > 0 AS TEXT) FROM "user" WHERE email = lower(email)"#,
    )
    .await
        != "true"
    {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the migration never started"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let formation = tokio::task::spawn_blocking(move || {
        formation.switchover();
        formation
    })
    .await
    .unwrap();
    let cut_off = tokio::task::spawn_blocking(move || running.wait_with_output().unwrap())
        .await
        .unwrap();
    assert!(
        !cut_off.status.success(),
        "the migration finished before the switchover ended it; the test needs more rows"
    );
    let after = formation.primary_port().unwrap();
    assert_ne!(after, before);

    let finished = migrate(&["up"]).output().unwrap();
    assert!(
        finished.status.success(),
        "{}",
        String::from_utf8_lossy(&finished.stderr)
    );
    let on_new_primary = formation.node_url(after);
    assert_eq!(
        query_text(
            &on_new_primary,
            r#"SELECT CAST(count(*) AS TEXT) FROM "user" WHERE email <> lower(email)"#
        )
        .await,
        "0"
    );
    assert_eq!(
        query_text(
            &on_new_primary,
            r#"SELECT CAST(count(*) AS TEXT) FROM "seaql_migrations""#
        )
        .await,
        <migration::Migrator as migration::MigratorTrait>::migrations()
            .len()
            .to_string()
    );
}
