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
}

impl CountingClient {
    /// # Errors
    /// The extra root cannot be read, or the platform's verifier cannot start.
    pub(super) fn new(
        ca_file: Option<&Path>,
        metrics: Option<Arc<Metrics>>,
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
        Ok(CountingClient { inner, metrics })
    }
}

impl HttpClient for CountingClient {
    fn request(
        &self,
        req: Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, Error>> + Send>> {
        let answer = HttpClient::request(&self.inner, req);
        let metrics = self.metrics.clone();
        Box::pin(async move {
            let answer = answer.await;
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
