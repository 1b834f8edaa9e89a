//! Native PostgreSQL enum types (`db_type = "Enum"` on an entity field), in migrations that run
//! on both backends: on PostgreSQL each helper changes the type; on SQLite, where an enum
//! column is plain text, each does nothing.
//!
//! ```no_run
//! # use sea_orm_migration::prelude::*;
//! # async fn up(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
//! migrator::enums::create_type(manager, "mood", &["happy", "sad"]).await?;
//! migrator::enums::add_values(manager, "mood", &["calm"]).await?;
//! # Ok(())
//! # }
//! ```

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;
use sea_orm_migration::sea_query::extension::postgres::Type;

use crate::alter::{execute, quote};

/// Creates the enum type `name` with `values`, in order.
///
/// # Errors
///
/// Any database error (the type exists already, …).
pub async fn create_type(
    manager: &SchemaManager<'_>,
    name: &str,
    values: &[&str],
) -> Result<(), DbErr> {
    if manager.get_database_backend() != DbBackend::Postgres {
        return Ok(());
    }
    manager
        .create_type(
            Type::create()
                .as_enum(Alias::new(name))
                .values(values.iter().map(|v| Alias::new(*v)))
                .to_owned(),
        )
        .await
}

/// Drops the enum type `name` (no column may use it any more).
///
/// # Errors
///
/// Any database error (a column still uses it, …).
pub async fn drop_type(manager: &SchemaManager<'_>, name: &str) -> Result<(), DbErr> {
    if manager.get_database_backend() != DbBackend::Postgres {
        return Ok(());
    }
    manager
        .drop_type(Type::drop().name(Alias::new(name)).to_owned())
        .await
}

/// Adds `values` at the end of the enum type `name`. (PostgreSQL 12 and later run this in a
/// transaction; the new values cannot be used before it commits.)
///
/// # Errors
///
/// Any database error (a value exists already, …).
pub async fn add_values(
    manager: &SchemaManager<'_>,
    name: &str,
    values: &[&str],
) -> Result<(), DbErr> {
    if manager.get_database_backend() != DbBackend::Postgres {
        return Ok(());
    }
    for value in values {
        execute(
            manager,
            format!("ALTER TYPE {} ADD VALUE {}", quote(name), literal(value)),
        )
        .await?;
    }
    Ok(())
}

/// Makes the enum type `name` exactly `values`, which PostgreSQL cannot do in place when
/// values go: a new type is created, every column of the current schema that uses the old
/// one is converted to it (through text, so a row holding a value that goes makes this fail
/// rather than lose it), and the old type is dropped. Columns' defaults are kept.
///
/// # Errors
///
/// Any database error; a row holds a value that is not in `values`.
pub async fn set_values(
    manager: &SchemaManager<'_>,
    name: &str,
    values: &[&str],
) -> Result<(), DbErr> {
    if manager.get_database_backend() != DbBackend::Postgres {
        return Ok(());
    }
    let old = format!("{name}_old");
    execute(
        manager,
        format!("ALTER TYPE {} RENAME TO {}", quote(name), quote(&old)),
    )
    .await?;
    create_type(manager, name, values).await?;
    // One statement, so that offline mode (`--sql`) records it whatever the columns are.
    execute(
        manager,
        format!(
            "DO $$ DECLARE c record; BEGIN \
             FOR c IN SELECT t.relname, a.attname, pg_get_expr(d.adbin, d.adrelid) AS dflt \
               FROM pg_attribute a JOIN pg_class t ON t.oid = a.attrelid \
               LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum \
               WHERE a.atttypid = {old_type}::regtype AND a.attnum > 0 AND NOT a.attisdropped \
                 AND t.relkind = 'r' AND t.relnamespace = current_schema()::regnamespace \
             LOOP \
               IF c.dflt IS NOT NULL THEN \
                 EXECUTE format('ALTER TABLE %I ALTER COLUMN %I DROP DEFAULT', c.relname, c.attname); \
               END IF; \
               EXECUTE format('ALTER TABLE %I ALTER COLUMN %I TYPE {new} USING %I::text::{new}', \
                              c.relname, c.attname, c.attname); \
               IF c.dflt IS NOT NULL THEN \
                 EXECUTE format('ALTER TABLE %I ALTER COLUMN %I SET DEFAULT %s::{new}', \
                                c.relname, c.attname, regexp_replace(c.dflt, '::[^:]+$', '')); \
               END IF; \
             END LOOP; END $$",
            old_type = literal(&quote(&old)),
            new = quote(name).replace('\'', "''"),
        ),
    )
    .await?;
    execute(manager, format!("DROP TYPE {}", quote(&old))).await
}

/// A SQL string literal.
fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}
