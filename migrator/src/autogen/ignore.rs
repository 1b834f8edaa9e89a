//! What `check` and `autogenerate` leave out, because entities cannot express it. Each entry
//! says why; `migration/schema.txt` (see `scripts/schema-drift`) covers all of it instead.

/// Tables no entity declares on purpose: the migrator's own bookkeeping.
pub const TABLES: &[&str] = &[
    // SeaORM's record of applied migrations.
    "seaql_migrations",
    // The checksum of each applied migration's source (see `crate::checksum`).
    "seaql_migrations_checksum",
];

/// Indexes (table, name) the migrations create and entities cannot declare.
pub const INDEXES: &[(&str, &str)] = &[
    // Unique on `lower(email)`: an expression index (m20261127_000003).
    ("user", "user_email_lower_key"),
];

/// Whether the index `name` on `table` is left out of the comparison.
#[must_use]
pub fn index(table: &str, name: &str) -> bool {
    INDEXES.contains(&(table, name))
}

// Functions (`set_updated_at()`) and the text of triggers are not compared at all: the
// comparison reads tables, columns, keys, indexes and trigger names only.
