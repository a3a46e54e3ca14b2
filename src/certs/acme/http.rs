//! The HTTP client the ACME layer talks to the CA with: instant-acme's own
//! hyper + rustls client, built the same way (HTTPS only, HTTP/1.1 and 2,
//! the platform's roots or the configured `acme.ca_file`), wrapped so that
//! every answer's status class is counted in
//! `mailconfd_acme_http_requests_total`: rate limits and badNonce storms
//! become visible before they become outages.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use http::Request;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use instant_acme::{BodyWrapper, BytesResponse, Error, HttpClient};
use rustls_pki_types::pem::PemObject as _;

use crate::metrics::{Metrics, StatusClass, StatusLabels};

type Inner = HyperClient<hyper_rustls::HttpsConnector<HttpConnector>, BodyWrapper<Bytes>>;

pub(super) struct CountingClient {
    inner: Inner,
    metrics: Option<Arc<Metrics>>,
    retry_after: Arc<RetryAfter>,
}

/// The CA's latest `Retry-After` (RFC 9110 §10.2.3) on a 429 or 503:
/// instant-acme drops an error response's headers, so the client keeps it
/// for the issuer to honour when the order fails with rateLimited.
#[derive(Debug, Default)]
pub(super) struct RetryAfter(std::sync::Mutex<Option<(i64, i64)>>);

impl RetryAfter {
    fn record(&self, until: i64, now: i64) {
        *self.0.lock().expect("never poisoned: no panics while held") = Some((now, until));
    }

    /// Seconds still to wait from a header seen within the last minute.
    pub(super) fn take_recent(&self, now: i64) -> Option<u64> {
        let seen = self
            .0
            .lock()
            .expect("never poisoned: no panics while held")
            .take();
        let (_, until) = seen.filter(|(at, _)| now - at <= 60)?;
        Some(until.saturating_sub(now).max(0) as u64)
    }
}

/// `Retry-After: 120` or `Retry-After: Wed, 21 Oct 2015 07:28:00 GMT`, as
/// the unix time it names.
pub(super) fn parse_retry_after(value: &str, now: i64) -> Option<i64> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u32>() {
        return Some(now + i64::from(secs));
    }
    let rfc2822 = value.replace(" GMT", " +0000");
    time::OffsetDateTime::parse(&rfc2822, &time::format_description::well_known::Rfc2822)
        .ok()
        .map(time::OffsetDateTime::unix_timestamp)
}

impl CountingClient {
    /// # Errors
    /// The extra root cannot be read, or the platform's verifier cannot start.
    pub(super) fn new(
        ca_file: Option<&Path>,
        metrics: Option<Arc<Metrics>>,
        retry_after: Arc<RetryAfter>,
    ) -> Result<CountingClient, String> {
        let builder = hyper_rustls::HttpsConnectorBuilder::new();
        let builder = match ca_file {
            Some(path) => {
                let root = rustls_pki_types::CertificateDer::from_pem_file(path)
                    .map_err(|e| format!("acme.ca_file {}: {e}", path.display()))?;
                let mut roots = rustls::RootCertStore::empty();
                roots
                    .add(root)
                    .map_err(|e| format!("acme.ca_file {}: {e}", path.display()))?;
                let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
                builder.with_tls_config(
                    rustls::ClientConfig::builder_with_provider(provider)
                        .with_safe_default_protocol_versions()
                        .map_err(|e| e.to_string())?
                        .with_root_certificates(roots)
                        .with_no_client_auth(),
                )
            }
            None => builder
                .try_with_platform_verifier()
                .map_err(|e| format!("the platform's certificate verifier: {e}"))?,
        };
        let inner = HyperClient::builder(TokioExecutor::new())
            .build(builder.https_only().enable_http1().enable_http2().build());
        Ok(CountingClient {
            inner,
            metrics,
            retry_after,
        })
    }
}

impl HttpClient for CountingClient {
    fn request(
        &self,
        req: Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, Error>> + Send>> {
        let answer = HttpClient::request(&self.inner, req);
        let metrics = self.metrics.clone();
        let retry_after = self.retry_after.clone();
        Box::pin(async move {
            let answer = answer.await;
            if let Ok(rsp) = &answer
                && matches!(rsp.parts.status.as_u16(), 429 | 503)
                && let Some(value) = rsp.parts.headers.get(http::header::RETRY_AFTER)
            {
                let now = crate::certs::unix_now();
                if let Some(until) = value.to_str().ok().and_then(|v| parse_retry_after(v, now)) {
                    retry_after.record(until, now);
                }
            }
            if let (Some(m), Ok(rsp)) = (&metrics, &answer) {
                m.acme_http_requests
                    .get_or_create(&StatusLabels {
                        status: StatusClass::of(rsp.parts.status.as_u16()),
                    })
                    .inc();
            }
            answer
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        assert_eq!(parse_retry_after("120", 1_000), Some(1_120));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", 0),
            Some(1_445_412_480)
        );
        assert_eq!(parse_retry_after("soon", 0), None);
        let r = RetryAfter::default();
        r.record(1_600, 1_000);
        assert_eq!(r.take_recent(1_010), Some(590));
        assert_eq!(r.take_recent(1_010), None, "taken once");
        r.record(1_600, 1_000);
        assert_eq!(
            r.take_recent(1_100),
            None,
            "too old to belong to this order"
        );
    }
}
