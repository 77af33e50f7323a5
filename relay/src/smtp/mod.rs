//! SMTP edges: the protocol state machine, TLS set-up and the submission listener.

pub mod protocol;
pub mod submission;
pub mod tls;
