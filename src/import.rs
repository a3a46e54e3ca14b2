//! TEMPORARY stand-in until the helper branch merges.
pub const MAX_INPUT_BYTES: usize = 1 << 20;
pub fn import(_x: &[u8]) -> Result<String, String> { Err("x".into()) }
