//! The `user` repository: create, read, list, update and delete users.
//!
//! Every function takes any SeaORM connection — the pool from
//! [`DatabaseService::connection`](crate::DatabaseService::connection), or a transaction
//! (including the rolled-back one of [`testing::TestTransaction`](crate)) — so callers decide
//! the transaction boundaries.
//!
//! Emails are normalised before they are stored or looked up (surrounding whitespace removed,
//! lower-cased) and compared case-insensitively; the database enforces that with a unique
//! index on `lower(email)`, so the rule holds for every writer. Names are stored exactly as
//! given. Queries are built with SeaORM/SeaQuery, values always bound as parameters.

use entity::user;
use sea_orm::sea_query::{Expr, ExprTrait, Func};
use sea_orm::{
    ActiveModelTrait, ActiveValue, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect,
};

use crate::error::{Error, Result, is_unique_violation};

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
/// # Errors
///
/// [`Error::Validation`] for a bad email or name, [`Error::Conflict`] when the email is taken
/// in any letter case, [`Error::Unavailable`] / [`Error::Database`] from the database.
pub async fn create<C: ConnectionTrait>(db: &C, new: NewUser) -> Result<User> {
    let email = normalize_email(&new.email)?;
    validate_name(&new.name)?;
    user::ActiveModel {
        email: ActiveValue::Set(email),
        name: ActiveValue::Set(new.name),
        ..Default::default()
    }
    .insert(db)
    .await
    .map_err(|err| write_error("create a user", err))
}

/// The user with this id.
///
/// # Errors
///
/// [`Error::NotFound`] when there is none, [`Error::Unavailable`] / [`Error::Database`].
pub async fn get<C: ConnectionTrait>(db: &C, id: i32) -> Result<User> {
    user::Entity::find_by_id(id)
        .one(db)
        .await
        .map_err(|err| Error::from_db("read a user", err))?
        .ok_or_else(|| not_found(id))
}

/// The user with this email, compared case-insensitively.
///
/// # Errors
///
/// [`Error::Validation`] when `email` is not an email address, [`Error::Unavailable`] /
/// [`Error::Database`].
pub async fn find_by_email<C: ConnectionTrait>(db: &C, email: &str) -> Result<Option<User>> {
    let email = normalize_email(email)?;
    // Both sides through the database's lower(), so the comparison matches the unique index
    // on lower(email) exactly, and uses it.
    user::Entity::find()
        .filter(Expr::expr(Func::lower(Expr::col(user::Column::Email))).eq(Func::lower(email)))
        .one(db)
        .await
        .map_err(|err| Error::from_db("find a user by email", err))
}

/// Up to `limit` users with an id greater than `after` (all users when `None`), in id order.
/// Keyset pagination: pages stay consistent while rows are inserted or deleted, and every row
/// is visited once.
///
/// # Errors
///
/// [`Error::Validation`] when `limit` is 0 or above [`MAX_PAGE_SIZE`],
/// [`Error::Unavailable`] / [`Error::Database`].
pub async fn list<C: ConnectionTrait>(db: &C, limit: u64, after: Option<i32>) -> Result<UserPage> {
    if !(1..=MAX_PAGE_SIZE).contains(&limit) {
        return Err(Error::Validation {
            field: "limit",
            reason: format!("must be between 1 and {MAX_PAGE_SIZE}"),
        });
    }
    let mut query = user::Entity::find().order_by_asc(user::Column::Id);
    if let Some(after) = after {
        query = query.filter(user::Column::Id.gt(after));
    }
    // One extra row tells whether another page follows.
    let mut users = query
        .limit(limit + 1)
        .all(db)
        .await
        .map_err(|err| Error::from_db("list users", err))?;
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
/// taken, [`Error::Unavailable`] / [`Error::Database`].
pub async fn update<C: ConnectionTrait>(db: &C, id: i32, changes: UserChanges) -> Result<User> {
    let email = changes.email.as_deref().map(normalize_email).transpose()?;
    if let Some(name) = &changes.name {
        validate_name(name)?;
    }
    if email.is_none() && changes.name.is_none() {
        return get(db, id).await;
    }
    let mut update = user::Entity::update_many()
        .filter(user::Column::Id.eq(id))
        // Set here as well as by the trigger: on SQLite the trigger runs after the statement,
        // so RETURNING would otherwise show the old value.
        .col_expr(
            user::Column::UpdatedAt,
            migration::timestamps::now(db.get_database_backend()),
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
/// [`Error::Database`].
pub async fn delete<C: ConnectionTrait>(db: &C, id: i32) -> Result<()> {
    let result = user::Entity::delete_by_id(id)
        .exec(db)
        .await
        .map_err(|err| Error::from_db("delete a user", err))?;
    if result.rows_affected == 0 {
        return Err(not_found(id));
    }
    Ok(())
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
        Error::from_db(operation, err)
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
