//! TEMPORARY stand-in until the helper branch merges.
use crate::{address::EmailAddress, model::Provider, render::Document};
pub enum ResponseSchema { Outlook2006a, MobileSync2006, Other(String) }
pub enum ErrorCode { InvalidRequest }
pub struct PoxRequest { pub email: String, pub schema: ResponseSchema }
pub struct JsonAnswer { pub status: http::StatusCode, pub document: Document }
pub fn parse_request(_b: &[u8]) -> Result<PoxRequest, String> { Err("x".into()) }
pub fn render(_p: &Provider, _a: &EmailAddress, _s: &ResponseSchema) -> Document { Document::xml(vec![]) }
pub fn render_error(_c: ErrorCode, _t: &str) -> Document { Document::xml(vec![]) }
pub fn render_json(_p: &Provider, _a: &EmailAddress, _proto: &str) -> JsonAnswer { JsonAnswer { status: http::StatusCode::OK, document: Document::json(vec![]) } }
