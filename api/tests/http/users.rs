//! `/users`: every status code of every route.

use std::time::Duration;

use chrono::{DateTime, FixedOffset};
use reqwest::{Method, StatusCode};
use sea_orm::ConnectionTrait;
use serde_json::{Value, json};

use crate::on_both_backends;
use crate::support::{TestServer, assert_error, assert_no_internals, id_of, status_and_json};
use test_support::{TestBackend, TestDatabase};

on_both_backends!(
    create_answers_201_with_the_stored_user_and_its_location,
    create_answers_409_for_an_email_taken_in_any_case,
    create_answers_422_naming_the_invalid_field,
    create_answers_400_for_malformed_json_and_415_without_json,
    get_answers_200_or_404,
    patch_answers_200_and_moves_updated_at_forward,
    patch_answers_404_409_422_and_400,
    delete_answers_204_then_404,
    list_pages_through_every_user_with_the_cursor,
    list_answers_422_for_a_limit_out_of_range_or_a_bad_cursor,
    an_unknown_route_answers_404_in_json,
    a_database_error_answers_500_without_internals,
);

fn timestamp(user: &Value, field: &str) -> DateTime<FixedOffset> {
    let text = user[field]
        .as_str()
        .unwrap_or_else(|| panic!("no {field}: {user}"));
    DateTime::parse_from_rfc3339(text).unwrap_or_else(|e| panic!("{field}={text:?}: {e}"))
}

