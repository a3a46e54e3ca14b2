//! TLS-side uses of the certificate and key we serve: signing profiles with them.
pub mod sign;
