//! The `user` repository: create, read, list, update and delete users.
//!
//! Every function takes an [`Executor`]: the service (`&db`, the primary), a reader
//! (`&db.reader()`, reads a replica may serve), a transaction (`&db.begin().await?`, or the
//! rolled-back one of [`testing::TestTransaction`](crate)), or SeaORM's own connection and
//! transaction — so callers decide where statements run and the transaction boundaries.
//!
//! Emails are normalised before they are stored or looked up (surrounding whitespace removed,
//! lower-cased) and compared case-insensitively; the database enforces that with a unique
//! index on `lower(email)`, so the rule holds for every writer. Names are stored exactly as
//! given. Queries are built with SeaORM/SeaQuery, values always bound as parameters.

use entity::user;
use sea_orm::sea_query::{Expr, ExprTrait, Func, IntoIden, Query};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, FromQueryResult, QueryFilter, QueryOrder,
    QuerySelect, QueryTrait, Value,
};

use crate::error::{Error, Result, is_unique_violation};
use crate::metrics::{Operation, observe};
use crate::routing::{self, CachedSql, Executor, Route, Transactional, bulk};

pub use entity::user::Model as User;

/// The longest email and name accepted (the columns are `varchar(255)`), in characters.
pub const MAX_LEN: usize = 255;

/// The largest page [`list`] returns.
pub const MAX_PAGE_SIZE: u64 = 500;

/// A user to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUser {
    /// Email address; stored normalised (trimmed, lower-cased).
    pub email: String,
    /// Display name; stored as given.
    pub name: String,
}

/// Fields to change; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserChanges {
    /// New email address.
    pub email: Option<String>,
    /// New display name.
    pub name: Option<String>,
}

/// One page of users in id order, and where the next page starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserPage {
    /// The users of this page.
    pub users: Vec<User>,
    /// Pass this as `after` to get the next page; `None` on the last page.
    pub next_after: Option<i32>,
}

const ENTITY: &str = "user";

/// Creates a user and returns it as stored (id, normalised email, timestamps).
///
/// One `INSERT … RETURNING` rendered once per backend and reused (see [`create_as`] for the
/// path it takes); it does not go through `ActiveModel::insert`, so hooks added to
/// `entity::user`'s `ActiveModelBehavior` (there are none) would not run here.
///
/// # Errors
///
/// [`Error::Validation`] for a bad email or name, [`Error::Conflict`] when the email is taken
/// in any letter case, [`Error::Unavailable`] / [`Error::Database`] from the database;
/// [`Error::CommitUnknown`] when the connection was lost after the insert was sent: the user
/// may exist, and creating it again answers [`Error::Conflict`] if it does.
pub async fn create<E: Executor>(db: &E, new: NewUser) -> Result<User> {
    create_as(db, new).await
}

/// [`create`], returning the stored row decoded into your own type: a projection of the
/// columns, or a model with wider column types than [`User`] (e.g. `id: i64` for a table whose
/// `id` is `bigint`). The row returned has the columns `id`, `email`, `name`, `created_at`,
/// `updated_at`. Needs a backend with `RETURNING` (PostgreSQL, SQLite ≥ 3.35).
///
/// Given the service (or a reader) on PostgreSQL, the statement runs on sqlx directly and only
/// the row goes through SeaORM ([`FromQueryResult`]), which saves most of the client's work
/// for a one-row statement (`docs/PERFORMANCE.md`); anything else (a transaction, SQLite, a
/// SeaORM connection) takes SeaORM's path.
///
/// # Errors
///
/// As [`create`]; a row that does not decode into `M` is an [`Error::Database`].
pub async fn create_as<M, E>(db: &E, new: NewUser) -> Result<M>
where
    M: FromQueryResult,
    E: Executor,
{
    observe(&CREATE, db.backend(), async {
        let (email, name) = validated(new)?;
        routing::write_optional(db, &INSERT_RETURNING, vec![email.into(), name.into()])
            .await
            .map_err(|err| write_error("create a user", err))?
            .ok_or_else(|| Error::Database {
                operation: "create a user",
                source: DbErr::RecordNotInserted,
            })
    })
    .await
}

fn validated(new: NewUser) -> Result<(String, String)> {
    let email = normalize_email(&new.email)?;
    validate_name(&new.name)?;
    Ok((email, new.name))
}

