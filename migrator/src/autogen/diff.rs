//! Comparison and planning: what differs between the migrated catalog and the model's, as
//! changes in the order a migration applies them.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::{self, Write as _};

use super::catalog::{Catalog, ColumnFacts, ForeignKeyFacts, IndexFacts, TableFacts};
use super::ignore;
use super::model::ModelTable;

/// One difference, with what a migration needs to make it and to undo it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A table of the model that the migrations do not create.
    CreateTable {
        /// The table.
        table: String,
    },
    /// A table the migrations create that no entity declares.
    DropTable {
        /// The table as the migrations leave it.
        table: String,
        /// Its catalog facts (to create it again in `down`).
        facts: TableFacts,
    },
    /// A column of the model that the table lacks.
    AddColumn {
        /// The table.
        table: String,
        /// The column as the model's database renders it.
        column: ColumnFacts,
    },
    /// A column no entity field declares.
    DropColumn {
        /// The table.
        table: String,
        /// The column as the migrations leave it.
        column: ColumnFacts,
        /// The one column of the same type added to the table in the same change: probably
        /// this one renamed, without `renamed_from`.
        renamed_to: Option<String>,
    },
    /// A column declared with `renamed_from`.
    RenameColumn {
        /// The table.
        table: String,
        /// The old name.
        from: String,
        /// The new name.
        to: String,
    },
    /// Type, nullability or default differ.
    AlterColumn {
        /// The table.
        table: String,
        /// Before.
        from: ColumnFacts,
        /// After.
        to: ColumnFacts,
    },
    /// A unique constraint to add.
    AddUnique {
        /// The table.
        table: String,
        /// Its columns.
        columns: Vec<String>,
    },
    /// A unique constraint to drop.
    DropUnique {
        /// The table.
        table: String,
        /// Its columns.
        columns: Vec<String>,
    },
    /// An index to create.
    CreateIndex {
        /// The table.
        table: String,
        /// Its name.
        name: String,
        /// Its definition.
        index: IndexFacts,
        /// The table was there before this migration (so on PostgreSQL it is built
        /// concurrently, without blocking writes).
        existing_table: bool,
    },
    /// An index to drop.
    DropIndex {
        /// The table.
        table: String,
        /// Its name.
        name: String,
        /// Its definition.
        index: IndexFacts,
    },
    /// A foreign key to add.
    AddForeignKey {
        /// The table.
        table: String,
        /// The key.
        foreign_key: ForeignKeyFacts,
    },
    /// A foreign key to drop.
    DropForeignKey {
        /// The table.
        table: String,
        /// The key.
        foreign_key: ForeignKeyFacts,
        /// Its name (PostgreSQL), which `down` gives it back.
        name: Option<String>,
    },
    /// A PostgreSQL enum type the model's columns use and the migrations do not create.
    CreateEnum {
        /// The type's name.
        name: String,
        /// Its values, in order.
        values: Vec<String>,
    },
    /// Values added at the end of a PostgreSQL enum type.
    AddEnumValues {
        /// The type's name.
        name: String,
        /// The values before.
        before: Vec<String>,
        /// The values added, in order.
        added: Vec<String>,
    },
    /// A PostgreSQL enum type no entity column uses any more.
    DropEnum {
        /// The type's name.
        name: String,
        /// Its values (to create it again in `down`).
        values: Vec<String>,
    },
    /// A difference no generated migration makes (a primary key, an identity, a trigger, an
    /// expression index): `check` reports it, `autogenerate` refuses and says so.
    Manual {
        /// The table.
        table: String,
        /// What differs.
        what: String,
    },
}

impl Change {
    /// Whether this step is an index on a table that exists already, which a migration of its
    /// own builds without blocking writes ([`crate::online::create_index`]: `CONCURRENTLY` on
    /// PostgreSQL, which cannot run inside a transaction, so it cannot share a migration with
    /// steps that must).
    #[must_use]
    pub fn builds_online(&self) -> bool {
        matches!(
            self,
            Self::CreateIndex {
                existing_table: true,
                ..
            }
        )
    }

