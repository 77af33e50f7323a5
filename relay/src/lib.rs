//! Atmosphere Mail relay: SMTP submission, acceptance, durable spool, MX delivery.
//!
//! Layering (top to bottom; nothing low imports something high): edges (`smtp`, `dev`,
//! `server`) → policy (`auth`, `members`) → acceptance (`accept`) → queue (`spool`, `delivery`)
//! → base (`store`, `config`). See docs/ARCHITECTURE.md.

pub mod accept;
pub mod address;
pub mod auth;
pub mod backup;
pub mod bounces;
pub mod config;
pub mod connections;
pub mod delivery;
pub mod dev;
pub mod dkim;
pub mod dns;
pub mod enrollment;
pub mod headers;
pub mod http;
pub mod identity;
pub mod inbound;
pub mod kafka;
pub mod labeler_host;
pub mod line_ends;
pub mod logging;
pub mod members;
pub mod metrics;
pub mod oauth;
pub mod operator;
pub mod records;
pub mod reload;
pub mod rules;
pub mod secrets;
pub mod server;
pub mod smtp;
pub mod spool;
pub mod srs;
pub mod store;
pub mod suppression;
pub mod tls;
pub mod verp;
pub mod warming;

#[cfg(test)]
mod tidy;