/// Creates many users at once and returns how many were inserted: all of them, or none.
///
/// Every row is checked and normalised as [`create`] does before anything is sent; a bad row
/// rejects the whole batch with an [`Error::Validation`] whose reason starts with the row's
/// index (`row 3: …`). An email that is taken — by an existing row or by another row of the
/// batch, in any letter case — is an [`Error::Conflict`], and nothing is inserted.
///
/// How the rows travel:
/// * given the service (or a reader) on PostgreSQL: one `COPY "user" (email, name) FROM STDIN`
///   through the primary's pool (a single statement, so all or nothing), several times faster
///   than `INSERT` for large batches;
/// * otherwise (SQLite, or a transaction you pass in): multi-row `INSERT`s in chunks that stay
///   under the backend's bind-parameter limit (65 535 on PostgreSQL, 32 766 on SQLite), inside
///   one transaction (a savepoint when `db` is already a transaction).
///
/// # Errors
///
/// [`Error::Validation`] naming the first bad row, [`Error::Conflict`],
/// [`Error::Unavailable`] / [`Error::Database`] from the database, [`Error::CommitUnknown`]
/// when the connection was lost after the rows were sent.
pub async fn create_many<E: Executor>(db: &E, users: &[NewUser]) -> Result<u64> {
    if users.is_empty() {
        return Ok(0);
    }
    observe(&CREATE_MANY, db.backend(), async {
        let inserted = match db.route() {
            Route::Fast { primary, .. } => {
                let data = copy_text(users)?;
                let pool = primary.conn.get_postgres_connection_pool();
                primary.retire_if_read_only(bulk::copy_in(pool, COPY_USERS, &data).await)
            }
            Route::Seaorm => {
                let rows = validated_rows(users)?;
                let columns = [
                    user::Column::Email.into_iden(),
                    user::Column::Name.into_iden(),
                ];
                let table = user::Entity.into_iden();
                match db.transactional() {
                    Transactional::Connection(conn) => {
                        bulk::insert_chunked(conn, table, &columns, rows).await
                    }
                    Transactional::Transaction(tx) => {
                        bulk::insert_chunked(tx, table, &columns, rows).await
                    }
                }
            }
        };
        inserted.map_err(|err| write_error("create users", err))
    })
    .await
}

/// The user with this id.
///
/// The query is rendered once per backend and reused (see [`get_as`] for the path it takes).
///
/// # Errors
///
/// [`Error::NotFound`] when there is none, [`Error::Unavailable`] / [`Error::Database`].
pub async fn get<E: Executor>(db: &E, id: i32) -> Result<User> {
    get_as(db, id).await
}

/// [`get`], decoding the row into your own type (a projection, or a model with wider column
/// types than [`User`], e.g. `id: i64` for a `bigint` id). The query selects `id`, `email`,
/// `name`, `created_at`, `updated_at`.
///
/// Given the service or a reader on PostgreSQL, the query runs on sqlx directly and only the
/// row goes through SeaORM, as [`create_as`] explains; anything else takes the SeaORM path.
///
/// # Errors
///
/// As [`get`]; a row that does not decode into `M` is an [`Error::Database`].
pub async fn get_as<M, E>(db: &E, id: i32) -> Result<M>
where
    M: FromQueryResult,
    E: Executor,
{
    observe(&GET, db.backend(), async {
        routing::read_optional(db, &SELECT_BY_ID, vec![id.into()])
            .await
            .map_err(|err| Error::from_db("read a user", err))?
            .ok_or_else(|| not_found(id))
    })
    .await
}

/// The user with this email, compared case-insensitively.
///
/// # Errors
///
/// [`Error::Validation`] when `email` is not an email address, [`Error::Unavailable`] /
/// [`Error::Database`].
pub async fn find_by_email<E: Executor>(db: &E, email: &str) -> Result<Option<User>> {
    observe(&FIND_BY_EMAIL, db.backend(), async {
        let email = normalize_email(email)?;
        // Both sides through the database's lower(), so the comparison matches the unique
        // index on lower(email) exactly, and uses it.
        user::Entity::find()
            .filter(Expr::expr(Func::lower(Expr::col(user::Column::Email))).eq(Func::lower(email)))
            .one(db.seaorm())
            .await
            .map_err(|err| Error::from_db("find a user by email", err))
    })
    .await
}