    /// Why this step can lose data or fail on existing rows, if it can.
    #[must_use]
    pub fn destructive(&self) -> Option<String> {
        match self {
            Self::DropTable { table, .. } => Some(format!("drops table {table} and its rows")),
            Self::DropColumn { table, column, .. } => {
                let mut why = format!("drops column {table}.{} and its data", column.name);
                if let Some(lost) = self.not_restorable() {
                    let _ = write!(why, "; {lost}");
                }
                Some(why)
            }
            Self::DropEnum { name, .. } => Some(format!("drops enum type {name}")),
            Self::AddColumn { table, column } if !column.nullable && column.default.is_none() => {
                Some(format!(
                    "adds NOT NULL column {table}.{} without a default: fails if {table} has rows",
                    column.name
                ))
            }
            Self::AlterColumn { table, from, to } => {
                let mut reasons = Vec::new();
                if from.sql_type != to.sql_type && narrows(&from.sql_type, &to.sql_type) {
                    reasons.push(format!(
                        "narrows {table}.{} from {} to {}: fails or truncates on values that do \
                         not fit",
                        to.name, from.sql_type, to.sql_type
                    ));
                }
                if from.nullable && !to.nullable {
                    reasons.push(format!(
                        "makes {table}.{} NOT NULL: fails while a row holds NULL",
                        to.name
                    ));
                }
                (!reasons.is_empty()).then(|| reasons.join("; "))
            }
            _ => None,
        }
    }
}

impl Change {
    /// Why this step's `down` cannot give the data back, if it cannot: a dropped `NOT NULL`
    /// column without a default comes back without its values, and adding it fails while the
    /// table has rows.
    #[must_use]
    pub fn not_restorable(&self) -> Option<String> {
        match self {
            Self::DropColumn { table, column, .. }
                if !column.nullable && column.default.is_none() =>
            {
                Some(format!(
                    "`down` cannot restore {table}.{}: NOT NULL without a default, adding it \
                     back fails while {table} has rows (give the column a default first, or \
                     write `down` by hand)",
                    column.name
                ))
            }
            _ => None,
        }
    }
}

