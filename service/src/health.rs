//! The health report returned by [`DatabaseService::health`](crate::DatabaseService::health).

use serde::Serialize;

/// Overall state of the database, as a load balancer or an operator wants to know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    /// Reachable and every migration of this build applied.
    Healthy,
    /// Reachable, but migrations are pending, or the database has migrations this build does
    /// not know (a newer build migrated it).
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
}
