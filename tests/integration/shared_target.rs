//! Two checkouts of the project sharing one target folder (a global `target-dir` in
//! `~/.cargo/config.toml` is common), one with an entity more than the other: each builds and
//! `check`s against its own entities, in either order, never against the other's.

use crate::autogenerate::Scratch;

const POST: &str = r#"use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "post")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i32,
    pub title: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
"#;

/// `check` on an in-memory SQLite database, migrated first: (exit code, stdout and stderr).
fn check(scratch: &Scratch, step: &str) -> (Option<i32>, String) {
    scratch.build(step);
    let output = scratch.migrator("sqlite::memory:", &["check"]);
    (
        output.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

#[test]
fn two_checkouts_sharing_a_target_folder_each_check_their_own_entities() {
    let target = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("shared-target");
    let plain = Scratch::named("shared-target-plain").with_target(target.clone());
    let with_post = Scratch::named("shared-target-post").with_target(target);
    std::fs::write(with_post.path("entity/src/post.rs"), POST).unwrap();
    with_post.edit(
        "entity/src/lib.rs",
        "    pub mod user;",
        "    pub mod post;\n    pub mod user;",
    );

    let clean = |step: &str| {
        let (code, printed) = check(&plain, step);
        assert_eq!(
            code,
            Some(0),
            "{step}: the plain checkout checks clean:\n{printed}"
        );
        assert!(
            !printed.contains("post"),
            "{step}: nothing of the other checkout:\n{printed}"
        );
    };
    let differs = |step: &str| {
        let (code, printed) = check(&with_post, step);
        assert_ne!(
            code,
            Some(0),
            "{step}: the entity has no migration yet:\n{printed}"
        );
        assert!(
            printed.contains("post"),
            "{step}: `check` names the new table:\n{printed}"
        );
    };
    clean("plain, first");
    differs("with post, after plain");
    clean("plain, after with post");
    differs("with post, after plain again");
}