/// Whether changing a column's type from `from` to `to` can lose or refuse values: anything
/// but a longer string, string to text, or a wider integer or float.
#[must_use]
pub fn narrows(from: &str, to: &str) -> bool {
    let family = |t: &str| -> (u8, u32) {
        let t = t.to_ascii_lowercase();
        let len = t
            .split_once('(')
            .and_then(|(_, rest)| rest.trim_end_matches(')').split(',').next())
            .and_then(|n| n.trim().parse().ok());
        match t.split('(').next().unwrap_or("").trim() {
            "smallint" | "tinyint" => (1, 16),
            "integer" | "int" => (1, 32),
            "bigint" => (1, 64),
            "real" | "float" => (2, 32),
            "double precision" | "double" => (2, 64),
            "character varying" | "varchar" => (3, len.unwrap_or(u32::MAX - 1)),
            "text" => (3, u32::MAX),
            _ => (0, 0),
        }
    };
    let (a, b) = (family(from), family(to));
    a.0 == 0 || a.0 != b.0 || b.1 < a.1
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let column = |c: &ColumnFacts| {
            format!(
                "{}{}{}",
                c.sql_type,
                if c.nullable { " NULL" } else { " NOT NULL" },
                c.default
                    .as_ref()
                    .map(|d| format!(" DEFAULT {d}"))
                    .unwrap_or_default()
            )
        };
        let fk = |k: &ForeignKeyFacts| {
            format!(
                "({}) -> {}({}) ON DELETE {} ON UPDATE {}",
                k.columns.join(", "),
                k.foreign_table,
                k.foreign_columns.join(", "),
                k.on_delete,
                k.on_update
            )
        };
        match self {
            Self::CreateTable { table } => write!(f, "table {table}: new in the entities"),
            Self::DropTable { table, .. } => write!(f, "table {table}: in no entity"),
            Self::AddColumn { table, column: c } => {
                write!(
                    f,
                    "column {table}.{}: new in the entities ({})",
                    c.name,
                    column(c)
                )
            }
            Self::DropColumn {
                table,
                column: c,
                renamed_to,
            } => {
                write!(f, "column {table}.{}: in no entity field", c.name)?;
                match renamed_to {
                    Some(new) => write!(
                        f,
                        " (renamed to {new}? then declare \
                         `#[sea_orm(renamed_from = \"{}\")]` on the field `{new}` instead, \
                         which keeps the data)",
                        c.name
                    ),
                    None => Ok(()),
                }
            }
            Self::CreateEnum { name, values } => {
                write!(
                    f,
                    "enum type {name} ({}): new in the entities",
                    values.join(", ")
                )
            }
            Self::AddEnumValues { name, added, .. } => {
                write!(
                    f,
                    "enum type {name}: values {} new in the entities",
                    added.join(", ")
                )
            }
            Self::DropEnum { name, .. } => write!(f, "enum type {name}: in no entity"),
            Self::RenameColumn { table, from, to } => {
                write!(f, "column {table}.{to}: renamed from {from}")
            }
            Self::AlterColumn { table, from, to } => write!(
                f,
                "column {table}.{}: {} in the migrations, {} in the entities",
                to.name,
                column(from),
                column(to)
            ),
            Self::AddUnique { table, columns } => {
                write!(
                    f,
                    "unique {table}({}): new in the entities",
                    columns.join(", ")
                )
            }
            Self::DropUnique { table, columns } => {
                write!(f, "unique {table}({}): in no entity", columns.join(", "))
            }
            Self::CreateIndex {
                table, name, index, ..
            } => write!(
                f,
                "index {name} on {table}({}){}: new in the entities",
                index.columns.join(", "),
                if index.unique { " unique" } else { "" }
            ),
            Self::DropIndex { table, name, .. } => {
                write!(f, "index {name} on {table}: in no entity")
            }
            Self::AddForeignKey { table, foreign_key } => {
                write!(
                    f,
                    "foreign key {table}{}: new in the entities",
                    fk(foreign_key)
                )
            }
            Self::DropForeignKey {
                table, foreign_key, ..
            } => {
                write!(f, "foreign key {table}{}: in no entity", fk(foreign_key))
            }
            Self::Manual { table, what } => write!(f, "{table}: {what}"),
        }
    }
}

