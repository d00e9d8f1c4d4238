//! Forwards one request to a dev server: plain HTTP through reqwest with streamed bodies,
//! and WebSocket upgrades (Next.js hot reload) by splicing the two upgraded connections.

use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::Response;
use futures::TryStreamExt;
use hyper_util::rt::TokioIo;

use crate::sandbox::PreviewUpstream;

#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("cannot connect to the dev server: {0}")]
    Connect(String),
    #[error("the dev server failed: {0}")]
    Upstream(String),
    #[error("{0}")]
    Unsupported(&'static str),
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
}

impl Forwarder {
    pub fn new() -> Self {
        let http = reqwest::Client::builder()
            // Dev servers sit on private addresses: never send them through an HTTP proxy.
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(5))
            .build()
            .expect("a plain HTTP client can always be built");
        Self { http }
    }

    pub async fn forward(
        &self,
        upstream: &PreviewUpstream,
        request: Request,
    ) -> Result<Response, ForwardError> {
        if request.headers().contains_key(header::UPGRADE) {
            return upgrade(upstream, request).await;
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
        for (name, value) in &upstream.headers {
            if let (Ok(name), Ok(value)) = (
                HeaderName::try_from(name.as_str()),
                HeaderValue::from_str(value),
            ) {
                headers.insert(name, value);
            }
        }
        let response = self
            .http
            .request(parts.method, url)
            .headers(headers)
            .body(reqwest::Body::wrap_stream(body.into_data_stream()))
            .send()
            .await
            .map_err(|error| {
                if error.is_connect() {
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
}

/// Passes a WebSocket (or other) upgrade through: the handshake goes upstream as is, and
/// after `101 Switching Protocols` the two connections are joined byte for byte.
async fn upgrade(
    upstream: &PreviewUpstream,
    mut request: Request,
) -> Result<Response, ForwardError> {
    let base = reqwest::Url::parse(&upstream.base_url)
        .map_err(|error| ForwardError::Upstream(error.to_string()))?;
    if base.scheme() != "http" {
        return Err(ForwardError::Unsupported(
            "live reload through the preview proxy needs a plain-HTTP dev server; reload the page to see changes",
        ));
    }
    let host = base.host_str().unwrap_or_default().to_string();
    let port = base.port_or_known_default().unwrap_or(80);
    let stream = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|error| ForwardError::Connect(error.to_string()))?;
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
        headers.insert(
            header::HOST,
            HeaderValue::from_str(&format!("{host}:{port}"))
                .map_err(|error| ForwardError::Upstream(error.to_string()))?,
        );
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

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
}

/// Tells the dev server who really asked, as reverse proxies do.
fn forwarded_headers(headers: &mut HeaderMap, original: &HeaderMap) {
    if let Some(host) = original.get(header::HOST) {
        headers.insert(HeaderName::from_static("x-forwarded-host"), host.clone());
    }
    headers.insert(
        HeaderName::from_static("x-forwarded-proto"),
        HeaderValue::from_static("http"),
    );
}
