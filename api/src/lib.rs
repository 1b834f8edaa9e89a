//! The HTTP API over the data layer: `axum` routes that use `service` as any outside crate
//! would.
//!
//! * [`build_router`] — every route, with the [`DatabaseService`] in the router's state;
//!   handlers take it with `State<DatabaseService>` (what `Depends(get_db_service)` is in the
//!   Python template).
//! * [`Application`] — binds a listener (port `0`: any free port, for tests), tells the bound
//!   address, serves until a shutdown signal, lets in-flight requests finish, then closes the
//!   pool.
//! * [`run`] — what the `api` binary does: connect, optionally migrate, serve until Ctrl-C or
//!   SIGTERM.
//! * [`ApiError`] — the one mapping of `service::Error` (and of malformed requests) to HTTP.
//!
//! | route                 | answers |
//! | --------------------- | ------- |
//! | `GET /health`         | 200 when the instance can serve (healthy, or degraded only by a read replica), 503 otherwise: status, latency, migration counts ([`health`]); the full report only with `API_HEALTH_DETAILS=true` |
//! | `POST /users`         | 201 + `Location`, 409 email taken, 422 invalid, 400 malformed JSON |
//! | `GET /users`          | `?limit=1..500` (default 50) `&after=ID`: `{"users": [...], "next_after": ID or null}` |
//! | `GET /users/{id}`     | 200, 404 |
//! | `PATCH /users/{id}`   | 200, 404, 409, 422 |
//! | `DELETE /users/{id}`  | 204, 404 |
//! | `GET /metrics`        | the Prometheus text format ([`metrics`]); on `API_METRICS_ADDR` instead when that is set |
//!
//! A database outage answers 503 everywhere, with `Retry-After: 1` ([`error::RETRY_AFTER_SECS`]).
//! With read replicas, the reads may be served by a replica and the writes answer with an
//! `X-Read-After` header to send back for read-your-writes ([`read_your_writes`]).

#![warn(missing_docs)]

pub mod config;
pub mod error;
pub mod health;
pub mod metrics;
pub mod read_your_writes;
pub mod users;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::http::{Method, StatusCode, Uri};
use axum::response::IntoResponse;
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use service::DatabaseService;
use tokio::net::TcpListener;
use tower_http::LatencyUnit;
use tower_http::trace::{DefaultMakeSpan, DefaultOnResponse, TraceLayer};
use tracing::Level;

pub use config::{ApiConfig, ConfigError, Invocation};
pub use error::ApiError;

/// Every route of the API, with `service` as the state its handlers extract. Requests not
/// answered within `request_timeout` get 503; `GET /health` shows the full report only with
/// `health_details` ([`health`]). Every request is counted and timed by route template
/// ([`metrics`]); `GET /metrics` itself is not part of this router (see
/// [`Application::with_metrics`]).
pub fn build_router(
    service: DatabaseService,
    request_timeout: Duration,
    health_details: bool,
) -> Router {
    let health = if health_details {
        get(health::detailed)
    } else {
        get(health::public)
    };
    Router::new()
        .route("/health", health)
        .route("/users", get(users::list).post(users::create))
        .route(
            "/users/{id}",
            get(users::get).patch(users::update).delete(users::delete),
        )
        .fallback(no_route)
        .layer(axum::middleware::from_fn(move |request, next| {
            answer_within(request_timeout, request, next)
        }))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(DefaultMakeSpan::new().level(Level::INFO))
                .on_response(
                    DefaultOnResponse::new()
                        .level(Level::INFO)
                        .latency_unit(LatencyUnit::Millis),
                ),
        )
        .layer(axum::middleware::from_fn(metrics::track))
        .with_state(service)
}

/// Answers 503 when a request has not been answered within `limit`: the database is hung or
/// unreachable without refusing connections (a dead network path), which no pool timeout
/// notices. It also bounds how long graceful shutdown waits for in-flight requests.
async fn answer_within(
    limit: Duration,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            tracing::warn!(limit_ms = limit.as_millis(), "request timed out");
            error::ApiError::timed_out().into_response()
        }
    }
}

