//! `GET /health`: what a load balancer or a stranger may know about the database, and, when the
//! operator asks for it (`API_HEALTH_DETAILS=true`), the full report.
//!
//! Always shown: `status` (`healthy`, `degraded`, `unhealthy`), `latency_ms` and `migrations`
//! as counts (`{"applied": 3, "pending": 0, "unknown": 0}`, `null` when the database could not
//! be asked). With details, `details` holds the data layer's whole
//! [`HealthReport`](service::HealthReport): backend, server version, pool numbers, migration
//! and replica names, the driver's error text — useful to an operator, and to an attacker.
//!
//! 200 when healthy, and when degraded only because a read replica is out of rotation (reads
//! then go to the primary: the instance still serves everything); 503 when migrations are
//! pending or unknown to this build, or when unhealthy, the latter with `Retry-After` like
//! every outage.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use service::{DatabaseService, HealthReport, HealthStatus, MigrationsReport};

use crate::error::RETRY_AFTER_SECS;

/// The body of `GET /health`.
#[derive(Debug, Serialize)]
struct HealthBody<'a> {
    status: HealthStatus,
    latency_ms: f64,
    migrations: Option<MigrationCounts>,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<&'a HealthReport>,
}

/// How many of this build's migrations are applied, pending, and recorded but unknown to it.
#[derive(Debug, Serialize)]
struct MigrationCounts {
    applied: usize,
    pending: usize,
    unknown: usize,
}

impl From<&MigrationsReport> for MigrationCounts {
    fn from(report: &MigrationsReport) -> Self {
        Self {
            applied: report.applied,
            pending: report.pending.len(),
            unknown: report.unknown.len(),
        }
    }
}

/// Answers `GET /health` with the report of `db`, its details only when `details`. Answers
/// within the health timeout (`DB_HEALTH_TIMEOUT`) even when the database is gone.
async fn answer(db: &DatabaseService, details: bool) -> Response {
    let report = db.health().await;
    // A replica out of rotation leaves the instance able to serve everything from the
    // primary: `degraded`, but 200, so a load balancer keeps it.
    let status = if report.can_serve() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = HealthBody {
        status: report.status,
        latency_ms: report.latency_ms,
        migrations: report.migrations.as_ref().map(MigrationCounts::from),
        details: details.then_some(&report),
    };
    let mut response = (status, Json(body)).into_response();
    if report.status == HealthStatus::Unhealthy {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
    }
    response
}

/// `GET /health` without details (the default).
pub async fn public(State(db): State<DatabaseService>) -> Response {
    answer(&db, false).await
}

/// `GET /health` with details (`API_HEALTH_DETAILS=true`).
pub async fn detailed(State(db): State<DatabaseService>) -> Response {
    answer(&db, true).await
}
