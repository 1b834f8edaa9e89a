//! [`ApiError`]: the one place where errors become HTTP responses.
//!
//! Every error body is JSON: `{"error": "<message>", "field": "<name>"}`, `field` present when
//! one input field is to blame. Internal errors are logged with `tracing` and answered with a
//! generic message: no body ever carries SQL, a driver message, a database or role name, a
//! server version or a connection URL.
//!
//! Every `503` carries `Retry-After: 1` ([`RETRY_AFTER_SECS`]): the database is down, refusing,
//! read-only, out of connections, or a concurrent transaction won — all of which clear by
//! themselves — so clients and load balancers should come back, not treat it as a bug. One
//! `503` says more: when the connection was lost after a write was sent, the write may have
//! been applied ([`COMMIT_UNKNOWN_MESSAGE`]); a client retrying `POST /users` then gets `409` if
//! it was.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// An error answered to the client: a status, a message safe to show, and the field to blame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    field: Option<String>,
}

/// The JSON body of every error response.
#[derive(Debug, Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
}

/// What a client sees when the database cannot be reached.
pub const UNAVAILABLE_MESSAGE: &str = "the database is unavailable; try again later";
/// What a client sees when the connection was lost after its write was sent
/// (`service::Error::CommitUnknown`): the write may have been applied.
pub const COMMIT_UNKNOWN_MESSAGE: &str = "the database connection was lost after the write was \
     sent: it may or may not have been applied; check before sending it again (creating a user \
     again answers 409 if the first attempt went through)";
/// What a client sees when a concurrent transaction won (`service::Error::Contention`).
pub const CONTENTION_MESSAGE: &str = "the request conflicted with a concurrent one; try again";
/// What a client sees for any other internal failure (the details are in the log).
pub const INTERNAL_MESSAGE: &str = "internal server error";

/// The `Retry-After` of every `503`, in seconds: long enough not to hammer a recovering
/// server, short enough that clients come back about when it does (the pool serves again
/// within about a second of the server; `docs/FAILURE_MODES.md` has the measured figures).
pub const RETRY_AFTER_SECS: u64 = 1;

impl ApiError {
    /// An error with this status and message (shown to the client as is).
    #[must_use]
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            field: None,
        }
    }

    /// 503 for a request the database did not let finish in time.
    #[must_use]
    pub fn timed_out() -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, UNAVAILABLE_MESSAGE)
    }

    /// 422 for an input field that cannot be used.
    #[must_use]
    pub fn invalid_field(field: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, message).with_field(field)
    }

    /// The same error, blaming `field`.
    #[must_use]
    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// The HTTP status.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The message shown to the client.
    #[must_use]
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The field to blame, if one is.
    #[must_use]
    pub fn field(&self) -> Option<&str> {
        self.field.as_deref()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: &self.message,
            field: self.field.as_deref(),
        };
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
        }
        response
    }
}

/// The mapping of the data layer's errors; the only one in this crate.
impl From<service::Error> for ApiError {
    fn from(err: service::Error) -> Self {
        use service::Error;
        if let Error::CommitUnknown { .. } = &err {
            // Never retried here: only the client knows whether sending it again is safe.
            tracing::warn!(error = %err, "write outcome unknown");
            return Self::new(StatusCode::SERVICE_UNAVAILABLE, COMMIT_UNKNOWN_MESSAGE);
        }
        if err.is_unavailable() {
            tracing::warn!(error = %err, "database unavailable");
            return Self::new(StatusCode::SERVICE_UNAVAILABLE, UNAVAILABLE_MESSAGE);
        }
        match &err {
            // These messages name the entity, key or field and what is wrong with the input:
            // nothing internal (see service::Error).
            Error::NotFound { .. } => Self::new(StatusCode::NOT_FOUND, err.to_string()),
            Error::Conflict { field, .. } => {
                Self::new(StatusCode::CONFLICT, err.to_string()).with_field(*field)
            }
            Error::Validation { field, .. } => Self::invalid_field(field, err.to_string()),
            Error::Contention { .. } => {
                tracing::warn!(error = %err, "conflict with a concurrent transaction");
                Self::new(StatusCode::SERVICE_UNAVAILABLE, CONTENTION_MESSAGE)
            }
            // Database, Config, a permanent Connect failure, and whatever comes later: a bug or
            // an operations problem, not the client's. Details to the log only.
            _ => {
                tracing::error!(error = %err, details = ?err, "internal error");
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, INTERNAL_MESSAGE)
            }
        }
    }
}