async fn create_answers_201_with_the_stored_user_and_its_location(backend: TestBackend) {
    let db = TestDatabase::new(backend).await;
    let server = TestServer::start(db.config()).await;

    let response = server
        .post(
            "/users",
            &json!({"email": "  Ada@Example.COM ", "name": "Ada Lovelace"}),
        )
        .await;

    let location = response
        .headers()
        .get(reqwest::header::LOCATION)
        .map(|v| v.to_str().unwrap().to_owned());
    let (status, user) = status_and_json(response).await;
    assert_eq!(status, StatusCode::CREATED, "{user}");
    let id = id_of(&user);
    assert!(id > 0);
    assert_eq!(location.as_deref(), Some(format!("/users/{id}").as_str()));
    assert_eq!(user["email"], "ada@example.com");
    assert_eq!(user["name"], "Ada Lovelace");
    let created_at = timestamp(&user, "created_at");
    assert_eq!(created_at, timestamp(&user, "updated_at"));
    let age = chrono::Utc::now().signed_duration_since(created_at);
    assert!(age.num_seconds().abs() < 60, "created_at {created_at}");
    assert_eq!(
        user.as_object().unwrap().len(),
        5,
        "id, email, name, created_at, updated_at: {user}"
    );

    // The location is where the user is.
    let (status, fetched) = status_and_json(server.get(location.as_deref().unwrap()).await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(fetched, user);
}

async fn create_answers_409_for_an_email_taken_in_any_case(backend: TestBackend) {
    let db = TestDatabase::new(backend).await;
    let server = TestServer::start(db.config()).await;
    server.create_user("ada@example.com", "Ada").await;

    for email in ["ada@example.com", "ADA@Example.Com", " ada@EXAMPLE.com\t"] {
        let response = server
            .post("/users", &json!({"email": email, "name": "Another Ada"}))
            .await;
        assert_error(
            response,
            StatusCode::CONFLICT,
            Some("email"),
            "a user with this email already exists",
        )
        .await;
    }

    // Still exactly one.
    let (_, page) = status_and_json(server.get("/users").await).await;
    assert_eq!(page["users"].as_array().unwrap().len(), 1, "{page}");
}

async fn create_answers_422_naming_the_invalid_field(backend: TestBackend) {
    let db = TestDatabase::new(backend).await;
    let server = TestServer::start(db.config()).await;

    let body = assert_error(
        server
            .post("/users", &json!({"email": "not-an-email", "name": "Ada"}))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        Some("email"),
        "invalid email: must contain exactly one @",
    )
    .await;
    assert_eq!(
        body,
        json!({"error": "invalid email: must contain exactly one @ with text on both sides",
               "field": "email"})
    );
    assert_error(
        server
            .post(
                "/users",
                &json!({"email": "ada@example.com", "name": "   "}),
            )
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        Some("name"),
        "invalid name: must not be empty",
    )
    .await;
    let too_long = "x".repeat(256);
    assert_error(
        server
            .post(
                "/users",
                &json!({"email": "ada@example.com", "name": too_long}),
            )
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        Some("name"),
        "at most 255 characters",
    )
    .await;
    // Shape errors, found by the JSON extractor: the field comes from serde.
    assert_error(
        server
            .post("/users", &json!({"email": "ada@example.com"}))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        Some("name"),
        "missing field `name`",
    )
    .await;
    assert_error(
        server
            .post("/users", &json!({"email": 42, "name": "Ada"}))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        Some("email"),
        "invalid type: integer `42`, expected a string",
    )
    .await;
    assert_error(
        server
            .post(
                "/users",
                &json!({"email": "ada@example.com", "name": "Ada", "admin": true}),
            )
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        Some("admin"),
        "unknown field `admin`",
    )
    .await;
    assert_error(
        server.post("/users", &json!("ada@example.com")).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        None,
        "invalid type: string",
    )
    .await;

    // Nothing was created.
    let (_, page) = status_and_json(server.get("/users").await).await;
    assert_eq!(page, json!({"users": [], "next_after": null}));
}

async fn create_answers_400_for_malformed_json_and_415_without_json(backend: TestBackend) {
    let db = TestDatabase::new(backend).await;
    let server = TestServer::start(db.config()).await;

    for malformed in [
        r#"{"email": "ada@example.com", "name": "Ada""#,
        "{email: 'ada@example.com'}",
        "",
    ] {
        let response = server
            .send_raw(Method::POST, "/users", "application/json", malformed)
            .await;
        let body = assert_error(
            response,
            StatusCode::BAD_REQUEST,
            None,
            "Failed to parse the request body as JSON",
        )
        .await;
        assert!(body.get("field").is_none(), "{body}");
    }

    let response = server
        .send_raw(
            Method::POST,
            "/users",
            "text/plain",
            r#"{"email": "ada@example.com", "name": "Ada"}"#,
        )
        .await;
    assert_error(
        response,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        None,
        "Content-Type: application/json",
    )
    .await;
}

async fn get_answers_200_or_404(backend: TestBackend) {
    let db = TestDatabase::new(backend).await;
    let server = TestServer::start(db.config()).await;
    let ada = server.create_user("ada@example.com", "Ada").await;
    let grace = server.create_user("grace@example.com", "Grace").await;

    let (status, fetched) =
        status_and_json(server.get(&format!("/users/{}", id_of(&grace))).await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(fetched, grace);
    let (status, fetched) =
        status_and_json(server.get(&format!("/users/{}", id_of(&ada))).await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(fetched["email"], "ada@example.com");

    assert_error(
        server.get("/users/999999").await,
        StatusCode::NOT_FOUND,
        None,
        "user id 999999 not found",
    )
    .await;
    // Not an id at all: the path does not parse.
    assert_error(
        server.get("/users/ada").await,
        StatusCode::BAD_REQUEST,
        None,
        "Cannot parse",
    )
    .await;
}

async fn patch_answers_200_and_moves_updated_at_forward(backend: TestBackend) {
    let db = TestDatabase::new(backend).await;
    let server = TestServer::start(db.config()).await;
    let ada = server.create_user("ada@example.com", "Ada").await;
    let path = format!("/users/{}", id_of(&ada));
    // SQLite timestamps have millisecond resolution.
    tokio::time::sleep(Duration::from_millis(20)).await;

    let (status, renamed) =
        status_and_json(server.patch(&path, &json!({"name": "Ada Lovelace"})).await).await;

    assert_eq!(status, StatusCode::OK, "{renamed}");
    assert_eq!(renamed["id"], ada["id"]);
    assert_eq!(renamed["name"], "Ada Lovelace");
    assert_eq!(renamed["email"], "ada@example.com");
    assert_eq!(renamed["created_at"], ada["created_at"]);
    assert!(
        timestamp(&renamed, "updated_at") > timestamp(&ada, "updated_at"),
        "{ada} -> {renamed}"
    );

    tokio::time::sleep(Duration::from_millis(20)).await;
    let (status, moved) = status_and_json(
        server
            .patch(&path, &json!({"email": "Ada@Lovelace.ORG", "name": null}))
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{moved}");
    assert_eq!(moved["email"], "ada@lovelace.org");
    assert_eq!(moved["name"], "Ada Lovelace");
    assert!(timestamp(&moved, "updated_at") > timestamp(&renamed, "updated_at"));

    // Stored, not just echoed.
    let (_, fetched) = status_and_json(server.get(&path).await).await;
    assert_eq!(fetched, moved);
}

async fn patch_answers_404_409_422_and_400(backend: TestBackend) {
    let db = TestDatabase::new(backend).await;
    let server = TestServer::start(db.config()).await;
    let ada = server.create_user("ada@example.com", "Ada").await;
    server.create_user("grace@example.com", "Grace").await;
    let path = format!("/users/{}", id_of(&ada));

    assert_error(
        server
            .patch("/users/999999", &json!({"name": "Nobody"}))
            .await,
        StatusCode::NOT_FOUND,
        None,
        "user id 999999 not found",
    )
    .await;
    assert_error(
        server
            .patch(&path, &json!({"email": "GRACE@example.com"}))
            .await,
        StatusCode::CONFLICT,
        Some("email"),
        "already exists",
    )
    .await;
    assert_error(
        server
            .patch(&path, &json!({"email": "ada at example"}))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        Some("email"),
        "invalid email: must not contain spaces",
    )
    .await;
    assert_error(
        server.patch(&path, &json!({"name": ""})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        Some("name"),
        "invalid name: must not be empty",
    )
    .await;
    assert_error(
        server.patch(&path, &json!({"name": ["Ada"]})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        Some("name"),
        "invalid type: sequence",
    )
    .await;
    assert_error(
        server.patch(&path, &json!({"nmae": "Ada"})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        Some("nmae"),
        "unknown field `nmae`",
    )
    .await;
    assert_error(
        server
            .send_raw(Method::PATCH, &path, "application/json", "{\"name\": ")
            .await,
        StatusCode::BAD_REQUEST,
        None,
        "Failed to parse the request body as JSON",
    )
    .await;

    // None of it changed the user.
    let (_, fetched) = status_and_json(server.get(&path).await).await;
    assert_eq!(fetched, ada);
}

async fn delete_answers_204_then_404(backend: TestBackend) {
    let db = TestDatabase::new(backend).await;
    let server = TestServer::start(db.config()).await;
    let ada = server.create_user("ada@example.com", "Ada").await;
    let grace = server.create_user("grace@example.com", "Grace").await;
    let path = format!("/users/{}", id_of(&ada));

    let response = server.delete(&path).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert!(response.text().await.unwrap().is_empty());

    assert_error(
        server.get(&path).await,
        StatusCode::NOT_FOUND,
        None,
        "not found",
    )
    .await;
    assert_error(
        server.delete(&path).await,
        StatusCode::NOT_FOUND,
        None,
        "not found",
    )
    .await;
    // The other user is untouched, and the email is free again.
    let (status, _) = status_and_json(server.get(&format!("/users/{}", id_of(&grace))).await).await;
    assert_eq!(status, StatusCode::OK);
    server.create_user("ADA@example.com", "Ada again").await;
}

async fn list_pages_through_every_user_with_the_cursor(backend: TestBackend) {
    let db = TestDatabase::new(backend).await;
    let server = TestServer::start(db.config()).await;
    let mut created = Vec::new();
    for n in 0..5 {
        let user = server
            .create_user(&format!("user{n}@example.com"), &format!("User {n}"))
            .await;
        created.push(user);
    }

    let mut seen = Vec::new();
    let mut pages = 0;
    let mut path = "/users?limit=2".to_owned();
    loop {
        let (status, page) = status_and_json(server.get(&path).await).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        pages += 1;
        let users = page["users"].as_array().unwrap().clone();
        assert!(users.len() <= 2, "{page}");
        match page["next_after"].as_i64() {
            Some(next) => {
                assert_eq!(users.len(), 2);
                assert_eq!(next, id_of(users.last().unwrap()));
                path = format!("/users?limit=2&after={next}");
            }
            None => {
                assert!(page["next_after"].is_null(), "{page}");
                seen.extend(users);
                break;
            }
        }
        seen.extend(users);
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, created, "every user once, in id order");

    // The default page size (50) holds them all.
    let (status, page) = status_and_json(server.get("/users").await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page, json!({"users": created, "next_after": null}));
    // After the last id: an empty last page.
    let last = id_of(created.last().unwrap());
    let (_, page) = status_and_json(server.get(&format!("/users?after={last}")).await).await;
    assert_eq!(page, json!({"users": [], "next_after": null}));
    // The largest page is allowed.
    let (status, page) = status_and_json(server.get("/users?limit=500").await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["users"].as_array().unwrap().len(), 5);
}

async fn list_answers_422_for_a_limit_out_of_range_or_a_bad_cursor(backend: TestBackend) {
    let db = TestDatabase::new(backend).await;
    let server = TestServer::start(db.config()).await;
    server.create_user("ada@example.com", "Ada").await;

    for limit in ["0", "501", "100000"] {
        assert_error(
            server.get(&format!("/users?limit={limit}")).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("limit"),
            "invalid limit: must be between 1 and 500",
        )
        .await;
    }
    for limit in ["-1", "ten", "2.5"] {
        assert_error(
            server.get(&format!("/users?limit={limit}")).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("limit"),
            "not a whole number between 1 and 500",
        )
        .await;
    }
    assert_error(
        server.get("/users?after=last").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        Some("after"),
        "invalid after",
    )
    .await;
}

async fn an_unknown_route_answers_404_in_json(backend: TestBackend) {
    let db = TestDatabase::new(backend).await;
    let server = TestServer::start(db.config()).await;

    assert_error(
        server.get("/accounts").await,
        StatusCode::NOT_FOUND,
        None,
        "no route for GET /accounts",
    )
    .await;
}

async fn a_database_error_answers_500_without_internals(backend: TestBackend) {
    let db = TestDatabase::new(backend).await;
    let server = TestServer::start(db.config()).await;
    let ada = server.create_user("ada@example.com", "Ada").await;
    // A broken schema: every query now fails inside the database.
    db.connection()
        .execute_unprepared(r#"DROP TABLE "user""#)
        .await
        .unwrap();

    for response in [
        server.get(&format!("/users/{}", id_of(&ada))).await,
        server.get("/users").await,
        server
            .post(
                "/users",
                &json!({"email": "grace@example.com", "name": "Grace"}),
            )
            .await,
    ] {
        let (status, body) = status_and_json(response).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
        assert_eq!(body, json!({"error": "internal server error"}));
        assert_no_internals(&body);
    }
}
