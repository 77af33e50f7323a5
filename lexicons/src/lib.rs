//! Shared Rust types for the `email.atmos.*` lexicons (lexicon JSON lives beside this crate).
//! Not built yet.
