//! The `user` repository, through the public API, on both backends.

use std::collections::HashSet;
use std::time::Duration;

use service::Error;
use service::user::{self, UserChanges};

use crate::on_both_backends;
use test_support::{TestBackend, TestDatabase, new_user};

on_both_backends!(
    create_normalises_the_email_and_returns_the_stored_row,
    create_rejects_an_email_taken_in_another_case,
    create_rejects_each_invalid_field_before_the_database,
    get_returns_the_user_or_not_found,
    find_by_email_ignores_case_and_surrounding_spaces,
    find_by_email_finds_rows_stored_in_mixed_case_by_other_clients,
    list_visits_every_row_exactly_once,
    list_rejects_a_limit_out_of_range,
    update_changes_fields_and_moves_updated_at,
    update_rejects_a_taken_email_and_unknown_ids,
    delete_removes_the_user_once,
);

async fn create_normalises_the_email_and_returns_the_stored_row(backend: TestBackend) {
    let db = TestDatabase::new(backend).await;

    let ada = user::create(db.service(), new_user("  Ada@Example.COM ", " Ada "))
        .await
        .unwrap();

    assert!(ada.id > 0);
    assert_eq!(ada.email, "ada@example.com");
    assert_eq!(ada.name, " Ada ", "names are stored as given");
    assert_eq!(ada.created_at, ada.updated_at);
    assert_eq!(user::get(db.service(), ada.id).await.unwrap(), ada);
}

async fn create_rejects_an_email_taken_in_another_case(backend: TestBackend) {
    let db = TestDatabase::new(backend).await;
    user::create(db.service(), new_user("ada@example.com", "Ada"))
        .await
        .unwrap();

    let err = user::create(db.service(), new_user("ADA@Example.com", "Other"))
        .await
        .unwrap_err();

    assert!(
        matches!(
            err,
            Error::Conflict {
                entity: "user",
                field: "email"
            }
        ),
        "{err:?}"
    );
    let page = user::list(db.service(), 10, None).await.unwrap();
    assert_eq!(page.users.len(), 1);
}

async fn create_rejects_each_invalid_field_before_the_database(backend: TestBackend) {
    let db = TestDatabase::new(backend).await;
    let long = "x".repeat(256);
    let cases = [
        (new_user("", "A"), "email"),
        (new_user("no-at-sign", "A"), "email"),
        (new_user("two@@x.io", "A"), "email"),
        (new_user(&format!("{long}@x.io"), "A"), "email"),
        (new_user("nul\0@x.io", "A"), "email"),
        (new_user("a b@x.io", "A"), "email"),
        (new_user("a@x.io", ""), "name"),
        (new_user("a@x.io", "   "), "name"),
        (new_user("a@x.io", &long), "name"),
        (new_user("a@x.io", "bell\u{7}"), "name"),
        (new_user("a@x.io", "nul\0"), "name"),
    ];
    for (input, expected_field) in cases {
        let err = user::create(db.service(), input.clone()).await.unwrap_err();
        assert!(
            matches!(&err, Error::Validation { field, .. } if *field == expected_field),
            "{input:?}: {err:?}"
        );
    }
    assert!(
        user::list(db.service(), 10, None)
            .await
            .unwrap()
            .users
            .is_empty()
    );
}

async fn get_returns_the_user_or_not_found(backend: TestBackend) {
    let db = TestDatabase::new(backend).await;
    let ada = user::create(db.service(), new_user("ada@x.io", "Ada"))
        .await
        .unwrap();

    assert_eq!(
        user::get(db.service(), ada.id).await.unwrap().email,
        "ada@x.io"
    );
    let err = user::get(db.service(), ada.id + 1000).await.unwrap_err();
    assert!(
        matches!(err, Error::NotFound { entity: "user", .. }),
        "{err:?}"
    );
}

async fn find_by_email_ignores_case_and_surrounding_spaces(backend: TestBackend) {
    let db = TestDatabase::new(backend).await;
    let ada = user::create(db.service(), new_user("ada@x.io", "Ada"))
        .await
        .unwrap();

    let found = user::find_by_email(db.service(), "  ADA@X.IO ")
        .await
        .unwrap();

    assert_eq!(found, Some(ada));
    assert_eq!(
        user::find_by_email(db.service(), "bob@x.io").await.unwrap(),
        None
    );
    assert!(matches!(
        user::find_by_email(db.service(), "not an email").await,
        Err(Error::Validation { field: "email", .. })
    ));
}

