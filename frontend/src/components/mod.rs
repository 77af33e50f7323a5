//! Widgets the pages share.

pub mod chart;
pub mod copy;
pub mod filters;
pub mod loading;
pub mod records;
pub mod signin;
pub mod time;
