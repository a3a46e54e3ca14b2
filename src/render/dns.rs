//! TEMPORARY stand-in until the helper branch merges.
use crate::model::Provider;
pub fn render(_p: &Provider, _d: &str, _n: Option<&str>) -> String { String::new() }
