//! Signing in when a token is required: the gate in front of every route, and the sign-in
//! and sign-out pages. Without a token (loopback only) the gate lets everything through.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::extract::{FormOf, QueryOf};
use super::{AppError, AppState};
use crate::auth::{Auth, SESSION_COOKIE, behind_tls, cookie};
use crate::ui::{layout, login};

/// Lets a request through when no token is required, when it carries the token as a bearer
/// credential, or when it comes with a valid session cookie.
pub async fn require_login(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    let public = path == "/login" || path == "/healthz" || path.starts_with("/assets/");
    if !state.auth.enabled() || public {
        return next.run(request).await;
    }
    // A store that cannot be read lets no session in (the bearer token still works).
    let generation = state.store.session_generation().unwrap_or(u64::MAX);
    if is_signed_in(&state.auth, request.headers(), generation) {
        return next.run(request).await;
    }
    // git sends the token as the password of HTTP Basic (any user name).
    if path.starts_with("/git/") {
        if basic_password(request.headers()).is_some_and(|token| state.auth.is_token(&token)) {
            return next.run(request).await;
        }
        let mut response = (
            StatusCode::UNAUTHORIZED,
            "sign in with the CodeFlux token as the password (user name: anything)\n",
        )
            .into_response();
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"codeflux\""),
        );
        return response;
    }
    // Machines (API clients, Prometheus) get a 401 rather than the sign-in page.
    if path.starts_with("/api/") || path == "/metrics" {
        let mut response = AppError::Unauthorized.into_response();
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"codeflux\""),
        );
        return response;
    }
    let wanted = request
        .uri()
        .path_and_query()
        .map_or("/", |target| target.as_str());
    let login = format!("/login?next={}", urlencode(wanted));
    if request.headers().contains_key("hx-request") {
        // htmx follows this header instead of swapping the answer in.
        let mut response = StatusCode::UNAUTHORIZED.into_response();
        if let Ok(value) = HeaderValue::from_str(&login) {
            response.headers_mut().insert("hx-redirect", value);
        }
        return response;
    }
    Redirect::to(&login).into_response()
}

/// The password of an `Authorization: Basic` header.
fn basic_password(headers: &HeaderMap) -> Option<String> {
    use base64::Engine as _;
    let encoded = headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let pair = String::from_utf8(decoded).ok()?;
    Some(pair.split_once(':')?.1.to_string())
}

fn is_signed_in(auth: &Auth, headers: &HeaderMap, generation: u64) -> bool {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .is_some_and(|token| auth.is_token(token.trim()));
    bearer
        || headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .filter_map(|value| cookie(value, SESSION_COOKIE))
            .any(|session| auth.is_session(session, generation))
}

#[derive(Debug, Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct LoginForm {
    token: Option<String>,
    next: Option<String>,
}

pub async fn login_page(
    State(state): State<AppState>,
    QueryOf(query): QueryOf<LoginQuery>,
) -> Response {
    let next = local_target(query.next.as_deref());
    page(&state, StatusCode::OK, &next, None)
}

pub async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    FormOf(form): FormOf<LoginForm>,
) -> Response {
    let next = local_target(form.next.as_deref());
    if !state.auth.enabled() {
        return Redirect::to(&next).into_response();
    }
    if let Err(wait) = state.auth.sign_in_allowed() {
        let message = format!(
            "Too many wrong tokens: try again in {} s.",
            wait.as_secs().max(1)
        );
        return page(&state, StatusCode::TOO_MANY_REQUESTS, &next, Some(&message));
    }
    let right = state
        .auth
        .is_token(form.token.as_deref().unwrap_or_default());
    state.auth.sign_in_outcome(right);
    if !right {
        tracing::warn!("a sign-in with a wrong token was refused");
        return page(
            &state,
            StatusCode::UNAUTHORIZED,
            &next,
            Some("That is not the access token."),
        );
    }
    let cookie = format!(
        "{SESSION_COOKIE}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age=2592000{}",
        state
            .auth
            .new_session(match state.store.session_generation() {
                Ok(generation) => generation,
                Err(error) => return AppError::from(error).into_response(),
            }),
        if behind_tls(&headers) { "; Secure" } else { "" }
    );
    session_response(&next, &cookie)
}

/// Ends every session on the server (the token is the one identity), then clears the
/// browser's cookie.
pub async fn logout(State(state): State<AppState>) -> Response {
    if state.auth.enabled()
        && let Err(error) = state.store.end_sessions().await
    {
        return AppError::from(error).into_response();
    }
    session_response(
        "/login",
        &format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    )
}

fn session_response(location: &str, cookie: &str) -> Response {
    let mut response = Redirect::to(location).into_response();
    if let Ok(value) = HeaderValue::from_str(cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

fn page(state: &AppState, status: StatusCode, next: &str, error: Option<&str>) -> Response {
    (
        status,
        layout::page("Sign in", &state.setup, login::login_form(next, error)),
    )
        .into_response()
}

/// Only paths on this server: never an open redirect to another site. Browsers drop tabs
/// and newlines from URLs and read `\` as `/`, so `/\t/evil.example` would end at
/// `//evil.example`: such targets are refused, and what is left must resolve to this origin.
fn local_target(next: Option<&str>) -> String {
    const BASE: &str = "http://codeflux.invalid";
    let Some(path) = next else {
        return "/".to_string();
    };
    let plain = path.starts_with('/')
        && !path.starts_with("//")
        && !path.chars().any(|c| c.is_control() || c == '\\');
    let same_origin = reqwest::Url::parse(BASE)
        .and_then(|base| base.join(path))
        .is_ok_and(|url| url.origin().ascii_serialization() == BASE);
    if plain && same_origin {
        path.to_string()
    } else {
        "/".to_string()
    }
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                (byte as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::local_target;

    #[test]
    fn sign_in_sends_people_only_to_this_server() {
        for good in ["/", "/projects/1?tab=code", "/a//b"] {
            assert_eq!(local_target(Some(good)), good);
        }
        for bad in [
            "//evil.example",
            "/\t/evil.example",
            "/\n/evil.example",
            "/\\evil.example",
            "\\\\evil.example",
            "https://evil.example",
            "evil.example",
            "/\u{7f}/evil.example",
        ] {
            assert_eq!(local_target(Some(bad)), "/", "{bad:?}");
        }
        assert_eq!(local_target(None), "/");
    }
}
