//! One module per route (SPEC §11).

pub mod account;
pub mod admin;
pub mod docs;
pub mod enroll;
pub mod faq;
pub mod home;