/// A body that is not JSON (400), not the expected shape (422, naming the field when serde
/// says which), or not sent as `application/json` (415).
impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        let status = rejection.status();
        match json_data_error(&rejection) {
            Some(err) => {
                let path = err.path().to_string();
                let inner = err.inner().to_string();
                let field = if path == "." {
                    // Missing and unknown fields are reported on the object itself.
                    quoted_field(&inner)
                } else {
                    Some(path)
                };
                let message = match &field {
                    Some(field) if !inner.contains(&format!("`{field}`")) => {
                        format!("invalid {field}: {inner}")
                    }
                    _ => format!("invalid request body: {inner}"),
                };
                Self {
                    status,
                    message,
                    field,
                }
            }
            None => Self::new(status, rejection.body_text()),
        }
    }
}

/// A path parameter that does not parse (`/users/abc`): 400.
impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        Self::new(rejection.status(), rejection.body_text())
    }
}

/// A query string that does not parse: 400.
impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        Self::new(rejection.status(), rejection.body_text())
    }
}

/// serde's error for a body that is valid JSON of the wrong shape, with the path to the value.
fn json_data_error(
    rejection: &JsonRejection,
) -> Option<&serde_path_to_error::Error<serde_json::Error>> {
    if !matches!(rejection, JsonRejection::JsonDataError(_)) {
        return None;
    }
    let mut source = std::error::Error::source(rejection);
    while let Some(err) = source {
        if let Some(found) = err.downcast_ref::<serde_path_to_error::Error<serde_json::Error>>() {
            return Some(found);
        }
        source = err.source();
    }
    None
}

/// The field named in serde's "missing field `x`" / "unknown field `x`, expected …".
fn quoted_field(message: &str) -> Option<String> {
    let rest = message
        .strip_prefix("missing field `")
        .or_else(|| message.strip_prefix("unknown field `"))?;
    rest.split_once('`').map(|(field, _)| field.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_errors_map_to_their_status() {
        use service::Error;
        let cases = [
            (
                Error::NotFound {
                    entity: "user",
                    key: "id 7".into(),
                },
                StatusCode::NOT_FOUND,
                None,
            ),
            (
                Error::Conflict {
                    entity: "user",
                    field: "email",
                },
                StatusCode::CONFLICT,
                Some("email"),
            ),
            (
                Error::Validation {
                    field: "name",
                    reason: "must not be empty".into(),
                },
                StatusCode::UNPROCESSABLE_ENTITY,
                Some("name"),
            ),
            (
                Error::Unavailable {
                    operation: "read a user",
                    reason: "connection lost".into(),
                },
                StatusCode::SERVICE_UNAVAILABLE,
                None,
            ),
            (
                Error::Contention {
                    operation: "update a user",
                    reason: "40P01: deadlock detected".into(),
                },
                StatusCode::SERVICE_UNAVAILABLE,
                None,
            ),
        ];
        for (err, status, field) in cases {
            let api = ApiError::from(err);
            assert_eq!(api.status(), status);
            assert_eq!(api.field(), field);
        }
    }

    #[test]
    fn every_503_says_when_to_come_back_and_nothing_else() {
        use service::Error;
        let outage = Error::Unavailable {
            operation: "read a user",
            reason: r#"the database does not exist (3D000: database "app" does not exist)"#.into(),
        };
        let contention = Error::Contention {
            operation: "update a user",
            reason: "40001: could not serialize access".into(),
        };
        let unknown = Error::CommitUnknown {
            operation: "create a user",
            reason: "connection lost (connection reset)".into(),
        };
        for (err, message) in [
            (outage, UNAVAILABLE_MESSAGE),
            (contention, CONTENTION_MESSAGE),
            (unknown, COMMIT_UNKNOWN_MESSAGE),
        ] {
            let api = ApiError::from(err);
            assert_eq!(api.message(), message);
            let response = api.into_response();
            assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(response.headers()[header::RETRY_AFTER], "1");
        }
        let response = ApiError::timed_out().into_response();
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
        let not_found = ApiError::new(StatusCode::NOT_FOUND, "user id 7 not found");
        assert!(
            !not_found
                .into_response()
                .headers()
                .contains_key(header::RETRY_AFTER)
        );
    }

    #[test]
    fn a_database_error_shows_nothing_of_it() {
        let err = service::Error::from_db(
            "read a user",
            sea_orm::DbErr::Custom("SELECT secret FROM user -- postgres://u:pw@db/app".into()),
        );
        assert!(err.to_string().contains("SELECT secret"));
        let api = ApiError::from(err);
        assert_eq!(api.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(api.message(), INTERNAL_MESSAGE);
    }

    #[test]
    fn the_field_is_read_from_missing_and_unknown_field_messages() {
        assert_eq!(
            quoted_field("missing field `email` at line 1 column 2").as_deref(),
            Some("email")
        );
        assert_eq!(
            quoted_field("unknown field `nmae`, expected `email` or `name`").as_deref(),
            Some("nmae")
        );
        assert_eq!(quoted_field("invalid type: integer `5`"), None);
    }
}