/// The changes that turn the migrated catalog `actual` into the model's `desired`, in the
/// order a migration's `up` makes them (its `down` undoes them in reverse).
#[must_use]
pub fn plan(actual: &Catalog, desired: &Catalog, model: &[ModelTable]) -> Vec<Change> {
    let mut drops = Vec::new(); // foreign keys, indexes, uniques
    let mut renames = Vec::new();
    let mut creates = Vec::new();
    let mut columns = Vec::new();
    let mut adds = Vec::new(); // uniques, foreign keys, indexes
    let mut column_drops = Vec::new();
    let mut table_drops = Vec::new();

    // Tables in the model's dependency order (parents first).
    let order: Vec<&str> = model.iter().map(|t| t.name.as_str()).collect();
    for name in &order {
        let Some(want) = desired.tables.get(*name) else {
            continue;
        };
        let Some(have) = actual.tables.get(*name) else {
            creates.push(Change::CreateTable {
                table: (*name).to_owned(),
            });
            for (index, facts) in &want.indexes {
                adds.push(Change::CreateIndex {
                    table: (*name).to_owned(),
                    name: index.clone(),
                    index: facts.clone(),
                    existing_table: false,
                });
            }
            continue;
        };
        let renamed = model
            .iter()
            .find(|t| t.name == *name)
            .map(|t| t.renamed_from.clone())
            .unwrap_or_default();
        compare_table(
            name,
            have,
            want,
            &renamed,
            &mut [
                &mut drops,
                &mut renames,
                &mut columns,
                &mut adds,
                &mut column_drops,
            ],
        );
    }
    // Tables no entity declares: children before parents.
    let mut gone: Vec<(&String, &TableFacts)> = actual
        .tables
        .iter()
        .filter(|(name, _)| !desired.tables.contains_key(*name))
        .collect();
    // Fewest referencing tables first: a child before its parent.
    gone.sort_by_key(|(name, _)| {
        actual
            .tables
            .values()
            .filter(|t| t.foreign_keys.iter().any(|k| &k.foreign_table == *name))
            .count()
    });
    for (name, facts) in gone {
        table_drops.push(Change::DropTable {
            table: name.clone(),
            facts: facts.clone(),
        });
    }
    let (mut enum_adds, mut enum_drops) = (Vec::new(), Vec::new());
    if desired.enums.is_empty() {
        // SQLite has no enum types (an enum column is text): a type is new when every column
        // of the model that uses it is new, so that the migration runs on PostgreSQL too.
        // (Values added to a type, or a type no longer used, show on PostgreSQL only.)
        for (name, values) in super::model::enum_types(model) {
            let all_new = model.iter().all(|t| {
                t.columns.iter().all(|c| {
                    super::model::enum_of(c).is_none_or(|(n, _)| n != name)
                        || actual.tables.get(&t.name).is_none_or(|have| {
                            let old = t
                                .renamed_from
                                .get(&c.get_column_name())
                                .cloned()
                                .unwrap_or_else(|| c.get_column_name());
                            have.column(&old).is_none()
                        })
                })
            });
            if all_new {
                enum_adds.push(Change::CreateEnum { name, values });
            }
        }
    }
    for (name, values) in &desired.enums {
        match actual.enums.get(name) {
            None => enum_adds.push(Change::CreateEnum {
                name: name.clone(),
                values: values.clone(),
            }),
            Some(have) if have == values => {}
            Some(have) if values.starts_with(have) => enum_adds.push(Change::AddEnumValues {
                name: name.clone(),
                before: have.clone(),
                added: values[have.len()..].to_vec(),
            }),
            Some(have) => enum_adds.push(Change::Manual {
                table: format!("enum type {name}"),
                what: format!(
                    "values ({}) in the migrations, ({}) in the entities; a generated migration \
                     only adds values at the end (PostgreSQL cannot drop or reorder enum \
                     values in place): add new variants last, or write the migration by hand",
                    have.join(", "),
                    values.join(", ")
                ),
            }),
        }
    }
    for (name, values) in &actual.enums {
        if !desired.enums.contains_key(name) {
            enum_drops.push(Change::DropEnum {
                name: name.clone(),
                values: values.clone(),
            });
        }
    }
    let mut ordered = Vec::new();
    ordered.extend(drops);
    ordered.extend(renames);
    ordered.extend(enum_adds);
    ordered.extend(creates);
    ordered.extend(columns);
    ordered.extend(adds);
    ordered.extend(column_drops);
    ordered.extend(table_drops);
    ordered.extend(enum_drops);
    ordered
}

