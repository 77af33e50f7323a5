//! DKIM: key pairs per sending domain and for the operator domain, and the signer that adds the
//! four signatures (member RSA + Ed25519, operator RSA + Ed25519) at acceptance, and the check
//! that a message coming back in a report was signed by the relay.

pub mod keys;
pub mod pool;
pub mod rollover;
pub mod signer;
pub mod verify;
