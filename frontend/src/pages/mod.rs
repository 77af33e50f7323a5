//! One module per route (BEHAVIOUR §11).

pub mod account;
pub mod admin;
pub mod docs;
pub mod enroll;
pub mod faq;
pub mod home;
