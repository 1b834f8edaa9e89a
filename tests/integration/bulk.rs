//! `user::create_many`, on both backends: through the pool (COPY on PostgreSQL, multi-row
//! INSERT on SQLite) and inside a caller's transaction (multi-row INSERT in a savepoint).
//! Also `get_as`/`create_as`, whose fast path on the PostgreSQL pool bypasses SeaORM's query
//! execution (the benchmark's hot paths).

use sea_orm::{ConnectionTrait, EntityTrait, PaginatorTrait, QueryOrder, TransactionTrait};
use service::Error;
use service::user::{self, NewUser};

use crate::on_both_backends;
use test_support::{TestBackend, TestDatabase, new_user};

on_both_backends!(
    create_many_inserts_every_row_and_returns_the_count,
    create_many_stores_hostile_values_exactly,
    create_many_in_a_transaction_chunks_under_the_bind_limit,
    create_many_rejects_a_duplicate_inside_the_batch,
    create_many_rejects_an_email_taken_by_an_existing_row,
    create_many_in_a_transaction_leaves_it_usable_after_a_conflict,
    create_many_names_the_first_invalid_row_and_inserts_nothing,
    create_many_of_nothing_inserts_nothing,
    get_as_and_create_as_behave_like_get_and_create,
);

/// Every stored `(email, name)`, in id order.
async fn stored<C: ConnectionTrait>(db: &C) -> Vec<(String, String)> {
    entity::user::Entity::find()
        .order_by_asc(entity::user::Column::Id)
        .all(db)
        .await
        .unwrap()
        .into_iter()
        .map(|u| (u.email, u.name))
        .collect()
}

async fn count<C: ConnectionTrait>(db: &C) -> u64 {
    entity::user::Entity::find().count(db).await.unwrap()
}

fn assert_conflict(result: service::Result<u64>) {
    match result {
        Err(Error::Conflict {
            entity: "user",
            field: "email",
        }) => {}
        other => panic!("expected a conflict on the email, got {other:?}"),
    }
}

async fn create_many_inserts_every_row_and_returns_the_count(backend: TestBackend) {
    let db = TestDatabase::new(backend).await;
    // Over 1 MiB of COPY data on PostgreSQL (several CopyData messages), several INSERT
    // statements on SQLite.
    let users: Vec<NewUser> = (0..50_000)
        .map(|i| new_user(&format!(" User{i}@Bulk.Example "), &format!("User {i}")))
        .collect();

    let inserted = user::create_many(db.service(), &users).await.unwrap();

    assert_eq!(inserted, 50_000);
    let rows = stored(db.connection()).await;
    assert_eq!(rows.len(), 50_000);
    let expected: Vec<(String, String)> = (0..50_000)
        .map(|i| (format!("user{i}@bulk.example"), format!("User {i}")))
        .collect();
    assert_eq!(
        rows, expected,
        "normalised emails, names as given, in order"
    );
}

/// Values that mean something to COPY's text format (or to SQL) must arrive unchanged.
fn hostile_users() -> Vec<NewUser> {
    vec![
        new_user(r"back\slash@x.io", r"\N"),
        new_user(r"a\\b@x.io", r"\."),
        new_user("tab@x.io", r"literal \t and \n and \r"),
        new_user("trail@x.io", "ends with a backslash \\"),
        new_user("quote@x.io", "O'Brien \"x\", y; DROP TABLE \"user\"; --"),
        new_user("unicode@x.io", "Zoë 🎉 ß 日本"),
        new_user("spaces@x.io", "  surrounded by spaces  "),
        new_user("null@x.io", "NULL"),
        new_user("pipe@x.io", "a|b,c\\,d"),
    ]
}

fn hostile_expected() -> Vec<(String, String)> {
    hostile_users()
        .into_iter()
        .map(|u| (u.email, u.name))
        .collect()
}

async fn create_many_stores_hostile_values_exactly(backend: TestBackend) {
    let db = TestDatabase::new(backend).await;

    // Through the pool (COPY on PostgreSQL) ...
    let inserted = user::create_many(db.service(), &hostile_users())
        .await
        .unwrap();
    assert_eq!(inserted, 9);
    assert_eq!(stored(db.connection()).await, hostile_expected());

    // ... and through a transaction (multi-row INSERT).
    let other = TestDatabase::new(backend).await;
    let tx = other.connection().begin().await.unwrap();
    assert_eq!(user::create_many(&tx, &hostile_users()).await.unwrap(), 9);
    tx.commit().await.unwrap();
    assert_eq!(stored(other.connection()).await, hostile_expected());
}