async fn no_route(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("no route for {method} {}", uri.path()),
    )
}

/// A bound server, not yet serving.
#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    addr: SocketAddr,
    service: DatabaseService,
    request_timeout: Duration,
    health_details: bool,
    metrics: Option<MetricsEndpoint>,
}

/// Where and from what `GET /metrics` is served.
#[derive(Debug)]
struct MetricsEndpoint {
    handle: PrometheusHandle,
    /// A listener of its own (`API_METRICS_ADDR`), or `None` for the API's.
    listener: Option<(TcpListener, SocketAddr)>,
}

impl Application {
    /// Binds `addr` (port `0`: any free port) for the routes of [`build_router`] over
    /// `service`.
    ///
    /// # Errors
    ///
    /// The listener's error (address in use, not permitted, …).
    pub async fn bind(addr: SocketAddr, service: DatabaseService) -> io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        Ok(Self {
            listener,
            addr,
            service,
            request_timeout: config::DEFAULT_REQUEST_TIMEOUT,
            health_details: false,
            metrics: None,
        })
    }

    /// Serve `GET /metrics` from `handle` (see [`metrics::install_recorder`]) on the API's own
    /// address.
    #[must_use]
    pub fn with_metrics(mut self, handle: PrometheusHandle) -> Self {
        self.metrics = Some(MetricsEndpoint {
            handle,
            listener: None,
        });
        self
    }

    /// Serve `GET /metrics` from `handle` on a listener of its own bound at `addr` (port `0`:
    /// any free port) instead of the API's address, which then answers 404 for it.
    ///
    /// # Errors
    ///
    /// The listener's error (address in use, not permitted, …).
    pub async fn with_metrics_on(
        mut self,
        handle: PrometheusHandle,
        addr: SocketAddr,
    ) -> io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        self.metrics = Some(MetricsEndpoint {
            handle,
            listener: Some((listener, addr)),
        });
        Ok(self)
    }

    /// The address `GET /metrics` is served on, if it is.
    #[must_use]
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics
            .as_ref()
            .map(|metrics| match &metrics.listener {
                Some((_, addr)) => *addr,
                None => self.addr,
            })
    }

    /// Answer 503 to requests not answered within `limit` (default
    /// [`config::DEFAULT_REQUEST_TIMEOUT`]).
    #[must_use]
    pub fn with_request_timeout(mut self, limit: Duration) -> Self {
        self.request_timeout = limit;
        self
    }

    /// Show the full report at `GET /health` (default: status, latency and migration counts
    /// only; see [`health`]).
    #[must_use]
    pub fn with_health_details(mut self, shown: bool) -> Self {
        self.health_details = shown;
        self
    }

    /// The address actually bound.
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves until `shutdown` completes; then stops accepting, lets in-flight requests
    /// finish, and closes the pool (every clone of the service).
    ///
    /// # Errors
    ///
    /// An I/O error of the server.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> io::Result<()> {
        let mut router = build_router(
            self.service.clone(),
            self.request_timeout,
            self.health_details,
        );
        // Scrapes need no graceful end: the metrics tasks stop with the API.
        let mut metrics_tasks = Vec::new();
        if let Some(MetricsEndpoint { handle, listener }) = self.metrics {
            metrics_tasks.push(metrics::spawn_upkeep(handle.clone()));
            let scrape = metrics::router(handle, self.service.clone());
            match listener {
                Some((listener, _)) => metrics_tasks.push(tokio::spawn(async move {
                    if let Err(err) = axum::serve(listener, scrape).await {
                        tracing::error!(error = %err, "the metrics listener failed");
                    }
                })),
                None => router = router.merge(scrape),
            }
        }
        let served = axum::serve(self.listener, router)
            .with_graceful_shutdown(shutdown)
            .await;
        for task in metrics_tasks {
            task.abort();
        }
        tracing::info!("requests finished; closing the database pool");
        if let Err(err) = self.service.close().await {
            tracing::warn!(error = %err, "closing the database pool failed");
        }
        served
    }

    /// Serves until Ctrl-C or SIGTERM (see [`run_until`](Self::run_until)).
    ///
    /// # Errors
    ///
    /// An I/O error of the server.
    pub async fn run(self) -> io::Result<()> {
        self.run_until(shutdown_signal()).await
    }
}

