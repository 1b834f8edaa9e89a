//! The health report returned by [`DatabaseService::health`](crate::DatabaseService::health).

use serde::Serialize;

/// Overall state of the database, as a load balancer or an operator wants to know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    /// Reachable and every migration of this build applied.
    Healthy,
    /// The primary is reachable, but migrations are pending, or the database has migrations
    /// this build does not know (a newer build migrated it), or a read replica is out of
    /// rotation (reads then go to the primary). [`HealthReport::can_serve`] tells which.
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
    /// The server's version, read when the service connected.
    pub server_version: Option<String>,
    /// Time the check took, in milliseconds.
    pub latency_ms: f64,
    /// Pool usage.
    pub pool: PoolReport,
    /// Migration state; `None` when the database could not be asked.
    pub migrations: Option<MigrationsReport>,
    /// Why the database is unhealthy (never contains a password or URL).
    pub error: Option<String>,
    /// Each read replica (`DATABASE_REPLICA_URLS`), checked during this health check; empty
    /// (and left out of the JSON) without replicas.
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
    /// Why it is out of rotation (never contains a password or URL).
    pub error: Option<String>,
}