async fn create_many_in_a_transaction_chunks_under_the_bind_limit(backend: TestBackend) {
    let db = TestDatabase::new(backend).await;
    // 40 000 rows = 80 000 binds: two statements on PostgreSQL (65 535 binds at most),
    // three on SQLite (32 766).
    let users: Vec<NewUser> = (0..40_000)
        .map(|i| new_user(&format!("u{i}@x.io"), "u"))
        .collect();
    let tx = db.connection().begin().await.unwrap();

    let inserted = user::create_many(&tx, &users).await.unwrap();

    assert_eq!(inserted, 40_000);
    assert_eq!(count(&tx).await, 40_000);
    tx.commit().await.unwrap();
    assert_eq!(count(db.connection()).await, 40_000);
}

async fn create_many_rejects_a_duplicate_inside_the_batch(backend: TestBackend) {
    let db = TestDatabase::new(backend).await;
    let users = [
        new_user("a@x.io", "A"),
        new_user("b@x.io", "B"),
        new_user("A@X.IO", "A again, other case"),
    ];

    assert_conflict(user::create_many(db.service(), &users).await);

    assert_eq!(count(db.connection()).await, 0, "nothing inserted");
}

async fn create_many_rejects_an_email_taken_by_an_existing_row(backend: TestBackend) {
    let db = TestDatabase::new(backend).await;
    let ada = user::create(db.service(), new_user("ada@x.io", "Ada"))
        .await
        .unwrap();
    let users = [new_user("bob@x.io", "Bob"), new_user(" ADA@x.io", "Other")];

    assert_conflict(user::create_many(db.service(), &users).await);

    assert_eq!(
        stored(db.connection()).await,
        vec![(ada.email, ada.name)],
        "only the row that was there"
    );
}

async fn create_many_in_a_transaction_leaves_it_usable_after_a_conflict(backend: TestBackend) {
    let db = TestDatabase::new(backend).await;
    let tx = db.connection().begin().await.unwrap();
    user::create(&tx, new_user("ada@x.io", "Ada"))
        .await
        .unwrap();
    let users = [new_user("bob@x.io", "Bob"), new_user("ada@x.io", "Other")];

    assert_conflict(user::create_many(&tx, &users).await);

    // The batch was rolled back to its savepoint; the caller's transaction goes on.
    assert_eq!(count(&tx).await, 1);
    user::create(&tx, new_user("carol@x.io", "Carol"))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(count(db.connection()).await, 2);
}

async fn create_many_names_the_first_invalid_row_and_inserts_nothing(backend: TestBackend) {
    let db = TestDatabase::new(backend).await;
    let users = [
        new_user("a@x.io", "A"),
        new_user("b@x.io", "B"),
        new_user("not-an-email", "C"),
        new_user("d@x.io", ""),
    ];

    let err = user::create_many(db.service(), &users).await.unwrap_err();

    match err {
        Error::Validation { field, reason } => {
            assert_eq!(field, "email");
            assert!(reason.starts_with("row 2: "), "{reason}");
        }
        other => panic!("expected a validation error, got {other:?}"),
    }
    let err = user::create_many(db.service(), &users[3..])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Validation { field: "name", reason } if reason.starts_with("row 0: ")),
        "{err:?}"
    );
    assert_eq!(count(db.connection()).await, 0);
}

async fn create_many_of_nothing_inserts_nothing(backend: TestBackend) {
    let db = TestDatabase::new(backend).await;

    assert_eq!(user::create_many(db.service(), &[]).await.unwrap(), 0);

    assert_eq!(count(db.connection()).await, 0);
}

async fn get_as_and_create_as_behave_like_get_and_create(backend: TestBackend) {
    let db = TestDatabase::new(backend).await;

    // On the pool (sqlx directly on PostgreSQL) ...
    let ada: user::User = user::create_as(db.service(), new_user(" Ada@X.io", "Ada"))
        .await
        .unwrap();
    assert_eq!(ada.email, "ada@x.io");
    assert_eq!(user::get(db.service(), ada.id).await.unwrap(), ada);
    let read: user::User = user::get_as(db.service(), ada.id).await.unwrap();
    assert_eq!(read, ada);
    let err = user::create_as::<user::User, _>(db.service(), new_user("ADA@x.io", "B"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Conflict { field: "email", .. }),
        "{err:?}"
    );
    let err = user::get_as::<user::User, _>(db.service(), ada.id + 1000)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::NotFound { entity: "user", .. }),
        "{err:?}"
    );
    let err = user::create_as::<user::User, _>(db.service(), new_user("nope", "B"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Validation { field: "email", .. }),
        "{err:?}"
    );

    // ... and in a transaction (SeaORM's path).
    let tx = db.connection().begin().await.unwrap();
    let bob: user::User = user::create_as(&tx, new_user("bob@x.io", "Bob"))
        .await
        .unwrap();
    let read: user::User = user::get_as(&tx, bob.id).await.unwrap();
    assert_eq!(read, bob);
    tx.commit().await.unwrap();
    assert_eq!(user::get(db.service(), bob.id).await.unwrap(), bob);
}
