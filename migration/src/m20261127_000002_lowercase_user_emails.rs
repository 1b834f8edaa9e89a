//! Data migration: lower-cases every stored email, so that the case-insensitive unique index of
//! the next migration can be built. The work is [`lowercase_emails`] (benchmarks call it too): keyset
//! batches, each its own short transaction, so writers to `user` never wait for more than one
//! batch. On PostgreSQL the migration is therefore not one transaction (`use_transaction` is
//! `Some(false)`): a run that dies part-way is finished by the next `up`, which changes only
//! what is left. On SQLite the migrator runs it in one transaction as every migration.
//!
//! `down` is a deliberate no-op: the original casing is gone and cannot be restored, and the
//! lower-cased data is valid under the previous schema.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{SqlErr, TransactionTrait};


#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        lowercase_emails(manager.get_connection())
            .await
            .map(|_| ())
    }

    async fn down(&self, _manager: &SchemaManager) -> Result<(), DbErr> {
        Ok(())
    }

    fn use_transaction(&self) -> Option<bool> {
        Some(false)
    }
}

// Written with SeaQuery identifiers, not the live entity crate: a migration must keep doing
// what it did when it was written, whatever the entities look like later.
#[derive(DeriveIden)]
enum User {
    Table,
    Id,
    Email,
}

/// Lower-cases every email in `user` in keyset batches (see [`migrator::batch`]), each batch its
/// own short transaction, and returns how many rows it changed. Rows already in lower case
/// are not touched, so running it again (after a crash) finishes the work and changes nothing
/// twice.
///
/// Before the first batch it looks for addresses that lower-casing would make equal; if there
/// are any it changes nothing and returns an error naming every group. A collision created by
/// a writer while the walk runs stops it at that batch (the unique constraint refuses it),
/// with the same error; the batches before it stay done (lower-cased addresses are valid
/// under either schema).
///
/// # Errors
///
/// [`DbErr::Migration`] listing the colliding addresses, or any database error.
pub async fn lowercase_emails<C>(db: &C) -> Result<u64, DbErr>
where
    C: ConnectionTrait + TransactionTrait,
{
    refuse_collisions(db).await?;
    let lower_email = || Func::lower(Expr::col(User::Email));
    let walk = migrator::batch::Batches::new("lower-case emails", User::Table, User::Id);
    let outcome = walk
        .run(db, |after, upto| {
            Query::update()
                .table(User::Table)
                .value(User::Email, lower_email())
                .and_where(Expr::col(User::Id).gt(after))
                .and_where(Expr::col(User::Id).lte(upto))
                .and_where(Expr::col(User::Email).ne(lower_email()))
                .to_owned()
        })
        .await;
    match outcome {
        Err(err) if matches!(err.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {
            refuse_collisions(db).await?;
            Err(err)
        }
        other => other,
    }
}

async fn refuse_collisions<C: ConnectionTrait>(db: &C) -> Result<(), DbErr> {
    let collisions = email_collisions(db).await?;
    if collisions.is_empty() {
        return Ok(());
    }
    Err(DbErr::Migration(format!(
        "cannot lower-case emails: these addresses differ only in case, merge or rename them \
         first: {}",
        collisions
            .iter()
            .map(|group| group.join(" = "))
            .collect::<Vec<_>>()
            .join("; ")
    )))
}

/// Groups of addresses that are equal once lower-cased, each sorted, groups in order.
async fn email_collisions<C: ConnectionTrait>(db: &C) -> Result<Vec<Vec<String>>, DbErr> {
    let select = Query::select()
        .expr_as(Func::lower(Expr::col(User::Email)), "folded")
        .column(User::Email)
        .from(User::Table)
        .and_where(
            Expr::expr(Func::lower(Expr::col(User::Email))).in_subquery(
                Query::select()
                    .expr(Func::lower(Expr::col(User::Email)))
                    .from(User::Table)
                    .add_group_by([Func::lower(Expr::col(User::Email)).into()])
                    .and_having(Expr::expr(Func::count(Expr::col(Asterisk))).gt(1))
                    .to_owned(),
            ),
        )
        .order_by_expr(Func::lower(Expr::col(User::Email)).into(), Order::Asc)
        .order_by(User::Email, Order::Asc)
        .to_owned();

    let mut groups: Vec<(String, Vec<String>)> = Vec::new();
    for row in db.query_all(&select).await? {
        let folded: String = row.try_get("", "folded")?;
        let email: String = row.try_get("", "email")?;
        match groups.last_mut() {
            Some((key, group)) if *key == folded => group.push(email),
            _ => groups.push((folded, vec![email])),
        }
    }
    Ok(groups.into_iter().map(|(_, group)| group).collect())
}
