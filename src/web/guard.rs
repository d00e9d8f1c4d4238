//! The first layer every UI and API request meets: only this server's names (DNS
//! rebinding), only its own origins for writes and WebSockets (cross-site requests), and
//! headers that keep other sites from framing or reading the UI.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppError;
use crate::hosts::UiHosts;

/// What the guard checks requests against.
#[derive(Debug, Clone)]
pub struct Guard {
    pub hosts: UiHosts,
    /// The `Content-Security-Policy` of every answer.
    content_security_policy: HeaderValue,
}

impl Guard {
    /// `preview_url_template` is `CODEFLUX_PREVIEW_URL`: the one other origin the UI frames.
    pub fn new(hosts: UiHosts, preview_url_template: &str) -> Self {
        Self {
            hosts,
            content_security_policy: content_security_policy(preview_url_template),
        }
    }
}

/// Scripts only from this server (htmx, app.js); frames only from previews; never framed.
/// Inline `style` attributes remain: the highlighted code and the progress bar use them.
fn content_security_policy(preview_url_template: &str) -> HeaderValue {
    let previews = preview_frame_source(preview_url_template);
    let policy = format!(
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; connect-src 'self'; frame-src {previews}; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'"
    );
    HeaderValue::from_str(&policy)
        .unwrap_or_else(|_| HeaderValue::from_static("frame-ancestors 'none'"))
}

/// `http://{project}.localhost:3001` → `http://*.localhost:3001`.
fn preview_frame_source(template: &str) -> String {
    let wildcard = template.replace("{project}", "wildcard-label");
    match reqwest::Url::parse(&wildcard) {
        Ok(url) => url
            .origin()
            .ascii_serialization()
            .replace("wildcard-label", "*"),
        Err(_) => "'none'".to_string(),
    }
}

pub async fn check(State(guard): State<Arc<Guard>>, request: Request, next: Next) -> Response {
    let authority = crate::hosts::request_authority(&request);
    if !guard.hosts.allows(&authority) {
        tracing::warn!(host = %authority, "refused a request for a host this server is not");
        return (
            StatusCode::MISDIRECTED_REQUEST,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            guard.hosts.refusal(&authority),
        )
            .into_response();
    }
    let writes = !matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    if (writes || is_websocket(request.headers()))
        && let Some(refusal) = cross_site(&guard.hosts, request.headers(), &authority)
    {
        return AppError::Forbidden(refusal).into_response();
    }
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        guard.content_security_policy.clone(),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// A browser marks requests from other sites with `Sec-Fetch-Site` and `Origin`; clients
/// that are not browsers send neither and are let through (the token guards them).
fn cross_site(hosts: &UiHosts, headers: &HeaderMap, authority: &str) -> Option<&'static str> {
    let site = headers
        .get("sec-fetch-site")
        .and_then(|value| value.to_str().ok());
    if matches!(site, Some("cross-site" | "same-site")) {
        return Some("cross-site request refused");
    }
    let origin = headers.get(header::ORIGIN)?;
    let allowed = origin
        .to_str()
        .is_ok_and(|origin| hosts.allows_origin(origin, authority));
    (!allowed).then_some("request from another origin refused")
}

fn is_websocket(headers: &HeaderMap) -> bool {
    headers
        .get(header::UPGRADE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.eq_ignore_ascii_case("websocket"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn previews_are_the_only_frames() {
        assert_eq!(
            preview_frame_source("http://{project}.localhost:3001"),
            "http://*.localhost:3001"
        );
        assert_eq!(
            preview_frame_source("https://{project}.preview.codeflux.example.com"),
            "https://*.preview.codeflux.example.com"
        );
        let policy = content_security_policy("http://{project}.localhost:3001");
        let policy = policy.to_str().unwrap();
        assert!(policy.contains("frame-ancestors 'none'"));
        assert!(policy.contains("script-src 'self';"));
        assert!(policy.contains("frame-src http://*.localhost:3001;"));
    }
}
