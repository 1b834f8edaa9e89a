//! The fixtures exported behind the `testing` feature do what they promise.

use sea_orm::TransactionTrait;
use service::user;
use service::{DatabaseService, Executor};

use crate::on_both_backends;
use test_support::{TestBackend, TestDatabase, TestTransaction, new_user};

on_both_backends!(
    rollback_fixture_leaves_no_rows,
    code_that_commits_inside_the_fixture_is_still_rolled_back,
    bulk_inserts_inside_the_fixture_are_rolled_back,
    test_databases_are_independent,
);

/// How many users `db` sees (the tests here create at most a few).
async fn users_in<E: Executor>(db: &E) -> usize {
    user::list(db, 10, None).await.unwrap().users.len()
}

async fn rollback_fixture_leaves_no_rows(backend: TestBackend) {
    let db = TestDatabase::new(backend).await;
    {
        let tx = TestTransaction::begin(db.connection()).await;
        let ada = user::create(&tx, new_user("ada@x.io", "n")).await.unwrap();
        assert_eq!(user::get(&tx, ada.id).await.unwrap().email, "ada@x.io");
    }

    let page = user::list(db.service(), 10, None).await.unwrap();

    assert!(page.users.is_empty(), "{page:?}");
}

async fn code_that_commits_inside_the_fixture_is_still_rolled_back(backend: TestBackend) {
    let db = TestDatabase::new(backend).await;
    let tx = TestTransaction::begin(db.connection()).await;
    let inner = tx.begin().await.unwrap();
    user::create(&inner, new_user("ada@x.io", "n"))
        .await
        .unwrap();
    inner.commit().await.unwrap();
    assert_eq!(users_in(&tx).await, 1);

    tx.rollback().await.unwrap();

    assert_eq!(users_in(db.connection()).await, 0);
}

async fn bulk_inserts_inside_the_fixture_are_rolled_back(backend: TestBackend) {
    let db = TestDatabase::new(backend).await;
    let tx = TestTransaction::begin(db.connection()).await;
    let users = [new_user("ada@x.io", "n"), new_user("bob@x.io", "n")];
    assert_eq!(user::create_many(&tx, &users).await.unwrap(), 2);
    assert_eq!(users_in(&tx).await, 2);

    tx.rollback().await.unwrap();

    assert_eq!(users_in(db.connection()).await, 0);
}

async fn test_databases_are_independent(backend: TestBackend) {
    let first = TestDatabase::new(backend).await;
    let second = TestDatabase::new(backend).await;
    user::create(first.service(), new_user("ada@x.io", "n"))
        .await
        .unwrap();

    assert!(
        user::list(second.service(), 10, None)
            .await
            .unwrap()
            .users
            .is_empty()
    );
    assert_ne!(first.name(), second.name());
}

#[tokio::test]
async fn a_postgres_test_database_is_dropped_after_a_passing_test() {
    let db = TestDatabase::new(TestBackend::Postgres).await;
    let config = db.config().clone();
    assert!(DatabaseService::connect(&config).await.is_ok());

    drop(db);

    let err = DatabaseService::connect(&config).await.unwrap_err();
    assert!(
        matches!(&err, service::Error::Connect(e) if e.failure == service::ConnectFailure::UnknownDatabase),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_sqlite_test_database_is_removed_after_a_passing_test_and_kept_after_a_failing_one() {
    let passing = TestDatabase::new(TestBackend::Sqlite).await;
    let path = std::path::PathBuf::from(passing.name());
    assert!(path.exists());
    drop(passing);
    assert!(!path.exists());

    let failing = TestDatabase::new(TestBackend::Sqlite).await;
    let path = std::path::PathBuf::from(failing.name());
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        let _db = failing;
        panic!("a failing test");
    }));
    assert!(outcome.is_err());
    assert!(path.exists(), "kept for inspection");
    std::fs::remove_file(&path).unwrap();
}
