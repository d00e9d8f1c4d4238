//! Published apps on the preview listener: `http://<name>.apps.localhost:<port>/` goes to
//! the app's production container as it is, with no picker, no source tags and no
//! CodeFlux session. Private apps need the CodeFlux sign-in, like previews.

use async_trait::async_trait;
use axum::body::Body;
use axum::extract::Request;
use axum::http::header::UPGRADE;
use axum::response::Response;
use uuid::Uuid;

use super::{Proxy, access, forward, pages};
use crate::sandbox::PreviewUpstream;

/// Largest request body a published app gets through the proxy (kept whole, so a request
/// that meets a restarting container can be sent again).
const MAX_APP_BODY: usize = 32 * 1024 * 1024;

/// Where a published app answers.
pub enum AppTarget {
    Serving {
        project_id: Uuid,
        private: bool,
        base_url: String,
    },
    /// No app has this name.
    Unknown,
    /// It exists but is not running (the reason is shown).
    Unavailable(String),
}

/// The published apps, as the preview listener asks for them.
#[async_trait]
pub trait PublishedApps: Send + Sync {
    /// The app a request's `Host` names, if it is an app address.
    fn app_name(&self, authority: &str) -> Option<String>;

    /// The app's container now; waits while a republish swaps it.
    async fn target(&self, name: &str) -> AppTarget;

    /// `base_url` did not take the connection: look again (the engine may have restarted
    /// the container after a crash).
    async fn unreachable(&self, name: &str, base_url: &str);
}

pub(super) async fn serve(proxy: &Proxy, name: &str, host: &str, request: Request) -> Response {
    let Some(apps) = &proxy.apps else {
        return pages::not_found(host);
    };
    let (parts, body) = request.into_parts();
    let upgrade = parts.headers.contains_key(UPGRADE);
    let body = if upgrade {
        None
    } else {
        match axum::body::to_bytes(body, MAX_APP_BODY).await {
            Ok(bytes) => Some(bytes),
            Err(_) => return pages::bad_gateway("the request body is too large"),
        }
    };
    let mut upgrade_body = upgrade.then(Body::empty);
    // A second attempt only after the first could not connect (nothing reached the app).
    for attempt in 0..2 {
        let (project_id, private, base_url) = match apps.target(name).await {
            AppTarget::Serving {
                project_id,
                private,
                base_url,
            } => (project_id, private, base_url),
            AppTarget::Unknown => return pages::not_found(host),
            AppTarget::Unavailable(reason) => return pages::unavailable(&reason),
        };
        let mut request = Request::from_parts(
            parts.clone(),
            match (&body, upgrade_body.take()) {
                (Some(bytes), _) => Body::from(bytes.clone()),
                (None, Some(original)) => original,
                (None, None) => Body::empty(),
            },
        );
        if private && let Some(refusal) = access::check(&proxy.auth, project_id, &request) {
            return refusal;
        }
        access::strip_session(request.headers_mut());
        let upstream = PreviewUpstream {
            base_url: base_url.clone(),
            headers: Vec::new(),
        };
        match proxy.forwarder.forward(&upstream, request).await {
            Ok(response) => return response,
            Err(forward::ForwardError::Connect(_)) if attempt == 0 && body.is_some() => {
                apps.unreachable(name, &base_url).await;
            }
            Err(error) => return pages::bad_gateway(&error.to_string()),
        }
    }
    pages::bad_gateway("the app does not take connections")
}
