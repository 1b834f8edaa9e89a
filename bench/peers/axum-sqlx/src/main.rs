//! Benchmark peer: `GET /users/{id}`, `POST /users` and `GET /users?after=&limit=` as a user
//! would write them by hand with axum and raw sqlx (a `PgPool` with sqlx's defaults in the
//! router's state, `query_as` into a `FromRow`-like tuple, serde for the JSON), answering
//! with the same bodies as the `api` crate.
//!
//! Environment: `DATABASE_URL` (required), `API_ADDR` [127.0.0.1:3001], `DB_MAX_CONNECTIONS`
//! [10], `SQLX_TEST_BEFORE_ACQUIRE` [1] (sqlx's default checkout ping; 0 turns it off).

use std::net::SocketAddr;
use std::str::FromStr;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

type Row = (i32, String, String, DateTime<Utc>, DateTime<Utc>);

#[derive(Serialize)]
struct UserBody {
    id: i32,
    email: String,
    name: String,
    created_at: String,
    updated_at: String,
}

impl From<Row> for UserBody {
    fn from((id, email, name, created_at, updated_at): Row) -> Self {
        let ts = |at: DateTime<Utc>| at.to_rfc3339_opts(SecondsFormat::Micros, true);
        Self {
            id,
            email,
            name,
            created_at: ts(created_at),
            updated_at: ts(updated_at),
        }
    }
}

#[derive(Serialize)]
struct PageBody {
    users: Vec<UserBody>,
    next_after: Option<i32>,
}

#[derive(Deserialize)]
struct CreateUser {
    email: String,
    name: String,
}

#[derive(Deserialize)]
struct PageQuery {
    after: Option<i32>,
    limit: Option<i64>,
}

type Failure = (StatusCode, String);

fn internal(err: sqlx::Error) -> Failure {
    (StatusCode::INTERNAL_SERVER_ERROR, err.to_string())
}

async fn get_user(
    State(pool): State<PgPool>,
    Path(id): Path<i32>,
) -> Result<Json<UserBody>, Failure> {
    let row: Option<Row> = sqlx::query_as(
        r#"SELECT id, email, name, created_at, updated_at FROM "user" WHERE id = $1"#,
    )
    .bind(id)
    .fetch_optional(&pool)
    .await
    .map_err(internal)?;
    row.map(|r| Json(r.into()))
        .ok_or((StatusCode::NOT_FOUND, format!("no user {id}")))
}

async fn create_user(
    State(pool): State<PgPool>,
    Json(body): Json<CreateUser>,
) -> Result<(StatusCode, Json<UserBody>), Failure> {
    let row: Row = sqlx::query_as(
        r#"INSERT INTO "user" (email, name) VALUES ($1, $2)
           RETURNING id, email, name, created_at, updated_at"#,
    )
    .bind(body.email.trim().to_lowercase())
    .bind(body.name)
    .fetch_one(&pool)
    .await
    .map_err(|err| match err {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            (StatusCode::CONFLICT, "email taken".to_owned())
        }
        other => internal(other),
    })?;
    Ok((StatusCode::CREATED, Json(row.into())))
}

async fn list_users(
    State(pool): State<PgPool>,
    Query(q): Query<PageQuery>,
) -> Result<Json<PageBody>, Failure> {
    let limit = q.limit.unwrap_or(50).clamp(1, 1000);
    let mut rows: Vec<Row> = sqlx::query_as(
        r#"SELECT id, email, name, created_at, updated_at FROM "user"
           WHERE id > $1 ORDER BY id LIMIT $2"#,
    )
    .bind(q.after.unwrap_or(0))
    .bind(limit + 1)
    .fetch_all(&pool)
    .await
    .map_err(internal)?;
    let next_after = if rows.len() as i64 > limit {
        rows.truncate(limit as usize);
        rows.last().map(|r| r.0)
    } else {
        None
    };
    Ok(Json(PageBody {
        users: rows.into_iter().map(UserBody::from).collect(),
        next_after,
    }))
}

fn env(key: &str, default: &str) -> String {
    std::env::var(key)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_owned())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("DATABASE_URL").map_err(|_| "DATABASE_URL is not set")?;
    let addr: SocketAddr = env("API_ADDR", "127.0.0.1:3001").parse()?;
    let pool = PgPoolOptions::new()
        .max_connections(env("DB_MAX_CONNECTIONS", "10").parse()?)
        .test_before_acquire(env("SQLX_TEST_BEFORE_ACQUIRE", "1") != "0")
        .connect_with(PgConnectOptions::from_str(&url)?)
        .await?;
    let app = Router::new()
        .route("/users", get(list_users).post(create_user))
        .route("/users/{id}", get(get_user))
        .with_state(pool);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
