//! `cargo migrate <command>` (`cargo run -p migration -- <command>`), which is also what
//! `sea-orm-cli migrate <command>` runs: the migrator's command line over this crate's
//! migrations and the `entity` crate's model.

fn main() -> std::process::ExitCode {
    migrator::cli::main::<migration::Migrator>(&migrator::cli::Project {
        migration_dir: env!("CARGO_MANIFEST_DIR"),
        entities: entity::tables,
        entity_modules: entity::MODULES,
        // This checkout's entity sources (see `entity::SOURCE_DIR`).
        entity_dir: match entity::SOURCE_DIR {
            Some(dir) => dir,
            None => concat!(env!("CARGO_MANIFEST_DIR"), "/../entity/src"),
        },
    })
}
