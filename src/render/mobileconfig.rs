//! TEMPORARY stand-in until the helper branch merges.
use crate::{address::EmailAddress, model::Provider, render::Document};
pub fn render(_p: &Provider, _a: &EmailAddress) -> Document { Document::xml(vec![]) }
