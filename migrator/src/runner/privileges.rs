//! Who may migrate, and what the service's role may do (PostgreSQL).
//!
//! Migrations run as the role that owns the schema; the service can run as an application
//! role (`DB_APP_ROLE`) that may only read and write the application's tables. [`check`] runs
//! before every run that changes the schema and refuses one the session's role cannot
//! complete, naming the role and what it lacks, instead of failing half-way. [`grant`] runs
//! after every `up` and gives the application role exactly what the service needs.

use sea_orm_migration::sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};

use super::{MigrateError, db_err};

/// The migrator's own tables: the application role may read them (the health report), never
/// write them.
const MIGRATOR_TABLES: &[&str] = &["seaql_migrations", crate::checksum::TABLE];

fn quoted(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}

/// Refuses a run that the session's role cannot complete: it needs `CREATE` on the schema and
/// the ownership (directly or through a role it is a member of) of every table there, since
/// altering and dropping a table need its owner.
///
/// # Errors
///
/// [`MigrateError::NotPermitted`] naming the role and what it lacks.
pub(super) async fn check(db: &DatabaseConnection) -> Result<(), MigrateError> {
    let row = db
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT current_user::text, coalesce(current_schema()::text, ''), \
                    coalesce(has_schema_privilege(current_schema(), 'CREATE'), false), \
                    coalesce((SELECT string_agg(c.relname::text, ', ' ORDER BY c.relname) \
                              FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                              WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') \
                                AND NOT pg_has_role(current_user, c.relowner, 'USAGE')), '')",
        ))
        .await
        .map_err(db_err("read the role's privileges"))?;
    let Some(row) = row else {
        return Ok(());
    };
    let get = |index| row.try_get_by_index::<String>(index);
    let (role, schema, not_owned) = (
        get(0).unwrap_or_default(),
        get(1).unwrap_or_default(),
        get(3).unwrap_or_default(),
    );
    let can_create = row.try_get_by_index::<bool>(2).unwrap_or(false);
    let mut lacks = Vec::new();
    if !can_create {
        lacks.push(format!("CREATE on schema {schema} (to create tables)"));
    }
    if !not_owned.is_empty() {
        lacks.push(format!(
            "the ownership of the tables {not_owned} (to alter, index and drop them)"
        ));
    }
    if lacks.is_empty() {
        Ok(())
    } else {
        Err(MigrateError::NotPermitted { role, lacks })
    }
}

/// Grants `role` what the service needs on the session's schema, and nothing more: `USAGE` on
/// the schema; `SELECT`, `INSERT`, `UPDATE`, `DELETE` on its tables and `USAGE`, `SELECT` on
/// its sequences, now and (default privileges) for those later migrations create; only
/// `SELECT` on the migrator's tables. Idempotent.
///
/// # Errors
///
/// [`MigrateError::AppRole`] when the role does not exist; [`MigrateError::Database`] when a
/// grant fails.
pub(super) async fn grant(db: &DatabaseConnection, role: &str) -> Result<(), MigrateError> {
    let query = |sql: String| Statement::from_string(DbBackend::Postgres, sql);
    let row = db
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1), \
                    current_user::text = $1, coalesce(current_schema()::text, '')",
            [role.into()],
        ))
        .await
        .map_err(db_err("look up DB_APP_ROLE"))?;
    let (exists, is_self, schema) = row
        .map(|row| {
            (
                row.try_get_by_index::<bool>(0).unwrap_or(false),
                row.try_get_by_index::<bool>(1).unwrap_or(false),
                row.try_get_by_index::<String>(2).unwrap_or_default(),
            )
        })
        .unwrap_or_default();
    if !exists {
        return Err(MigrateError::AppRole {
            role: role.to_owned(),
            reason: format!(
                "the role does not exist; create it first (CREATE ROLE {} LOGIN PASSWORD '…')",
                quoted(role)
            ),
        });
    }
    if is_self {
        return Err(MigrateError::AppRole {
            role: role.to_owned(),
            reason: "it is the role running the migrations; the application role must be \
                     another one"
                .to_owned(),
        });
    }
    let (role, schema) = (quoted(role), quoted(&schema));
    let mut statements = vec![
        format!("GRANT USAGE ON SCHEMA {schema} TO {role}"),
        format!("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {role}"),
        format!("GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {schema} TO {role}"),
        format!(
            "ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} \
             GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {role}"
        ),
        format!(
            "ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} GRANT USAGE, SELECT ON SEQUENCES TO {role}"
        ),
    ];
    for table in MIGRATOR_TABLES {
        let exists = db
            .query_one_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT to_regclass(quote_ident(current_schema()) || '.' || quote_ident($1)) \
                 IS NOT NULL",
                [(*table).into()],
            ))
            .await
            .map_err(db_err("look up the migrator's tables"))?
            .and_then(|row| row.try_get_by_index::<bool>(0).ok())
            .unwrap_or(false);
        if exists {
            statements.push(format!(
                "REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON {schema}.{} FROM {role}",
                quoted(table)
            ));
        }
    }
    for sql in statements {
        db.execute_raw(query(sql))
            .await
            .map_err(db_err("grant DB_APP_ROLE its privileges"))?;
    }
    tracing::info!(
        role = %role,
        "granted the application role reading and writing the application's tables"
    );
    Ok(())
}
