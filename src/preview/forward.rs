//! Forwards one request to a dev server: plain HTTP through reqwest with streamed bodies,
//! and WebSocket upgrades (Next.js hot reload) by splicing the two upgraded connections.

use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::Response;
use futures::TryStreamExt;
use hyper_util::rt::TokioIo;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};

use crate::sandbox::PreviewUpstream;

#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("cannot connect to the dev server: {0}")]
    Connect(String),
    #[error("the dev server failed: {0}")]
    Upstream(String),
    #[error("TLS: {0}")]
    Tls(String),
}

/// Headers that belong to one connection and must not be passed on.
const HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

#[derive(Clone)]
pub struct Forwarder {
    http: reqwest::Client,
    /// For WebSocket upgrades to `https` dev servers (E2B): the system's roots plus any
    /// extra CA configured for previews.
    tls: tokio_rustls::TlsConnector,
}

impl Forwarder {
    /// `extra_ca` is a PEM bundle trusted besides the system's roots (a self-hosted E2B).
    pub fn new(extra_ca: Option<&[u8]>) -> Result<Self, ForwardError> {
        let extra: Vec<CertificateDer<'static>> = match extra_ca {
            Some(pem) => CertificateDer::pem_slice_iter(pem)
                .collect::<Result<_, _>>()
                .map_err(|error| ForwardError::Tls(format!("unreadable CA bundle: {error}")))?,
            None => Vec::new(),
        };
        let mut http = reqwest::Client::builder()
            // Dev servers sit on private addresses: never send them through an HTTP proxy.
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(5));
        for certificate in &extra {
            let certificate = reqwest::Certificate::from_der(certificate)
                .map_err(|error| ForwardError::Tls(error.to_string()))?;
            http = http.add_root_certificate(certificate);
        }
        let http = http
            .build()
            .map_err(|error| ForwardError::Tls(error.to_string()))?;
        let mut roots = tokio_rustls::rustls::RootCertStore::empty();
        roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        roots.add_parsable_certificates(extra);
        let config = tokio_rustls::rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self {
            http,
            tls: tokio_rustls::TlsConnector::from(std::sync::Arc::new(config)),
        })
    }

    pub async fn forward(
        &self,
        upstream: &PreviewUpstream,
        request: Request,
    ) -> Result<Response, ForwardError> {
        if request.headers().contains_key(header::UPGRADE) {
            return self.upgrade(upstream, request).await;
        }
        let path = request
            .uri()
            .path_and_query()
            .map_or("/", |path| path.as_str())
            .to_string();
        let url = format!("{}{path}", upstream.base_url.trim_end_matches('/'));
        let (parts, body) = request.into_parts();
        let mut headers = parts.headers.clone();
        strip_hop_by_hop(&mut headers);
        forwarded_headers(&mut headers, &parts.headers);
        headers.remove(header::HOST);
        upstream_headers(&mut headers, upstream);
        let response = self
            .http
            .request(parts.method, url)
            .headers(headers)
            .body(reqwest::Body::wrap_stream(body.into_data_stream()))
            .send()
            .await
            .map_err(|error| {
                if is_tls_failure(&error) {
                    ForwardError::Tls(describe(&error))
                } else if error.is_connect() {
                    ForwardError::Connect(error.to_string())
                } else {
                    ForwardError::Upstream(error.to_string())
                }
            })?;
        let mut builder = Response::builder().status(response.status());
        if let Some(headers) = builder.headers_mut() {
            headers.extend(response.headers().clone());
            strip_hop_by_hop(headers);
        }
        let stream = response.bytes_stream().map_err(std::io::Error::other);
        builder
            .body(Body::from_stream(stream))
            .map_err(|error| ForwardError::Upstream(error.to_string()))
    }

    /// Passes a WebSocket (or other) upgrade through: the handshake goes upstream as is
    /// (over TLS for `https` dev servers), and after `101 Switching Protocols` the two
    /// connections are joined byte for byte.
    async fn upgrade(
        &self,
        upstream: &PreviewUpstream,
        mut request: Request,
    ) -> Result<Response, ForwardError> {
        let base = reqwest::Url::parse(&upstream.base_url)
            .map_err(|error| ForwardError::Upstream(error.to_string()))?;
        let host = base.host_str().unwrap_or_default().to_string();
        let port = base.port_or_known_default().unwrap_or(80);
        let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|error| ForwardError::Connect(error.to_string()))?;
        let stream: Box<dyn Connection> = match base.scheme() {
            "http" => Box::new(tcp),
            "https" => {
                let name = ServerName::try_from(host.clone())
                    .map_err(|error| ForwardError::Tls(error.to_string()))?;
                Box::new(
                    self.tls
                        .connect(name, tcp)
                        .await
                        .map_err(|error| ForwardError::Tls(error.to_string()))?,
                )
            }
            other => {
                return Err(ForwardError::Upstream(format!(
                    "unsupported dev server scheme {other}"
                )));
            }
        };
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|error| ForwardError::Connect(error.to_string()))?;
        tokio::spawn(async move {
            if let Err(error) = connection.with_upgrades().await {
                tracing::debug!(%error, "upstream upgrade connection ended");
            }
        });

        let path = request
            .uri()
            .path_and_query()
            .map_or("/", |path| path.as_str())
            .to_string();
        let mut outbound = hyper::Request::builder()
            .method(request.method().clone())
            .uri(path);
        if let Some(headers) = outbound.headers_mut() {
            headers.extend(request.headers().clone());
            let authority = match base.port() {
                Some(port) => format!("{host}:{port}"),
                None => host.clone(),
            };
            headers.insert(
                header::HOST,
                HeaderValue::from_str(&authority)
                    .map_err(|error| ForwardError::Upstream(error.to_string()))?,
            );
            upstream_headers(headers, upstream);
        }
        let outbound = outbound
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .map_err(|error| ForwardError::Upstream(error.to_string()))?;
        let mut answer = sender
            .send_request(outbound)
            .await
            .map_err(|error| ForwardError::Upstream(error.to_string()))?;

        let mut response = Response::builder().status(answer.status());
        if let Some(headers) = response.headers_mut() {
            headers.extend(answer.headers().clone());
        }
        if answer.status() != StatusCode::SWITCHING_PROTOCOLS {
            return response
                .body(Body::empty())
                .map_err(|error| ForwardError::Upstream(error.to_string()));
        }
        let client_side = hyper::upgrade::on(&mut request);
        let upstream_side = hyper::upgrade::on(&mut answer);
        tokio::spawn(async move {
            match futures::future::try_join(client_side, upstream_side).await {
                Ok((client, upstream)) => {
                    let (mut client, mut upstream) = (TokioIo::new(client), TokioIo::new(upstream));
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                }
                Err(error) => tracing::debug!(%error, "upgrade did not complete"),
            }
        });
        response
            .body(Body::empty())
            .map_err(|error| ForwardError::Upstream(error.to_string()))
    }
}

