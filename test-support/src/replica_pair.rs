//! [`TestReplicaPair`]: a primary and a streaming standby of a test's own.

use std::time::Duration;

use sea_orm::{ConnectionTrait, Database};

use super::TestCluster;
use service::DatabaseService;
use service::config::{DatabaseConfig, DatabaseUrl};

/// A primary cluster with a migrated database, and a streaming standby of it (each a
/// [`TestCluster`] on a free loopback port), for tests of read replicas. Dropping it removes
/// both.
#[derive(Debug)]
pub struct TestReplicaPair {
    /// The primary.
    pub primary: TestCluster,
    /// The standby, following the primary.
    pub standby: TestCluster,
    database: String,
}

impl TestReplicaPair {
    /// Starts the primary, creates and migrates `database` on it, then starts the standby.
    ///
    /// # Panics
    ///
    /// When a cluster does not start (see [`TestCluster::start_standby_of`]) or migrating
    /// fails.
    pub async fn start(database: &str) -> Self {
        let primary = TestCluster::start();
        run(
            &primary.admin_url(),
            &format!(r#"CREATE DATABASE "{database}""#),
        )
        .await;
        let mut config = DatabaseConfig::new(parse(&primary.url(database)));
        config.max_connections = 2;
        let service = DatabaseService::connect(&config)
            .await
            .unwrap_or_else(|err| panic!("cannot connect to the test primary: {err}"));
        service
            .apply_migrations(&service::MigratorOptions::default())
            .await
            .unwrap_or_else(|err| panic!("cannot migrate the test primary: {err}"));
        let _ = service.close().await;
        let standby = TestCluster::start_standby_of(&primary);
        Self {
            primary,
            standby,
            database: database.to_owned(),
        }
    }

    /// A service configuration for the primary with the standby as its read replica, probed
    /// every 50 ms, a pool of 4 per node, a health timeout of 1 s.
    #[must_use]
    pub fn config(&self) -> DatabaseConfig {
        let mut config = DatabaseConfig::new(parse(&self.primary.url(&self.database)));
        config.replica_urls = vec![parse(&self.standby.url(&self.database))];
        config.replica_probe_interval = Duration::from_millis(50);
        config.max_connections = 4;
        config.health_timeout = Duration::from_secs(1);
        config.connect_deadline = Duration::from_secs(2);
        config
    }

    /// `host:port/database` of the standby, as health reports and readers name it.
    #[must_use]
    pub fn standby_name(&self) -> String {
        format!("127.0.0.1:{}/{}", self.standby.port(), self.database)
    }

    /// Pauses WAL replay on the standby (`pg_wal_replay_pause()`): it keeps receiving, but
    /// shows nothing new until [`resume_replay`](Self::resume_replay).
    pub async fn pause_replay(&self) {
        run(
            &self.standby.url(&self.database),
            "SELECT pg_wal_replay_pause()",
        )
        .await;
    }

    /// Resumes WAL replay on the standby.
    pub async fn resume_replay(&self) {
        run(
            &self.standby.url(&self.database),
            "SELECT pg_wal_replay_resume()",
        )
        .await;
    }
}

fn parse(url: &str) -> DatabaseUrl {
    DatabaseUrl::parse(url).unwrap_or_else(|err| panic!("test cluster URL: {err}"))
}

async fn run(url: &str, sql: &str) {
    let db = Database::connect(url)
        .await
        .unwrap_or_else(|err| panic!("cannot connect to a test cluster: {err}"));
    db.execute_unprepared(sql)
        .await
        .unwrap_or_else(|err| panic!("{sql}: {err}"));
    let _ = db.close().await;
}