fn compare_table(
    table: &str,
    have: &TableFacts,
    want: &TableFacts,
    renamed_from: &BTreeMap<String, String>,
    [drops, renames, columns, adds, column_drops]: &mut [&mut Vec<Change>; 5],
) {
    let t = || table.to_owned();
    // Old name → new name, for renames declared on the entity and not yet made.
    let mut renamed: BTreeMap<String, String> = BTreeMap::new();
    for (new, old) in renamed_from {
        if have.column(new).is_none() && have.column(old).is_some() && want.column(new).is_some() {
            renamed.insert(old.clone(), new.clone());
            renames.push(Change::RenameColumn {
                table: t(),
                from: old.clone(),
                to: new.clone(),
            });
        }
    }
    let current = |name: &str| {
        renamed
            .get(name)
            .cloned()
            .unwrap_or_else(|| name.to_owned())
    };
    let rename_all = |cols: &[String]| cols.iter().map(|c| current(c)).collect::<Vec<_>>();

    for column in &want.columns {
        let old_name = renamed
            .iter()
            .find(|(_, new)| **new == column.name)
            .map_or(column.name.as_str(), |(old, _)| old.as_str());
        match have.column(old_name) {
            None => columns.push(Change::AddColumn {
                table: t(),
                column: column.clone(),
            }),
            Some(old) => {
                let old = ColumnFacts {
                    name: column.name.clone(),
                    ..old.clone()
                };
                if old.auto_increment != column.auto_increment {
                    columns.push(Change::Manual {
                        table: t(),
                        what: format!(
                            "column {}: auto-increment differs (the migrations: {}, the \
                             entities: {})",
                            column.name, old.auto_increment, column.auto_increment
                        ),
                    });
                } else if old.sql_type != column.sql_type
                    || old.nullable != column.nullable
                    || old.default != column.default
                {
                    columns.push(Change::AlterColumn {
                        table: t(),
                        from: old,
                        to: column.clone(),
                    });
                }
            }
        }
    }
    let added: Vec<&ColumnFacts> = want
        .columns
        .iter()
        .filter(|c| {
            let old_name = renamed
                .iter()
                .find(|(_, new)| **new == c.name)
                .map_or(c.name.as_str(), |(old, _)| old.as_str());
            have.column(old_name).is_none()
        })
        .collect();
    for column in &have.columns {
        if want.column(&current(&column.name)).is_none() {
            let same_type: Vec<&&ColumnFacts> = added
                .iter()
                .filter(|c| c.sql_type == column.sql_type)
                .collect();
            column_drops.push(Change::DropColumn {
                table: t(),
                column: column.clone(),
                renamed_to: match same_type.as_slice() {
                    [one] => Some(one.name.clone()),
                    _ => None,
                },
            });
        }
    }
    if rename_all(&have.primary_key) != want.primary_key {
        columns.push(Change::Manual {
            table: t(),
            what: format!(
                "primary key ({}) in the migrations, ({}) in the entities",
                have.primary_key.join(", "),
                want.primary_key.join(", ")
            ),
        });
    }
    let have_uniques: BTreeSet<Vec<String>> = have.uniques.iter().map(|u| rename_all(u)).collect();
    for unique in want.uniques.difference(&have_uniques) {
        adds.push(Change::AddUnique {
            table: t(),
            columns: unique.clone(),
        });
    }
    for unique in have_uniques.difference(&want.uniques) {
        drops.push(Change::DropUnique {
            table: t(),
            columns: unique.clone(),
        });
    }
    for (name, index) in &have.indexes {
        if ignore::index(table, name) {
            continue;
        }
        let index = IndexFacts {
            columns: if index.expression {
                index.columns.clone()
            } else {
                rename_all(&index.columns)
            },
            ..index.clone()
        };
        match want.indexes.get(name) {
            Some(wanted) if *wanted == index => {}
            _ if index.expression => columns.push(Change::Manual {
                table: t(),
                what: format!(
                    "index {name} is on an expression, which entities cannot declare; list it \
                     in migration/src/autogen/ignore.rs or drop it in a migration"
                ),
            }),
            _ => drops.push(Change::DropIndex {
                table: t(),
                name: name.clone(),
                index,
            }),
        }
    }
    for (name, index) in &want.indexes {
        let same = have
            .indexes
            .get(name)
            .is_some_and(|h| h.unique == index.unique && rename_all(&h.columns) == index.columns);
        if !same {
            adds.push(Change::CreateIndex {
                table: t(),
                name: name.clone(),
                index: index.clone(),
                existing_table: true,
            });
        }
    }
    let have_fks: Vec<ForeignKeyFacts> = have
        .foreign_keys
        .iter()
        .map(|k| ForeignKeyFacts {
            columns: rename_all(&k.columns),
            ..k.clone()
        })
        .collect();
    for (fk, original) in have_fks.iter().zip(&have.foreign_keys) {
        if !want.foreign_keys.contains(fk) {
            drops.push(Change::DropForeignKey {
                table: t(),
                foreign_key: fk.clone(),
                name: have.foreign_key_names.get(&original.columns).cloned(),
            });
        }
    }
    for fk in &want.foreign_keys {
        if !have_fks.contains(fk) {
            adds.push(Change::AddForeignKey {
                table: t(),
                foreign_key: fk.clone(),
            });
        }
    }
    if have.triggers != want.triggers {
        columns.push(Change::Manual {
            table: t(),
            what: format!(
                "triggers ({}) in the migrations, ({}) in the entities (a table with \
                 created_at/updated_at gets its trigger from timestamps::create_table)",
                have.triggers.iter().cloned().collect::<Vec<_>>().join(", "),
                want.triggers.iter().cloned().collect::<Vec<_>>().join(", ")
            ),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(name: &str, sql_type: &str, nullable: bool) -> ColumnFacts {
        ColumnFacts {
            name: name.into(),
            sql_type: sql_type.into(),
            nullable,
            default: None,
            auto_increment: false,
        }
    }

    fn table(columns: Vec<ColumnFacts>) -> TableFacts {
        TableFacts {
            primary_key: vec!["id".into()],
            columns,
            ..TableFacts::default()
        }
    }

    fn model(name: &str, renamed: &[(&str, &str)]) -> ModelTable {
        ModelTable {
            name: name.into(),
            columns: Vec::new(),
            foreign_keys: Vec::new(),
            indexes: Vec::new(),
            timestamps: false,
            primary_key: vec!["id".into()],
            renamed_from: renamed
                .iter()
                .map(|(n, o)| ((*n).to_owned(), (*o).to_owned()))
                .collect(),
        }
    }

    fn catalog(tables: Vec<(&str, TableFacts)>) -> Catalog {
        Catalog {
            tables: tables.into_iter().map(|(n, t)| (n.to_owned(), t)).collect(),
            enums: BTreeMap::new(),
        }
    }

    #[test]
    fn equal_catalogs_plan_nothing() {
        let c = catalog(vec![("user", table(vec![col("id", "integer", false)]))]);
        assert!(plan(&c, &c, &[model("user", &[])]).is_empty());
    }

    #[test]
    fn added_dropped_and_changed_columns_are_planned_with_destructive_ones_named() {
        let have = catalog(vec![(
            "user",
            table(vec![
                col("id", "integer", false),
                col("name", "character varying(255)", true),
                col("nick", "text", true),
            ]),
        )]);
        let want = catalog(vec![(
            "user",
            table(vec![
                col("id", "integer", false),
                col("name", "character varying(100)", false),
                col("bio", "text", true),
            ]),
        )]);
        let changes = plan(&have, &want, &[model("user", &[])]);
        let text: Vec<String> = changes.iter().map(ToString::to_string).collect();
        assert!(text[0].starts_with("column user.name:"), "{text:?}");
        assert!(text[1].starts_with("column user.bio: new"), "{text:?}");
        assert!(
            text[2].starts_with("column user.nick: in no entity"),
            "{text:?}"
        );
        let alter = changes[0].destructive().unwrap();
        assert!(
            alter.contains("narrows") && alter.contains("NOT NULL"),
            "{alter}"
        );
        assert!(
            changes[1].destructive().is_none(),
            "a nullable column is safe"
        );
        assert!(changes[2].destructive().is_some());
    }

    #[test]
    fn a_declared_rename_is_a_rename_not_a_drop_and_an_add() {
        let have = catalog(vec![(
            "user",
            table(vec![
                col("id", "integer", false),
                col("name", "text", false),
            ]),
        )]);
        let want = catalog(vec![(
            "user",
            table(vec![
                col("id", "integer", false),
                col("full_name", "text", false),
            ]),
        )]);
        let changes = plan(&have, &want, &[model("user", &[("full_name", "name")])]);
        assert_eq!(
            changes,
            [Change::RenameColumn {
                table: "user".into(),
                from: "name".into(),
                to: "full_name".into()
            }]
        );
    }

    #[test]
    fn new_tables_come_with_their_indexes_and_missing_tables_are_dropped() {
        let mut post = table(vec![col("id", "integer", false)]);
        post.indexes.insert(
            "idx-post-title".into(),
            IndexFacts {
                columns: vec!["title".into()],
                unique: false,
                expression: false,
            },
        );
        let have = catalog(vec![("old", table(vec![col("id", "integer", false)]))]);
        let want = catalog(vec![("post", post)]);
        let changes = plan(&have, &want, &[model("post", &[])]);
        assert!(matches!(&changes[0], Change::CreateTable { table } if table == "post"));
        assert!(matches!(
            &changes[1],
            Change::CreateIndex {
                existing_table: false,
                ..
            }
        ));
        assert!(matches!(&changes[2], Change::DropTable { table, .. } if table == "old"));
    }

    #[test]
    fn enum_types_are_created_extended_refused_when_reordered_and_dropped() {
        let enums = |list: &[(&str, &[&str])]| -> BTreeMap<String, Vec<String>> {
            list.iter()
                .map(|(n, v)| ((*n).to_owned(), v.iter().map(|s| (*s).to_owned()).collect()))
                .collect()
        };
        let with = |e| Catalog {
            enums: e,
            ..Catalog::default()
        };
        let have = with(enums(&[("mood", &["happy", "sad"]), ("old", &["x"])]));
        let want = with(enums(&[
            ("mood", &["happy", "sad", "calm"]),
            ("size", &["s"]),
        ]));
        let changes = plan(&have, &want, &[]);
        assert_eq!(
            changes,
            [
                Change::AddEnumValues {
                    name: "mood".into(),
                    before: vec!["happy".into(), "sad".into()],
                    added: vec!["calm".into()],
                },
                Change::CreateEnum {
                    name: "size".into(),
                    values: vec!["s".into()],
                },
                Change::DropEnum {
                    name: "old".into(),
                    values: vec!["x".into()],
                },
            ]
        );
        let reordered = with(enums(&[("mood", &["sad", "happy"]), ("old", &["x"])]));
        let changes = plan(&have, &reordered, &[]);
        assert!(
            matches!(&changes[0], Change::Manual { what, .. } if what.contains("only adds values at the end")),
            "{changes:?}"
        );
    }

    #[test]
    fn a_dropped_column_with_one_added_of_its_type_suggests_renamed_from() {
        let have = catalog(vec![(
            "user",
            table(vec![
                col("id", "integer", false),
                col("nick", "text", false),
            ]),
        )]);
        let want = catalog(vec![(
            "user",
            table(vec![
                col("id", "integer", false),
                col("nickname", "text", true),
            ]),
        )]);
        let changes = plan(&have, &want, &[model("user", &[])]);
        let drop = changes
            .iter()
            .find(|c| matches!(c, Change::DropColumn { .. }))
            .unwrap();
        let text = drop.to_string();
        assert!(
            text.contains("`#[sea_orm(renamed_from = \"nick\")]` on the field `nickname`"),
            "{text}"
        );
        // NOT NULL without a default: `down` cannot give the rows their values back.
        let lost = drop.not_restorable().unwrap();
        assert!(lost.contains("`down` cannot restore user.nick"), "{lost}");
        assert!(drop.destructive().unwrap().contains(&lost));
    }

    #[test]
    fn widening_is_not_narrowing() {
        assert!(!narrows("character varying(100)", "character varying(255)"));
        assert!(!narrows("character varying(255)", "text"));
        assert!(!narrows("integer", "bigint"));
        assert!(narrows("text", "character varying(255)"));
        assert!(narrows("bigint", "integer"));
        assert!(narrows("text", "integer"));
    }
}