/// Up to `limit` users with an id greater than `after` (all users when `None`), in id order.
/// Keyset pagination: pages stay consistent while rows are inserted or deleted, and every row
/// is visited once. One of two statements rendered once (the first page, a page after an
/// id), on the path [`get_as`] takes.
///
/// # Errors
///
/// [`Error::Validation`] when `limit` is 0 or above [`MAX_PAGE_SIZE`],
/// [`Error::Unavailable`] / [`Error::Database`].
pub async fn list<E: Executor>(db: &E, limit: u64, after: Option<i32>) -> Result<UserPage> {
    observe(&LIST, db.backend(), list_page(db, limit, after)).await
}

async fn list_page<E: Executor>(db: &E, limit: u64, after: Option<i32>) -> Result<UserPage> {
    if !(1..=MAX_PAGE_SIZE).contains(&limit) {
        return Err(Error::Validation {
            field: "limit",
            reason: format!("must be between 1 and {MAX_PAGE_SIZE}"),
        });
    }
    // One extra row tells whether another page follows.
    let rows = Value::from(limit + 1);
    let page = match after {
        Some(after) => routing::read_all(db, &LIST_AFTER, vec![after.into(), rows]).await,
        None => routing::read_all(db, &LIST_FIRST, vec![rows]).await,
    };
    let mut users: Vec<User> = page.map_err(|err| Error::from_db("list users", err))?;
    let next_after = if users.len() as u64 > limit {
        users.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        users.last().map(|u| u.id)
    } else {
        None
    };
    Ok(UserPage { users, next_after })
}

/// Changes a user's email and/or name and returns the stored row; `updated_at` moves forward
/// (the database's trigger sets it). With no changes it returns the row unchanged.
///
/// # Errors
///
/// [`Error::NotFound`], [`Error::Validation`], [`Error::Conflict`] when the new email is
/// taken, [`Error::Unavailable`] / [`Error::Database`], [`Error::CommitUnknown`] when the
/// connection was lost after the update was sent.
pub async fn update<E: Executor>(db: &E, id: i32, changes: UserChanges) -> Result<User> {
    observe(&UPDATE, db.backend(), update_row(db.seaorm(), id, changes)).await
}

async fn update_row<C: ConnectionTrait>(db: &C, id: i32, changes: UserChanges) -> Result<User> {
    let email = changes.email.as_deref().map(normalize_email).transpose()?;
    if let Some(name) = &changes.name {
        validate_name(name)?;
    }
    if email.is_none() && changes.name.is_none() {
        return user::Entity::find_by_id(id)
            .one(db)
            .await
            .map_err(|err| Error::from_db("read a user", err))?
            .ok_or_else(|| not_found(id));
    }
    let mut update = user::Entity::update_many()
        .filter(user::Column::Id.eq(id))
        // Set here as well as by the trigger: on SQLite the trigger runs after the statement,
        // so RETURNING would otherwise show the old value.
        .col_expr(
            user::Column::UpdatedAt,
            migrator::timestamps::now(db.get_database_backend()),
        );
    if let Some(email) = email {
        update = update.col_expr(user::Column::Email, Expr::value(email));
    }
    if let Some(name) = changes.name {
        update = update.col_expr(user::Column::Name, Expr::value(name));
    }
    update
        .exec_with_returning(db)
        .await
        .map_err(|err| write_error("update a user", err))?
        .into_iter()
        .next()
        .ok_or_else(|| not_found(id))
}

/// Deletes a user.
///
/// # Errors
///
/// [`Error::NotFound`] when there is no such user, [`Error::Unavailable`] /
/// [`Error::Database`], [`Error::CommitUnknown`] when the connection was lost after the delete
/// was sent.
pub async fn delete<E: Executor>(db: &E, id: i32) -> Result<()> {
    observe(&DELETE, db.backend(), async {
        let result = user::Entity::delete_by_id(id)
            .exec(db.seaorm())
            .await
            .map_err(|err| Error::from_write("delete a user", err))?;
        if result.rows_affected == 0 {
            return Err(not_found(id));
        }
        Ok(())
    })
    .await
}

