//! Read-your-writes over HTTP, when the data layer has read replicas.
//!
//! Reads (`GET /users`, `GET /users/{id}`) may be served by a replica, which can be a moment
//! behind the primary. So every successful write (`POST`, `PATCH`, `DELETE`) answers with the
//! primary's WAL position after it in the [`READ_AFTER`] header; a client that sends that
//! header back on its reads is served only by a node that has replayed its write. Without the
//! header a read may be slightly stale — but never "not found" for a user that exists: a
//! replica's miss is asked again on the primary. Without replicas the header is never sent and
//! is ignored.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use service::{DatabaseService, Reader, WalPosition};

use crate::error::ApiError;

/// The header: sent on write responses, sent back by clients on reads (`0/16B3748`).
pub const READ_AFTER: HeaderName = HeaderName::from_static("x-read-after");

/// The position a read must have seen, from the request's [`READ_AFTER`] header, if any.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReadAfter(pub Option<WalPosition>);

impl ReadAfter {
    /// A connection for this read: a replica that has replayed the position (any replica in
    /// rotation without one), or the primary.
    #[must_use]
    pub fn reader(self, db: &DatabaseService) -> Reader {
        match self.0 {
            Some(position) => db.reader_after(position),
            None => db.reader(),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ReadAfter {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let Some(value) = parts.headers.get(&READ_AFTER) else {
            return Ok(Self(None));
        };
        value
            .to_str()
            .ok()
            .and_then(|text| text.parse().ok())
            .map(|position| Self(Some(position)))
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "invalid {READ_AFTER} header: expected the value a write answered \
                         with, such as 0/16B3748"
                    ),
                )
                .with_field(READ_AFTER.as_str())
            })
    }
}

/// `response` to a successful write, with the [`READ_AFTER`] header when the service has
/// replicas. The write has happened: if the position cannot be read, the header is left out
/// (and the failure logged) rather than the request failed.
pub async fn after_write(db: &DatabaseService, response: impl IntoResponse) -> Response {
    let mut response = response.into_response();
    match db.write_position().await {
        Ok(Some(position)) => {
            if let Ok(value) = HeaderValue::from_str(&position.to_string()) {
                response.headers_mut().insert(READ_AFTER, value);
            }
        }
        Ok(None) => {}
        Err(err) => tracing::warn!(error = %err, "cannot read the WAL position after a write"),
    }
    response
}
