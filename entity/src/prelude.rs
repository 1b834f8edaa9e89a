//! The entities by their model names.

pub use super::user::Entity as User;
