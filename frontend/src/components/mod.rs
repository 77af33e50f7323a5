//! Widgets the pages share.

pub mod copy;
pub mod records;
