//! DKIM: key pairs per sending domain and for the operator domain, and the signer that adds the
//! four signatures (member RSA + Ed25519, operator RSA + Ed25519) at acceptance.

pub mod keys;
pub mod signer;
