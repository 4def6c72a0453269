//! Layered configuration. Lowest first: built-in defaults → the machine-wide managed file →
//! the user's file → the integration settings store (`callsync settings`, see [`crate::settings`])
//! → `CALLSYNC_*` environment variables → command-line `--set`. The managed file
//! may lock keys (`[policy] locked = [...]`); later layers then cannot change them, and the agent
//! says so instead of failing, because a user's stale file must never stop a fleet's agents.
//!
//! Every effective value remembers where it came from, for `callsync config show` and for error
//! messages that name the file (or variable) and the key.

mod layers;
pub mod policy;
mod sections;
pub mod settings;

pub use layers::*;
pub use sections::*;

/// The annotated example shipped in `assets/`, printed by `callsync config example`.
pub const EXAMPLE: &str = include_str!("../../../assets/config.example.toml");

#[cfg(test)]
mod tests;
