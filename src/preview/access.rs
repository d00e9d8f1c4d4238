//! Who may see a preview when CodeFlux requires a token. A preview host is an origin of its
//! own, so the UI's session cookie never reaches it: the UI hands out a signed link
//! (`/__codeflux/auth?grant=…`), and opening it sets a cookie for that preview host only.

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use uuid::Uuid;

use super::pages;
use crate::auth::{Auth, PREVIEW_AUTH_PATH, PREVIEW_COOKIE, behind_tls, cookie};

/// `None` lets the request through; otherwise the answer to send instead.
pub fn check(auth: &Auth, project_id: Uuid, request: &Request) -> Option<Response> {
    if !auth.enabled() {
        return None;
    }
    let signed_in = request
        .headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .filter_map(|value| cookie(value, PREVIEW_COOKIE))
        .any(|value| auth.is_preview_session(project_id, value));
    if request.uri().path() == PREVIEW_AUTH_PATH {
        let grant = query_value(request, "grant").unwrap_or_default();
        if auth.redeem_preview_link(project_id, &grant) {
            return Some(grant_session(auth, project_id, request));
        }
        // A frame reloading its old link, in a browser that already has the session.
        if signed_in {
            return Some(Redirect::to("/").into_response());
        }
        return Some(pages::sign_in_needed());
    }
    (!signed_in).then(pages::sign_in_needed)
}

/// Removes CodeFlux's preview cookie from what goes on to the dev server, keeping the
/// app's own cookies.
pub fn strip_session(headers: &mut HeaderMap) {
    let kept: Vec<String> = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .map(str::trim)
        .filter(|pair| !pair.is_empty())
        .filter(|pair| pair.split_once('=').map_or(*pair, |(name, _)| name) != PREVIEW_COOKIE)
        .map(str::to_string)
        .collect();
    headers.remove(header::COOKIE);
    if !kept.is_empty()
        && let Ok(value) = HeaderValue::from_str(&kept.join("; "))
    {
        headers.insert(header::COOKIE, value);
    }
}

/// Sets the preview host's cookie and sends the browser on to the app's front page.
fn grant_session(auth: &Auth, project_id: Uuid, request: &Request) -> Response {
    // Inside the UI's frame the preview is a third party: over TLS the cookie must be
    // `SameSite=None; Secure` to be sent there; on plain HTTP, `Lax` works when the UI and
    // the previews share a site (e.g. codeflux.lan and *.preview.codeflux.lan).
    let attributes = if behind_tls(request.headers()) {
        "SameSite=None; Secure"
    } else {
        "SameSite=Lax"
    };
    let cookie = format!(
        "{PREVIEW_COOKIE}={}; Path=/; HttpOnly; {attributes}; Max-Age=43200",
        auth.new_preview_session(project_id)
    );
    let mut response = Redirect::to("/").into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

fn query_value(request: &Request, name: &str) -> Option<String> {
    request.uri().query()?.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key == name).then(|| value.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_preview_cookie_stays_with_codeflux() {
        let mut headers = HeaderMap::new();
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("theme=dark; codeflux_preview=1.ab"),
        );
        headers.append(header::COOKIE, HeaderValue::from_static("cart=3"));
        strip_session(&mut headers);
        assert_eq!(headers.get_all(header::COOKIE).iter().count(), 1);
        assert_eq!(headers[header::COOKIE], "theme=dark; cart=3");
        let mut only_ours = HeaderMap::new();
        only_ours.insert(
            header::COOKIE,
            HeaderValue::from_static("codeflux_preview=1.ab"),
        );
        strip_session(&mut only_ours);
        assert!(!only_ours.contains_key(header::COOKIE));
    }
}
