//! [`CachedSql`]: a repository's fixed statement, rendered by SeaQuery once per backend.

use std::sync::OnceLock;

use sea_orm::{DbBackend, Statement, Value};

/// SQL rendered by SeaQuery once per backend, reused with fresh values on every call: the
/// statements of the hot paths are fixed, so building and rendering them per call (a few µs)
/// is wasted work. Declare one as a `static` next to the repository that runs it.
#[derive(Debug)]
pub(crate) struct CachedSql {
    render: fn(DbBackend) -> String,
    postgres: OnceLock<String>,
    sqlite: OnceLock<String>,
}

impl CachedSql {
    pub(crate) const fn new(render: fn(DbBackend) -> String) -> Self {
        Self {
            render,
            postgres: OnceLock::new(),
            sqlite: OnceLock::new(),
        }
    }

    /// The SQL for PostgreSQL or SQLite (any other backend gets PostgreSQL's), rendered on
    /// first use.
    pub(crate) fn sql(&'static self, backend: DbBackend) -> &'static str {
        let slot = match backend {
            DbBackend::Sqlite => &self.sqlite,
            _ => &self.postgres,
        };
        slot.get_or_init(|| (self.render)(backend))
    }

    /// The statement for `backend` with `values` bound, for SeaORM's query path.
    pub(crate) fn statement(&'static self, backend: DbBackend, values: Vec<Value>) -> Statement {
        match backend {
            DbBackend::Postgres | DbBackend::Sqlite => {
                Statement::from_sql_and_values(backend, self.sql(backend), values)
            }
            _ => Statement::from_sql_and_values(backend, (self.render)(backend), values),
        }
    }
}
