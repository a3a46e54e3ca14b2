//! TEMPORARY stand-in until the helper branch merges.
use crate::{address::EmailAddress, model::Provider, render::Document};
pub fn render(_p: &Provider, _a: Option<&EmailAddress>) -> Document { Document::xml(b"<clientConfig/>".to_vec()) }