/// A refused certificate is not a dev server still starting: it must be shown, not waited on.
fn is_tls_failure(error: &reqwest::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = source {
        if current.is::<tokio_rustls::rustls::Error>() {
            return true;
        }
        // An `io::Error` wrapping another error hides it from `source()`: look inside.
        source = match current.downcast_ref::<std::io::Error>() {
            Some(io) => match io.get_ref() {
                Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
                None => current.source(),
            },
            None => current.source(),
        };
    }
    false
}

/// An error with its causes, for the page that shows it.
fn describe(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// A connection to a dev server, plain or TLS.
trait Connection: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Connection for T {}

/// Headers the upstream needs on every request (E2B's traffic token, for one).
fn upstream_headers(headers: &mut HeaderMap, upstream: &PreviewUpstream) {
    for (name, value) in &upstream.headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::try_from(name.as_str()),
            HeaderValue::from_str(value),
        ) {
            headers.insert(name, value);
        }
    }
}

/// Removes the headers that belong to one connection: the fixed list, and every header
/// that `Connection` names (RFC 9110 §7.6.1).
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|name| HeaderName::try_from(name.trim()).ok())
        .collect();
    for name in HOP_BY_HOP.iter().chain(&named) {
        headers.remove(name);
    }
    headers.remove("proxy-connection");
}

/// Tells the dev server who really asked, as reverse proxies do.
fn forwarded_headers(headers: &mut HeaderMap, original: &HeaderMap) {
    if let Some(host) = original.get(header::HOST) {
        headers.insert(HeaderName::from_static("x-forwarded-host"), host.clone());
    }
    // Behind a TLS-terminating proxy (which says so), the app was opened over https.
    let proto = if crate::auth::behind_tls(original) {
        "https"
    } else {
        "http"
    };
    headers.insert(
        HeaderName::from_static("x-forwarded-proto"),
        HeaderValue::from_static(proto),
    );
}