async fn find_by_email_finds_rows_stored_in_mixed_case_by_other_clients(backend: TestBackend) {
    use sea_orm::ConnectionTrait;
    let db = TestDatabase::new(backend).await;
    db.connection()
        .execute_unprepared(r#"INSERT INTO "user" (email, name) VALUES ('Mixed@Case.io', 'm')"#)
        .await
        .unwrap();

    let found = user::find_by_email(db.service(), "mixed@case.io")
        .await
        .unwrap();

    assert_eq!(found.unwrap().email, "Mixed@Case.io");
    let err = user::create(db.service(), new_user("MIXED@case.io", "n"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Conflict { .. }), "{err:?}");
}

async fn list_visits_every_row_exactly_once(backend: TestBackend) {
    let db = TestDatabase::new(backend).await;
    let mut created = HashSet::new();
    for i in 0..23 {
        let u = user::create(db.service(), new_user(&format!("u{i}@x.io"), "u"))
            .await
            .unwrap();
        created.insert(u.id);
    }
    // A hole in the id sequence must not break the cursor.
    let removed = *created.iter().min().unwrap() + 5;
    user::delete(db.service(), removed).await.unwrap();
    created.remove(&removed);

    let mut seen = Vec::new();
    let mut after = None;
    let mut pages = 0;
    loop {
        let page = user::list(db.service(), 5, after).await.unwrap();
        pages += 1;
        assert!(page.users.len() <= 5);
        seen.extend(page.users.iter().map(|u| u.id));
        match page.next_after {
            Some(next) => after = Some(next),
            None => break,
        }
    }

    assert_eq!(pages, 5, "22 rows in pages of 5");
    assert_eq!(seen.len(), created.len(), "no row twice");
    assert_eq!(seen.iter().copied().collect::<HashSet<_>>(), created);
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "in id order");
}

async fn list_rejects_a_limit_out_of_range(backend: TestBackend) {
    let db = TestDatabase::new(backend).await;
    for limit in [0, user::MAX_PAGE_SIZE + 1] {
        let err = user::list(db.service(), limit, None).await.unwrap_err();
        assert!(
            matches!(err, Error::Validation { field: "limit", .. }),
            "{err:?}"
        );
    }
    assert!(
        user::list(db.service(), user::MAX_PAGE_SIZE, None)
            .await
            .is_ok()
    );
}

async fn update_changes_fields_and_moves_updated_at(backend: TestBackend) {
    let db = TestDatabase::new(backend).await;
    let ada = user::create(db.service(), new_user("ada@x.io", "Ada"))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;

    let renamed = user::update(
        db.service(),
        ada.id,
        UserChanges {
            name: Some("Ada Lovelace".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();

    assert_eq!(renamed.name, "Ada Lovelace");
    assert_eq!(renamed.email, "ada@x.io");
    assert_eq!(renamed.created_at, ada.created_at);
    assert!(
        renamed.updated_at > ada.updated_at,
        "{renamed:?} vs {ada:?}"
    );

    tokio::time::sleep(Duration::from_millis(20)).await;
    let moved = user::update(
        db.service(),
        ada.id,
        UserChanges {
            email: Some(" Ada@Lovelace.ORG".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(moved.email, "ada@lovelace.org");
    assert!(moved.updated_at > renamed.updated_at);
    assert_eq!(user::get(db.service(), ada.id).await.unwrap(), moved);

    let unchanged = user::update(db.service(), ada.id, UserChanges::default())
        .await
        .unwrap();
    assert_eq!(unchanged, moved);
}

async fn update_rejects_a_taken_email_and_unknown_ids(backend: TestBackend) {
    let db = TestDatabase::new(backend).await;
    user::create(db.service(), new_user("ada@x.io", "Ada"))
        .await
        .unwrap();
    let bob = user::create(db.service(), new_user("bob@x.io", "Bob"))
        .await
        .unwrap();
    let take_adas = UserChanges {
        email: Some("ADA@x.io".into()),
        ..Default::default()
    };

    let err = user::update(db.service(), bob.id, take_adas.clone())
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Conflict { field: "email", .. }),
        "{err:?}"
    );
    assert_eq!(user::get(db.service(), bob.id).await.unwrap(), bob);

    let err = user::update(
        db.service(),
        bob.id + 1000,
        UserChanges {
            name: Some("Nobody".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");

    let err = user::update(
        db.service(),
        bob.id,
        UserChanges {
            email: Some("bad".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, Error::Validation { field: "email", .. }),
        "{err:?}"
    );
}

async fn delete_removes_the_user_once(backend: TestBackend) {
    let db = TestDatabase::new(backend).await;
    let ada = user::create(db.service(), new_user("ada@x.io", "Ada"))
        .await
        .unwrap();

    user::delete(db.service(), ada.id).await.unwrap();

    assert!(matches!(
        user::get(db.service(), ada.id).await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        user::delete(db.service(), ada.id).await,
        Err(Error::NotFound { .. })
    ));
}
