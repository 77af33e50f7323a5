//! SMTP edges: the protocol state machine, the session driver, TLS set-up, and the submission
//! and inbound listeners (their policies).

pub mod mx_policy;
pub mod protocol;
pub mod session;
pub mod submission;
