//! The atproto OAuth client that signs members (and operators) in through their own PDS: PAR +
//! PKCE S256 + DPoP with server nonces, `iss` checked on the callback, the granted `sub` checked
//! against the identity that was typed, the granted scope checked for `atproto` and write access
//! to attestations. Two client kinds: the confidential web client (`private_key_jwt`, keys in
//! [`keys`]) when `[web] public_url` is set, else the atproto loopback client (development).
//!
//! Every failure is a value ([`OAuthError`]); nothing here panics on what a server sends.

pub mod client;
pub mod discovery;
pub mod dpop;
pub mod jose;
pub mod keys;

pub use client::{OAuthClient, Pending, Tokens};

/// Why signing in failed. `Display` is a sentence for the person signing in; details go to the
/// log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OAuthError {
    #[error("{0}")]
    Identity(#[from] crate::identity::IdentityError),
    #[error("the sign-in service at {0} could not be reached; try again in a moment")]
    Unreachable(String),
    #[error("your PDS's sign-in service is not one this relay can use: {0}")]
    BadServer(String),
    #[error("the sign-in was cancelled or refused at your PDS ({0})")]
    Denied(String),
    #[error("this sign-in link has expired or was already used; start again")]
    UnknownState,
    #[error("the answer did not come from the sign-in service that was asked (iss)")]
    WrongIssuer,
    #[error("the account that signed in ({got}) is not the one you typed ({expected})")]
    WrongAccount { expected: String, got: String },
    #[error(
        "the permission granted ({0:?}) does not include what the relay needs (atproto and writing attestations)"
    )]
    Scope(String),
    #[error("your PDS refused: {0}")]
    Refused(String),
    #[error("the session has ended; sign in again")]
    SessionEnded,
}
