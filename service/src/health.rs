//! The health check of a service ([`DatabaseService::health`], [`DatabaseService::is_ready`])
//! and the report it returns.

use std::collections::HashSet;
use std::time::Instant;

use sea_orm::ConnectionTrait;
use serde::Serialize;

use crate::database::{DatabaseService, backend_name};
use crate::error::Error;
use crate::metrics;

/// Overall state of the database, as a load balancer or an operator wants to know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    /// Reachable and every migration of this build applied.
    Healthy,
    /// The primary is reachable, but migrations are pending, or the database has migrations
    /// this build does not know (a newer build migrated it), or a read replica is out of
    /// rotation for a fault (down, lagging, promoted; reads then go to the primary).
    /// [`HealthReport::can_serve`] tells which.
    Degraded,
    /// Not reachable, or erroring, or no answer within the health timeout.
    Unhealthy,
}

/// Connection pool usage at the time of the check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PoolReport {
    /// Connections open (in use and idle).
    pub size: u32,
    /// Connections open and idle.
    pub idle: u32,
    /// The pool's limit.
    pub max: u32,
}

/// Migrations of this build compared with the database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MigrationsReport {
    /// How many of this build's migrations are applied.
    pub applied: usize,
    /// This build's migrations not yet applied, in order.
    pub pending: Vec<String>,
    /// Migrations recorded in the database that this build does not have.
    pub unknown: Vec<String>,
}

/// The answer of a health check; serialises to JSON for a `/health` endpoint.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HealthReport {
    /// Healthy, degraded or unhealthy.
    pub status: HealthStatus,
    /// `postgres` or `sqlite`.
    pub backend: &'static str,
    /// The node the primary's pool connects to now, `host:port/database` (no user, no
    /// password): with a multi-host `DATABASE_URL`, the host found writable; `None` on
    /// SQLite.
    pub primary: Option<String>,
    /// The server's version, read when the service connected.
    pub server_version: Option<String>,
    /// Whether the primary's connections are encrypted (TLS, from `pg_stat_ssl`), read when
    /// the service connected; `None` on SQLite.
    pub encrypted: Option<bool>,
    /// Time the check took, in milliseconds.
    pub latency_ms: f64,
    /// Pool usage.
    pub pool: PoolReport,
    /// Migration state; `None` when the database could not be asked.
    pub migrations: Option<MigrationsReport>,
    /// Why the database is unhealthy (never contains a password or URL).
    pub error: Option<String>,
    /// Each node that serves reads (`DATABASE_REPLICA_URLS`, and with
    /// `DB_READ_FROM_STANDBYS` every host of `DATABASE_URL`, the primary among them reported
    /// with its role and out of rotation), checked during this health check; empty (and left
    /// out of the JSON) without them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub replicas: Vec<ReplicaReport>,
}

impl HealthReport {
    /// Whether this instance can serve every request: the primary answers and has exactly this
    /// build's migrations. A replica out of rotation does not count (reads then go to the
    /// primary), so a load balancer should keep an instance for which this is `true` even
    /// while the status is `degraded`.
    #[must_use]
    pub fn can_serve(&self) -> bool {
        self.status != HealthStatus::Unhealthy
            && self
                .migrations
                .as_ref()
                .is_some_and(|m| m.pending.is_empty() && m.unknown.is_empty())
    }
}

/// What a PostgreSQL node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeRole {
    /// Accepts writes (a replica that reports this has been promoted).
    Primary,
    /// A streaming standby, in recovery: read-only.
    Standby,
}

/// One read replica as a health check found it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReplicaReport {
    /// `host:port/database` (no user, no password).
    pub name: String,
    /// What the node says it is; `None` when it did not answer.
    pub role: Option<NodeRole>,
    /// Whether it answered within the health timeout.
    pub reachable: bool,
    /// Whether reads are sent to it now.
    pub in_rotation: bool,
    /// Time its answer took, in milliseconds.
    pub latency_ms: Option<f64>,
    /// WAL bytes it has yet to replay to catch up with the primary.
    pub lag_bytes: Option<u64>,
    /// Whether the connection to it is encrypted (TLS, from `pg_stat_ssl`); `None` when it did
    /// not answer.
    pub encrypted: Option<bool>,
    /// Why it is out of rotation, when that is a fault (never contains a password or URL);
    /// `None` for a host of `DATABASE_URL` that is the primary now.
    pub error: Option<String>,
}