/// Normalises and checks an email address: surrounding whitespace removed, lower-cased; then
/// it must be non-empty, at most [`MAX_LEN`] characters, contain exactly one `@` with text on
/// both sides, and no whitespace or control characters.
///
/// # Errors
///
/// [`Error::Validation`] for field `email`, saying which rule failed.
pub fn normalize_email(email: &str) -> Result<String> {
    let email = email.trim().to_lowercase();
    let reason = if email.is_empty() {
        Some("must not be empty".to_owned())
    } else if email.chars().count() > MAX_LEN {
        Some(format!("must be at most {MAX_LEN} characters"))
    } else if email.chars().any(char::is_control) {
        Some("must not contain control characters".to_owned())
    } else if email.chars().any(char::is_whitespace) {
        Some("must not contain spaces".to_owned())
    } else {
        match email.split_once('@') {
            Some((local, domain))
                if !local.is_empty() && !domain.is_empty() && !domain.contains('@') =>
            {
                None
            }
            _ => Some("must contain exactly one @ with text on both sides".to_owned()),
        }
    };
    match reason {
        Some(reason) => Err(Error::Validation {
            field: "email",
            reason,
        }),
        None => Ok(email),
    }
}

/// Checks a display name: not blank, at most [`MAX_LEN`] characters, no control characters.
///
/// # Errors
///
/// [`Error::Validation`] for field `name`, saying which rule failed.
pub fn validate_name(name: &str) -> Result<()> {
    let reason = if name.trim().is_empty() {
        "must not be empty".to_owned()
    } else if name.chars().count() > MAX_LEN {
        format!("must be at most {MAX_LEN} characters")
    } else if name.chars().any(char::is_control) {
        "must not contain control characters".to_owned()
    } else {
        return Ok(());
    };
    Err(Error::Validation {
        field: "name",
        reason,
    })
}

// The operations as the metrics name them (`crate::metrics`).
static CREATE: Operation = Operation::new("user.create");
static CREATE_MANY: Operation = Operation::new("user.create_many");
static GET: Operation = Operation::new("user.get");
static FIND_BY_EMAIL: Operation = Operation::new("user.find_by_email");
static LIST: Operation = Operation::new("user.list");
static UPDATE: Operation = Operation::new("user.update");
static DELETE: Operation = Operation::new("user.delete");

/// `SELECT "user"."id", … FROM "user" WHERE "user"."id" = $1` (no `LIMIT`: a primary-key
/// lookup returns at most one row).
static SELECT_BY_ID: CachedSql = CachedSql::new(|backend| {
    user::Entity::find()
        .filter(user::Column::Id.eq(0))
        .build(backend)
        .sql
});

/// `SELECT … FROM "user" ORDER BY "id" LIMIT $1`: the first page.
static LIST_FIRST: CachedSql = CachedSql::new(|backend| {
    user::Entity::find()
        .order_by_asc(user::Column::Id)
        .limit(0)
        .build(backend)
        .sql
});

/// `SELECT … FROM "user" WHERE "id" > $1 ORDER BY "id" LIMIT $2`: a page after an id.
static LIST_AFTER: CachedSql = CachedSql::new(|backend| {
    user::Entity::find()
        .filter(user::Column::Id.gt(0))
        .order_by_asc(user::Column::Id)
        .limit(0)
        .build(backend)
        .sql
});

/// `INSERT INTO "user" ("email", "name") VALUES ($1, $2) RETURNING "id", "email", …`.
static INSERT_RETURNING: CachedSql = CachedSql::new(|backend| {
    let mut insert = Query::insert();
    insert
        .into_table(user::Entity)
        .columns([user::Column::Email, user::Column::Name])
        .values_panic([String::new().into(), String::new().into()])
        .returning(Query::returning().columns([
            user::Column::Id,
            user::Column::Email,
            user::Column::Name,
            user::Column::CreatedAt,
            user::Column::UpdatedAt,
        ]));
    backend.build(&insert).sql
});

/// `COPY` statement of [`create_many`]; the rows follow in text format.
const COPY_USERS: &str = r#"COPY "user" ("email", "name") FROM STDIN"#;

/// Prefixes a validation error with the index of the row it is about.
fn in_row(index: usize) -> impl FnOnce(Error) -> Error {
    move |err| match err {
        Error::Validation { field, reason } => Error::Validation {
            field,
            reason: format!("row {index}: {reason}"),
        },
        other => other,
    }
}