/// Completes on Ctrl-C (SIGINT) or, on Unix, SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %err, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::error!(error = %err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("Ctrl-C received; shutting down"),
        () = terminate => tracing::info!("SIGTERM received; shutting down"),
    }
}

/// Why the API could not start or serve.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The database could not be connected to.
    #[error("cannot connect to the database: {0}")]
    Connect(#[source] service::Error),
    /// `--migrate` / `API_MIGRATE` was given and applying the migrations failed.
    #[error("cannot apply the migrations: {0}")]
    Migrate(#[source] service::Error),
    /// The address could not be bound.
    #[error("cannot listen on {addr} (API_ADDR): {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: io::Error,
    },
    /// The metrics address could not be bound.
    #[error("cannot listen on {addr} (API_METRICS_ADDR): {source}")]
    BindMetrics {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: io::Error,
    },
    /// The Prometheus recorder could not be installed.
    #[error(transparent)]
    Metrics(#[from] metrics::InstallError),
    /// The server failed while serving.
    #[error("the server failed: {0}")]
    Serve(#[source] io::Error),
}

/// What the `api` binary does: installs the Prometheus recorder, connects to the database,
/// applies migrations when `config.migrate`, serves on `config.addr` (and `GET /metrics` there
/// or on `config.metrics_addr`) until `shutdown` completes, then closes the pool.
///
/// # Errors
///
/// [`StartError`] saying which step failed (never showing a password).
pub async fn run(
    config: ApiConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    let metrics = metrics::install_recorder()?;
    let service = DatabaseService::connect(&config.database)
        .await
        .map_err(StartError::Connect)?;
    if config.migrate {
        tracing::info!("applying pending migrations");
        if let Err(err) = service.apply_migrations(&config.migrations).await {
            let _ = service.close().await;
            return Err(StartError::Migrate(err));
        }
    }
    let report = service.health().await;
    if let Some(migrations) = report.migrations.as_ref().filter(|m| !m.pending.is_empty()) {
        tracing::warn!(
            pending = migrations.pending.len(),
            "migrations are pending: /health answers 503 until they are applied \
             (run with --migrate, API_MIGRATE=true, or `cargo run -p migration -- up`)"
        );
    }
    let app = match Application::bind(config.addr, service.clone()).await {
        Ok(app) => app
            .with_request_timeout(config.request_timeout)
            .with_health_details(config.health_details),
        Err(source) => {
            let _ = service.close().await;
            return Err(StartError::Bind {
                addr: config.addr,
                source,
            });
        }
    };
    let app = match config.metrics_addr {
        None => app.with_metrics(metrics),
        Some(addr) => match app.with_metrics_on(metrics, addr).await {
            Ok(app) => app,
            Err(source) => {
                let _ = service.close().await;
                return Err(StartError::BindMetrics { addr, source });
            }
        },
    };
    tracing::info!("listening on http://{}", app.local_addr());
    if let Some(addr) = app.metrics_addr() {
        tracing::info!("metrics at http://{addr}/metrics");
    }
    app.run_until(shutdown).await.map_err(StartError::Serve)?;
    tracing::info!("stopped");
    Ok(())
}

/// Logs to stderr through `tracing`, filtered by `RUST_LOG` (default `info`: requests,
/// start-up, shutdown; with `DB_ECHO=true` also every statement, target `sqlx::query`).
pub fn init_tracing() {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("RUST_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .with_ansi(io::stderr().is_terminal())
        .try_init();
}