impl DatabaseService {
    /// A full health report: reachability, round-trip latency, pool usage, migrations applied,
    /// pending and unknown to this build, backend and server version; and each read replica's
    /// role, reachability, latency and lag.
    ///
    /// Without replicas it costs one round trip (reading the migrations table answers both "is
    /// it up" and "which migrations are applied"). With replicas, each is checked at the same
    /// time (its answer also updates whether it is in rotation). It never panics, and always
    /// returns within the configured health timeout (`DB_HEALTH_TIMEOUT`, 2 s by default),
    /// reporting [`HealthStatus::Unhealthy`] when the primary does not answer in time. A
    /// replica that is down or lagging makes the status [`HealthStatus::Degraded`], never
    /// unhealthy: reads go to the primary meanwhile ([`HealthReport::can_serve`]).
    pub async fn health(&self) -> HealthReport {
        let timeout = self.inner.health_timeout;
        let started = Instant::now();
        let primary = async {
            let outcome = tokio::time::timeout(
                timeout,
                self.inner
                    .primary
                    .conn
                    .query_all_raw(self.inner.applied_migrations.clone()),
            )
            .await;
            (outcome, started.elapsed())
        };
        let replicas = async {
            match &self.inner.replicas {
                Some(replicas) => replicas.check_all(timeout).await,
                None => Vec::new(),
            }
        };
        let ((outcome, latency), replicas) = tokio::join!(primary, replicas);
        let (mut status, migrations, error) = match outcome {
            Ok(Ok(rows)) => {
                let applied: HashSet<String> = rows
                    .iter()
                    .filter_map(|row| row.try_get_by_index::<String>(0).ok())
                    .collect();
                let migrations = self.compare_migrations(&applied);
                metrics::record_migrations(&migrations);
                let status = if migrations.pending.is_empty() && migrations.unknown.is_empty() {
                    HealthStatus::Healthy
                } else {
                    HealthStatus::Degraded
                };
                (status, Some(migrations), None)
            }
            // Reachable, but nothing has been migrated yet: the table does not exist.
            Ok(Err(err)) if is_missing_table(&err) => {
                let migrations = self.compare_migrations(&HashSet::new());
                metrics::record_migrations(&migrations);
                (HealthStatus::Degraded, Some(migrations), None)
            }
            Ok(Err(err)) => (
                HealthStatus::Unhealthy,
                None,
                Some(Error::from_db("check health", err).to_string()),
            ),
            Err(_) => (
                HealthStatus::Unhealthy,
                None,
                Some(format!(
                    "no answer within the health timeout ({} ms)",
                    timeout.as_millis()
                )),
            ),
        };
        if status == HealthStatus::Healthy && replicas.iter().any(|r| r.error.is_some()) {
            status = HealthStatus::Degraded;
        }
        HealthReport {
            status,
            backend: backend_name(self.backend()),
            primary: self.inner.primary.node_name(),
            server_version: self.inner.server_version.clone(),
            encrypted: self.inner.encrypted,
            // Microsecond resolution is all a round trip needs.
            latency_ms: (latency.as_secs_f64() * 1_000_000.0).round() / 1000.0,
            pool: self.pool_report(),
            migrations,
            error,
            replicas,
        }
    }

    /// A cheap readiness probe: can a pooled connection talk to the server within the health
    /// timeout? (Migrations are not looked at; [`health`](Self::health) does that.)
    pub async fn is_ready(&self) -> bool {
        matches!(
            tokio::time::timeout(self.inner.health_timeout, self.inner.primary.conn.ping()).await,
            Ok(Ok(()))
        )
    }

    fn compare_migrations(&self, applied: &HashSet<String>) -> MigrationsReport {
        let known = &self.inner.known_migrations;
        let mut unknown: Vec<String> = applied
            .iter()
            .filter(|name| !known.contains(name))
            .cloned()
            .collect();
        unknown.sort();
        MigrationsReport {
            applied: applied.len() - unknown.len(),
            pending: known
                .iter()
                .filter(|name| !applied.contains(*name))
                .cloned()
                .collect(),
            unknown,
        }
    }

    fn pool_report(&self) -> PoolReport {
        let (size, idle, _) = self.inner.primary.usage();
        PoolReport {
            size,
            idle: u32::try_from(idle).unwrap_or(u32::MAX),
            max: self.inner.max_connections,
        }
    }
}

fn is_missing_table(err: &sea_orm::DbErr) -> bool {
    connection::classify(err) == connection::ErrorKind::UndefinedTable
}
