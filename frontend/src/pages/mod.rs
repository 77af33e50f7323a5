//! One module per route.

pub mod enroll;
pub mod home;
