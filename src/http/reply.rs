//! A reply before it becomes a hyper response: status, document, extra headers,
//! and what the request log may say about it.

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::Full;

use crate::address::EmailAddress;
use crate::metrics::Format;
use crate::render::Document;

#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub content_type: &'static str,
    pub body: Bytes,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// The mail domain the request was about, for the info-level log line.
    pub domain: Option<String>,
    /// The full address, for the debug-level log line only.
    pub address: Option<String>,
    /// Which route answered, for the request metrics: set by the router
    /// (`routes::route`), `other` for replies made before routing.
    pub format: Format,
}

impl Reply {
    pub fn ok(doc: Document) -> Reply {
        Reply::with_status(StatusCode::OK, doc)
    }

    pub fn with_status(status: StatusCode, doc: Document) -> Reply {
        let mut reply = Reply {
            status,
            content_type: doc.content_type,
            body: Bytes::from(doc.body),
            headers: Vec::new(),
            domain: None,
            address: None,
            format: Format::other,
        };
        if let Some(name) = doc.filename {
            // safe_filename restricted the name to [A-Za-z0-9._-]: no quoting issues.
            let value = format!("attachment; filename=\"{name}\"");
            reply = reply.header(header::CONTENT_DISPOSITION, &value);
        }
        reply
    }

    /// A short plain-text reason. Never echoes request data beyond what the
    /// caller put into `reason` (validated values only).
    pub fn error(status: StatusCode, reason: &str) -> Reply {
        let mut body = String::with_capacity(reason.len() + 1);
        body.push_str(reason);
        body.push('\n');
        Reply::with_status(status, Document::text(body.into_bytes())).no_store()
    }

    pub fn method_not_allowed(allow: &'static str) -> Reply {
        Reply::error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
            .header(header::ALLOW, allow)
    }

    /// `location` is built from a validated host name and the request's path,
    /// which hyper already restricted to URI characters.
    pub fn redirect(status: StatusCode, location: &str) -> Reply {
        Reply::error(status, "moved to https").header(header::LOCATION, location)
    }

    pub fn header(mut self, name: HeaderName, value: &str) -> Reply {
        match HeaderValue::from_str(value) {
            Ok(v) => self.headers.push((name, v)),
            // Unreachable with the values we build; refuse rather than emit a broken header.
            Err(_) => {
                self.status = StatusCode::BAD_REQUEST;
                self.body = Bytes::from_static(b"bad request\n");
            }
        }
        self
    }

    /// Tags the reply with the format it answers, for the request metrics.
    pub fn format(mut self, format: Format) -> Reply {
        self.format = format;
        self
    }

    pub fn no_store(self) -> Reply {
        self.header(header::CACHE_CONTROL, "no-store")
    }

    pub fn for_address(mut self, address: &EmailAddress) -> Reply {
        self.domain = Some(address.domain().to_owned());
        self.address = Some(address.to_string());
        self
    }

    pub fn into_response(self) -> Response<Full<Bytes>> {
        let len = self.body.len();
        let mut response = Response::new(Full::new(self.body));
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(self.content_type),
        );
        headers.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        // Explicit, so HEAD answers carry the length GET would have.
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        for (name, value) in self.headers {
            headers.insert(name, value);
        }
        response
    }
}