/// Validates and normalises every row: `[email, name]` ready to store.
fn validated_rows(users: &[NewUser]) -> Result<Vec<Vec<Value>>> {
    users
        .iter()
        .enumerate()
        .map(|(index, new)| {
            let email = normalize_email(&new.email).map_err(in_row(index))?;
            validate_name(&new.name).map_err(in_row(index))?;
            Ok(vec![email.into(), new.name.clone().into()])
        })
        .collect()
}

/// Validates and normalises every row straight into `COPY … FROM STDIN` text format.
fn copy_text(users: &[NewUser]) -> Result<Vec<u8>> {
    let estimate = users
        .iter()
        .map(|new| new.email.len() + new.name.len() + 2)
        .sum();
    let mut data = Vec::with_capacity(estimate);
    for (index, new) in users.iter().enumerate() {
        let email = normalize_email(&new.email).map_err(in_row(index))?;
        validate_name(&new.name).map_err(in_row(index))?;
        bulk::push_copy_field(&mut data, &email);
        data.push(b'\t');
        bulk::push_copy_field(&mut data, &new.name);
        data.push(b'\n');
    }
    Ok(data)
}

fn not_found(id: i32) -> Error {
    Error::NotFound {
        entity: ENTITY,
        key: format!("id {id}"),
    }
}

fn write_error(operation: &'static str, err: DbErr) -> Error {
    if is_unique_violation(&err) {
        // The only unique keys of `user` besides the generated id are the email column and
        // lower(email).
        Error::Conflict {
            entity: ENTITY,
            field: "email",
        }
    } else {
        Error::from_write(operation, err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(result: Result<impl std::fmt::Debug>) -> String {
        match result {
            Err(Error::Validation { reason, .. }) => reason,
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn emails_are_trimmed_and_lower_cased() {
        assert_eq!(
            normalize_email("  Ada@Example.COM \n").unwrap(),
            "ada@example.com"
        );
        assert_eq!(
            normalize_email("ÉLODIE@exemple.fr").unwrap(),
            "élodie@exemple.fr"
        );
    }

    #[test]
    fn each_email_rule_is_enforced() {
        assert_eq!(reason(normalize_email("   ")), "must not be empty");
        let long = format!("{}@x.io", "a".repeat(252));
        assert_eq!(
            reason(normalize_email(&long)),
            "must be at most 255 characters"
        );
        assert_eq!(
            normalize_email(&format!("{}@x.io", "a".repeat(250)))
                .unwrap()
                .len(),
            255
        );
        assert_eq!(
            reason(normalize_email("a\0b@x.io")),
            "must not contain control characters"
        );
        assert_eq!(
            reason(normalize_email("a b@x.io")),
            "must not contain spaces"
        );
        for bad in ["ab.io", "a@@x.io", "a@b@x.io", "@x.io", "a@"] {
            assert_eq!(
                reason(normalize_email(bad)),
                "must contain exactly one @ with text on both sides",
                "{bad}"
            );
        }
    }

    #[test]
    fn copy_text_is_one_line_per_row_and_names_a_bad_row() {
        let users = [
            NewUser {
                email: " Ada@X.io ".into(),
                name: "A\\da".into(),
            },
            NewUser {
                email: "bob@x.io".into(),
                name: "Bob".into(),
            },
        ];
        let text = String::from_utf8(copy_text(&users).unwrap()).unwrap();
        assert_eq!(text, "ada@x.io\tA\\\\da\nbob@x.io\tBob\n");

        let bad = [
            users[0].clone(),
            users[1].clone(),
            NewUser {
                email: "c@x.io".into(),
                name: "tab\there".into(),
            },
        ];
        match copy_text(&bad) {
            Err(Error::Validation { field, reason }) => {
                assert_eq!(field, "name");
                assert_eq!(reason, "row 2: must not contain control characters");
            }
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn each_name_rule_is_enforced() {
        assert!(validate_name(" Ada Lovelace ").is_ok());
        assert!(validate_name(&"é".repeat(255)).is_ok());
        assert_eq!(reason(validate_name(" \t")), "must not be empty");
        assert_eq!(
            reason(validate_name(&"é".repeat(256))),
            "must be at most 255 characters"
        );
        assert_eq!(
            reason(validate_name("a\u{0}b")),
            "must not contain control characters"
        );
    }
}
