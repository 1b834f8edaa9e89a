//! The model: what the entities of the `entity` crate say the schema is.
//!
//! Each entity becomes SeaORM's own statements for it (`Schema::create_table_from_entity`,
//! `create_index_from_entity`); those are created in an empty scratch database, whose
//! catalog is then compared with the migrated one. A table with `created_at` and `updated_at`
//! (timestamp with time zone) is created through [`crate::timestamps::create_table`], as a
//! migration would create it, so it gets the same defaults and trigger.
//! (`SchemaBuilder::sync` is never used: on SQLite it dropped an index it did not know.)

use std::collections::BTreeMap;

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

/// The columns [`crate::timestamps::create_table`] adds.
pub const TIMESTAMP_COLUMNS: [&str; 2] = ["created_at", "updated_at"];

/// Every entity's `CREATE TABLE` and `CREATE INDEX` statements for a backend (the entity
/// crate's `tables`).
pub type Entities = fn(DbBackend) -> Vec<(TableCreateStatement, Vec<IndexCreateStatement>)>;

/// Checks that every module file of the entity crate's `src/` (but `lib.rs`, `prelude.rs`,
/// `mod.rs`) is one of the declared entity `modules`: a module left out of the list is no
/// entity of the model, so the comparison would miss its table. A folder that cannot be read
/// (a build moved away from its sources) is not checked.
///
/// # Errors
///
/// The modules left out, and the line to add for each.
pub fn check_declared(modules: &[&str], entity_dir: &str) -> Result<(), String> {
    let Ok(dir) = std::fs::read_dir(entity_dir) else {
        return Ok(());
    };
    let mut missing: Vec<String> = dir
        .flatten()
        .filter_map(|entry| {
            let path = entry.path();
            let stem = path.file_stem()?.to_str()?.to_owned();
            (path.extension()? == "rs").then_some(stem)
        })
        .filter(|stem| !["lib", "prelude", "mod"].contains(&stem.as_str()))
        .filter(|stem| !modules.contains(&stem.as_str()))
        .collect();
    missing.sort();
    if missing.is_empty() {
        return Ok(());
    }
    Err(format!(
        "entity/src has module files that are not declared as entities: {}. Add {} to the \
         `entities! {{ … }}` list in entity/src/lib.rs (and `pub use super::<name>::Entity as \
         <Name>;` to prelude.rs)",
        missing
            .iter()
            .map(|m| format!("{m}.rs"))
            .collect::<Vec<_>>()
            .join(", "),
        missing
            .iter()
            .map(|m| format!("`pub mod {m};`"))
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

/// A table of the model, ready to create or to write into a migration.
#[derive(Debug, Clone)]
pub struct ModelTable {
    /// Its name.
    pub name: String,
    /// Its columns without `renamed_from` notes, and without `created_at`/`updated_at` when
    /// [`Self::timestamps`] (those come from the helper).
    pub columns: Vec<ColumnDef>,
    /// Its foreign keys.
    pub foreign_keys: Vec<ForeignKeyCreateStatement>,
    /// Its indexes.
    pub indexes: Vec<IndexCreateStatement>,
    /// Created through `timestamps::create_table`.
    pub timestamps: bool,
    /// Column renames declared with `renamed_from`: new name → old name.
    pub renamed_from: BTreeMap<String, String>,
    /// The primary key's columns, in key order (one for `#[sea_orm(primary_key)]` on one
    /// field, several for a composite key).
    pub primary_key: Vec<String>,
}

impl ModelTable {
    /// The column named `name`, if the entity declares it (the timestamps included).
    #[must_use]
    pub fn column(&self, name: &str) -> Option<&ColumnDef> {
        self.columns.iter().find(|c| c.get_column_name() == name)
    }
}

/// Every entity's table, parents before the tables that reference them.
///
/// # Errors
///
/// An entity without a plain table name, or foreign keys that form a cycle.
pub fn tables(entities: Entities, backend: DbBackend) -> Result<Vec<ModelTable>, String> {
    // A native enum column is `ColumnType::Custom(name)` in the PostgreSQL statements, without
    // its values; the SQLite statements of the same entities keep the whole
    // `ColumnType::Enum`, which the PostgreSQL model then uses (it creates the type from it).
    let enum_types: BTreeMap<(String, String), ColumnType> = entities(DbBackend::Sqlite)
        .iter()
        .flat_map(|(create, _)| {
            let table = table_name(create).unwrap_or_default();
            create
                .get_columns()
                .iter()
                .filter(|c| matches!(c.get_column_type(), Some(ColumnType::Enum { .. })))
                .filter_map(move |c| {
                    Some((
                        (table.clone(), c.get_column_name()),
                        c.get_column_type()?.clone(),
                    ))
                })
        })
        .collect();
    let mut tables = Vec::new();
    for (create, indexes) in entities(backend) {
        let mut table = model_table(&create, indexes)?;
        for column in &mut table.columns {
            let enum_type = match column.get_column_type() {
                Some(ColumnType::Custom(_)) => {
                    enum_types.get(&(table.name.clone(), column.get_column_name()))
                }
                _ => None,
            };
            if let Some(enum_type) = enum_type {
                *column = with_type(column, enum_type.clone());
            }
        }
        tables.push(table);
    }
    order_by_dependency(tables)
}

/// The native enum types (name, values) the model's columns use, each once, in the order
/// the tables use them.
#[must_use]
pub fn enum_types(tables: &[ModelTable]) -> Vec<(String, Vec<String>)> {
    let mut types: Vec<(String, Vec<String>)> = Vec::new();
    for column in tables.iter().flat_map(|t| &t.columns) {
        if let Some((name, values)) = enum_of(column)
            && !types.iter().any(|(n, _)| *n == name)
        {
            types.push((name, values));
        }
    }
    types
}

/// The enum type (name, values) of a native enum column.
#[must_use]
pub fn enum_of(column: &ColumnDef) -> Option<(String, Vec<String>)> {
    match column.get_column_type() {
        Some(ColumnType::Enum { name, variants }) => Some((
            name.to_string(),
            variants.iter().map(ToString::to_string).collect(),
        )),
        _ => None,
    }
}

fn table_name(create: &TableCreateStatement) -> Option<String> {
    match create.get_table_name() {
        Some(TableRef::Table(TableName(_, name), _)) => Some(name.to_string()),
        _ => None,
    }
}

fn model_table(
    create: &TableCreateStatement,
    indexes: Vec<IndexCreateStatement>,
) -> Result<ModelTable, String> {
    let name = table_name(create).ok_or("an entity has no plain table name")?;
    let timestamps = TIMESTAMP_COLUMNS.iter().all(|t| {
        create.get_columns().iter().any(|c| {
            c.get_column_name() == *t
                && matches!(c.get_column_type(), Some(ColumnType::TimestampWithTimeZone))
        })
    });
    let mut renamed_from = BTreeMap::new();
    let mut columns = Vec::new();
    let mut primary_key: Vec<String> = create
        .get_indexes()
        .iter()
        .filter(|i| i.is_primary_key())
        .flat_map(|i| i.get_index_spec().get_column_names())
        .collect();
    for column in create.get_columns() {
        if column.get_column_spec().primary_key {
            primary_key.push(column.get_column_name());
        }
        let column_name = column.get_column_name();
        if timestamps && TIMESTAMP_COLUMNS.contains(&column_name.as_str()) {
            continue;
        }
        let spec = column.get_column_spec();
        if let Some(old) = spec
            .comment
            .as_deref()
            .and_then(|c| c.rsplit_once("renamed_from \""))
            .and_then(|(_, rest)| rest.strip_suffix('"'))
        {
            renamed_from.insert(column_name.clone(), old.to_owned());
        }
        columns.push(without_comment(column));
    }
    Ok(ModelTable {
        name,
        columns,
        foreign_keys: create.get_foreign_key_create_stmts().clone(),
        indexes,
        timestamps,
        renamed_from,
        primary_key,
    })
}

/// `column` with another type, everything else kept.
fn with_type(column: &ColumnDef, column_type: ColumnType) -> ColumnDef {
    let mut out = ColumnDef::new_with_type(Alias::new(column.get_column_name()), column_type);
    copy_spec(column, &mut out);
    out
}

/// The column with everything the comparison looks at, and no comment (SeaORM keeps
/// `renamed_from` in the comment).
fn without_comment(column: &ColumnDef) -> ColumnDef {
    let name = Alias::new(column.get_column_name());
    let mut out = match column.get_column_type() {
        Some(t) => ColumnDef::new_with_type(name, t.clone()),
        None => ColumnDef::new(name),
    };
    copy_spec(column, &mut out);
    out
}

/// Copies nullability, default, uniqueness and key flags (not the comment).
fn copy_spec(column: &ColumnDef, out: &mut ColumnDef) {
    let spec = column.get_column_spec();
    match spec.nullable {
        Some(false) => {
            out.not_null();
        }
        Some(true) => {
            out.null();
        }
        None => {}
    }
    if let Some(default) = &spec.default {
        out.default(default.clone());
    }
    if spec.unique {
        out.unique_key();
    }
    if spec.primary_key {
        out.primary_key();
    }
    if spec.auto_increment {
        out.auto_increment();
    }
}

fn references(table: &ModelTable) -> Vec<String> {
    table
        .foreign_keys
        .iter()
        .filter_map(|fk| match fk.get_foreign_key().get_ref_table() {
            Some(TableRef::Table(TableName(_, name), _)) => Some(name.to_string()),
            _ => None,
        })
        .filter(|parent| *parent != table.name)
        .collect()
}

fn order_by_dependency(mut pending: Vec<ModelTable>) -> Result<Vec<ModelTable>, String> {
    pending.sort_by(|a, b| a.name.cmp(&b.name));
    let mut ordered: Vec<ModelTable> = Vec::new();
    while !pending.is_empty() {
        let ready = pending.iter().position(|t| {
            references(t).iter().all(|parent| {
                ordered.iter().any(|o| &o.name == parent)
                    || !pending.iter().any(|p| &p.name == parent)
            })
        });
        match ready {
            Some(i) => ordered.push(pending.remove(i)),
            None => {
                return Err(format!(
                    "the foreign keys of {} form a cycle; create one of them in a migration by \
                     hand",
                    pending
                        .iter()
                        .map(|t| t.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
    }
    Ok(ordered)
}

/// Creates the model's tables and indexes in the empty database of `manager`. An entity whose
/// table cannot be created there (a type the backend lacks, a reference to such a table) is
/// left out and returned with the reason, so that a comparison reports it and goes on.
///
/// # Errors
///
/// Any other database error (an enum type, an index), naming it.
pub async fn create(
    manager: &SchemaManager<'_>,
    tables: &[ModelTable],
) -> Result<Vec<(String, String)>, DbErr> {
    let mut skipped: Vec<(String, String)> = Vec::new();
    if manager.get_database_backend() == DbBackend::Postgres {
        for (name, values) in enum_types(tables) {
            manager
                .create_type(
                    sea_orm_migration::sea_query::extension::postgres::Type::create()
                        .as_enum(Alias::new(name.clone()))
                        .values(values.into_iter().map(Alias::new))
                        .to_owned(),
                )
                .await
                .map_err(|e| DbErr::Migration(format!("enum type {name}: {e}")))?;
        }
    }
    for table in tables {
        let mut create = Table::create();
        create.table(Alias::new(table.name.clone()));
        for column in &table.columns {
            create.col(column.clone());
        }
        if table.primary_key.len() > 1 {
            let mut key = Index::create();
            for column in &table.primary_key {
                key.col(Alias::new(column.clone()));
            }
            create.primary_key(&mut key);
        }
        for fk in &table.foreign_keys {
            create.foreign_key(&mut fk.clone());
        }
        // SeaQuery panics on a type the backend lacks (an array on SQLite): that entity cannot
        // be modelled here, the others still can.
        let backend = manager.get_database_backend();
        if let Err(panic) =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| backend.build(&create)))
        {
            let why = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "its columns cannot be written for this backend".to_owned());
            skipped.push((table.name.clone(), why));
            continue;
        }
        let created = if table.timestamps {
            crate::timestamps::create_table(manager, create).await
        } else {
            manager.create_table(create).await
        };
        if let Err(e) = created {
            skipped.push((table.name.clone(), e.to_string()));
            continue;
        }
        for index in &table.indexes {
            manager
                .create_index(index.clone())
                .await
                .map_err(|e| DbErr::Migration(format!("entity {}: {e}", table.name)))?;
        }
    }
    Ok(skipped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_user_entity_is_a_timestamped_table_with_a_unique_email() {
        let tables = tables(entity::tables, DbBackend::Postgres).unwrap();
        let user = tables.iter().find(|t| t.name == "user").unwrap();
        assert!(user.timestamps);
        assert!(user.column("created_at").is_none(), "left to the helper");
        let email = user.column("email").unwrap();
        assert!(email.get_column_spec().unique);
        assert_eq!(
            email.get_column_type(),
            Some(&ColumnType::String(StringLen::N(255)))
        );
    }

    #[test]
    fn a_module_file_left_out_of_the_declared_entities_is_named_with_the_line_to_add() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../entity/src");
        assert_eq!(check_declared(entity::MODULES, dir), Ok(()));
        let err = check_declared(&[], dir).unwrap_err();
        assert!(
            err.contains("user.rs") && err.contains("`pub mod user;`"),
            "{err}"
        );
    }

    /// An entity SQLite cannot hold (an array column) is left out with the reason, and the
    /// others are created.
    #[tokio::test]
    async fn an_entity_the_backend_cannot_create_is_left_out_and_named() {
        let db = sea_orm_migration::sea_orm::Database::connect("sqlite::memory:")
            .await
            .unwrap();
        let manager = SchemaManager::new(&db);
        let table = |name: &str, column: ColumnDef| ModelTable {
            name: name.into(),
            columns: vec![
                ColumnDef::new(Alias::new("id"))
                    .integer()
                    .not_null()
                    .primary_key()
                    .to_owned(),
                column,
            ],
            foreign_keys: Vec::new(),
            indexes: Vec::new(),
            timestamps: false,
            renamed_from: BTreeMap::new(),
            primary_key: vec!["id".into()],
        };
        let skipped = create(
            &manager,
            &[
                table(
                    "tagged",
                    ColumnDef::new_with_type(
                        Alias::new("tags"),
                        ColumnType::Array(ColumnType::Text.into()),
                    )
                    .to_owned(),
                ),
                table(
                    "plain",
                    ColumnDef::new(Alias::new("n")).integer().to_owned(),
                ),
            ],
        )
        .await
        .unwrap();
        assert_eq!(skipped.len(), 1, "{skipped:?}");
        assert_eq!(skipped[0].0, "tagged");
        assert!(skipped[0].1.contains("Array"), "{skipped:?}");
        assert!(manager.has_table("plain").await.unwrap());
    }

    #[test]
    fn parents_come_before_the_tables_that_reference_them() {
        let table = |name: &str, parent: Option<&str>| ModelTable {
            name: name.into(),
            columns: Vec::new(),
            foreign_keys: parent
                .map(|p| {
                    vec![
                        ForeignKey::create()
                            .from(Alias::new(name), Alias::new("p_id"))
                            .to(Alias::new(p), Alias::new("id"))
                            .to_owned(),
                    ]
                })
                .unwrap_or_default(),
            indexes: Vec::new(),
            timestamps: false,
            renamed_from: BTreeMap::new(),
            primary_key: vec!["id".into()],
        };
        let ordered = order_by_dependency(vec![
            table("a", Some("b")),
            table("b", Some("c")),
            table("c", None),
        ])
        .unwrap();
        let names: Vec<_> = ordered.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["c", "b", "a"]);
        let cycle = order_by_dependency(vec![table("a", Some("b")), table("b", Some("a"))]);
        assert!(cycle.unwrap_err().contains("cycle"));
    }
}
