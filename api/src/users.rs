//! `/users`: create, read, list, update and delete users through `service::user`.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::Response;
use chrono::{SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use service::DatabaseService;
use service::user::{self, NewUser, User, UserChanges, UserPage};

use crate::error::ApiError;
use crate::read_your_writes::{ReadAfter, after_write};

/// Page size of `GET /users` without `limit`.
pub const DEFAULT_PAGE_SIZE: u64 = 50;

/// Body of `POST /users`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    /// Email address; stored trimmed and lower-cased.
    pub email: String,
    /// Display name.
    pub name: String,
}

/// Body of `PATCH /users/{id}`: absent (or `null`) fields are left as they are.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateUser {
    /// New email address.
    #[serde(default)]
    pub email: Option<String>,
    /// New display name.
    #[serde(default)]
    pub name: Option<String>,
}

/// A user as the API shows it; timestamps in RFC 3339, UTC, microseconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserBody {
    /// The user's id.
    pub id: i32,
    /// Normalised email address.
    pub email: String,
    /// Display name.
    pub name: String,
    /// When the user was created.
    pub created_at: String,
    /// When the user was last changed.
    pub updated_at: String,
}

impl From<User> for UserBody {
    fn from(user: User) -> Self {
        let rfc3339 = |at: chrono::DateTime<chrono::FixedOffset>| {
            at.with_timezone(&Utc)
                .to_rfc3339_opts(SecondsFormat::Micros, true)
        };
        Self {
            id: user.id,
            email: user.email,
            name: user.name,
            created_at: rfc3339(user.created_at),
            updated_at: rfc3339(user.updated_at),
        }
    }
}

/// Body of `GET /users`: one page, and the `after` of the next (`null` on the last page).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserPageBody {
    /// The users of this page, in id order.
    pub users: Vec<UserBody>,
    /// Pass as `after` for the next page.
    pub next_after: Option<i32>,
}

impl From<UserPage> for UserPageBody {
    fn from(page: UserPage) -> Self {
        Self {
            users: page.users.into_iter().map(UserBody::from).collect(),
            next_after: page.next_after,
        }
    }
}

/// Query of `GET /users`, read as text so a bad value is a 422 naming the parameter.
#[derive(Debug, Deserialize)]
pub struct ListParams {
    limit: Option<String>,
    after: Option<String>,
}

/// `POST /users` → 201 with the user, `Location: /users/{id}` and, with read replicas,
/// `X-Read-After` (see [`crate::read_your_writes`]).
pub async fn create(
    State(db): State<DatabaseService>,
    body: Result<Json<CreateUser>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body?;
    let created = user::create(
        &db,
        NewUser {
            email: body.email,
            name: body.name,
        },
    )
    .await?;
    let location = format!("/users/{}", created.id);
    let response = (
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(UserBody::from(created)),
    );
    Ok(after_write(&db, response).await)
}

/// `GET /users/{id}` → 200 or 404; a replica may serve it (honouring `X-Read-After`).
pub async fn get(
    State(db): State<DatabaseService>,
    read_after: ReadAfter,
    id: Result<Path<i32>, PathRejection>,
) -> Result<Json<UserBody>, ApiError> {
    let Path(id) = id?;
    Ok(Json(user::get(&read_after.reader(&db), id).await?.into()))
}

/// `GET /users?limit=N&after=ID` → a page in id order; a replica may serve it (honouring
/// `X-Read-After`).
pub async fn list(
    State(db): State<DatabaseService>,
    read_after: ReadAfter,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<UserPageBody>, ApiError> {
    let Query(params) = params?;
    let limit = match non_empty(params.limit.as_deref()) {
        None => DEFAULT_PAGE_SIZE,
        Some(text) => text.parse().map_err(|_| {
            ApiError::invalid_field(
                "limit",
                format!(
                    "invalid limit: {text:?} is not a whole number between 1 and {}",
                    user::MAX_PAGE_SIZE
                ),
            )
        })?,
    };
    let after = match non_empty(params.after.as_deref()) {
        None => None,
        Some(text) => Some(text.parse().map_err(|_| {
            ApiError::invalid_field("after", format!("invalid after: {text:?} is not a user id"))
        })?),
    };
    // The range of `limit` (1..=MAX_PAGE_SIZE) is the repository's rule: a 422 from there.
    Ok(Json(
        user::list(&read_after.reader(&db), limit, after)
            .await?
            .into(),
    ))
}

/// `PATCH /users/{id}` → 200 with the changed user (and `X-Read-After` with replicas).
pub async fn update(
    State(db): State<DatabaseService>,
    id: Result<Path<i32>, PathRejection>,
    body: Result<Json<UpdateUser>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Path(id) = id?;
    let Json(body) = body?;
    let changes = UserChanges {
        email: body.email,
        name: body.name,
    };
    let updated: UserBody = user::update(&db, id, changes).await?.into();
    Ok(after_write(&db, Json(updated)).await)
}

/// `DELETE /users/{id}` → 204 or 404 (and `X-Read-After` with replicas).
pub async fn delete(
    State(db): State<DatabaseService>,
    id: Result<Path<i32>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path(id) = id?;
    user::delete(&db, id).await?;
    Ok(after_write(&db, StatusCode::NO_CONTENT).await)
}

fn non_empty(value: Option<&str>) -> Option<&str> {
    value.map(str::trim).filter(|v| !v.is_empty())
}
