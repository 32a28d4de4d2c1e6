//! The IAM policies forcemfa ships (the enforcement group's, its own) and the bootstrap that puts
//! the group's policy in place.

pub(crate) mod bootstrap;
mod documents;

pub use documents::*;
