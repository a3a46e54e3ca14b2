//! TEMPORARY stand-in until the helper branch merges.
use crate::{model::MtaSts, render::Document};
pub fn render(_p: &MtaSts) -> Document { Document::text(vec![]) }
