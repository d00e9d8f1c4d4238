//! What the preview proxy passes on, in both directions: connection-only (hop-by-hop)
//! headers stay behind, the dev server learns the original host and scheme, CodeFlux's own
//! preview cookie never reaches the app while the app's cookies do.

mod support;

use std::sync::Arc;

use async_trait::async_trait;
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::routing::get;
use codeflux::auth::Auth;
use codeflux::preview::{PreviewOptions, PreviewTargets, Wake};
use codeflux::sandbox::PreviewUpstream;
use serde_json::Value;
use uuid::Uuid;

const TOKEN: &str = "a-long-enough-preview-token";

/// A dev server that answers with the headers it received, and sends some of its own.
async fn echo_dev_server() -> u16 {
    let app = axum::Router::new().route(
        "/",
        get(|headers: HeaderMap| async move {
            let seen: serde_json::Map<String, Value> = headers
                .iter()
                .map(|(name, value)| {
                    (
                        name.to_string(),
                        Value::from(value.to_str().unwrap_or_default()),
                    )
                })
                .collect();
            (
                [
                    ("connection", "x-secret-hop"),
                    ("x-secret-hop", "for this connection only"),
                    ("keep-alive", "timeout=5"),
                    ("set-cookie", "app_session=1; Path=/"),
                ],
                axum::Json(Value::Object(seen)),
            )
                .into_response()
        }),
    );
    support::serve_on_loopback(app).await
}

struct Echo(u16);

#[async_trait]
impl PreviewTargets for Echo {
    async fn upstream(&self, _project: Uuid) -> Result<Option<PreviewUpstream>, String> {
        Ok(Some(PreviewUpstream {
            base_url: format!("http://127.0.0.1:{}", self.0),
            headers: Vec::new(),
        }))
    }

    async fn wake(&self, _project: Uuid) -> Wake {
        Wake::Starting
    }
}

async fn proxy(auth: Auth) -> u16 {
    let router = codeflux::preview::router(
        Arc::new(Echo(echo_dev_server().await)),
        PreviewOptions {
            auth,
            ..PreviewOptions::default()
        },
    )
    .unwrap();
    support::serve_on_loopback(router).await
}

#[tokio::test]
async fn hop_by_hop_headers_stay_behind_and_the_dev_server_learns_who_asked() {
    let auth = Auth::new(Some(TOKEN.into())).unwrap();
    let port = proxy(auth.clone()).await;
    let project = Uuid::now_v7();
    let host = format!("{project}.localhost:{port}");
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    // Signing in behind TLS: the preview cookie must then be `SameSite=None; Secure` to
    // be sent inside the UI's frame.
    let link = auth.preview_link_query(project);
    let granted = http
        .get(format!("http://127.0.0.1:{port}/__codeflux/auth?{link}"))
        .header("host", &host)
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .unwrap();
    assert_eq!(granted.status(), 303);
    let cookie = granted.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        cookie.contains("SameSite=None")
            && cookie.contains("Secure")
            && cookie.contains("HttpOnly"),
        "{cookie}"
    );
    let session = cookie.split(';').next().unwrap().to_string();

    let answer = http
        .get(format!("http://127.0.0.1:{port}/"))
        .header("host", &host)
        .header("x-forwarded-proto", "https")
        .header("connection", "x-client-hop")
        .header("x-client-hop", "for this connection only")
        .header("proxy-authorization", "Basic c2VjcmV0")
        .header("cookie", format!("theme=dark; {session}"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let headers = answer.headers().clone();
    let seen: Value = answer.json().await.unwrap();
    assert_eq!(seen["x-forwarded-host"], host.as_str());
    assert_eq!(seen["x-forwarded-proto"], "https");
    for dropped in ["x-client-hop", "proxy-authorization"] {
        assert!(
            seen.get(dropped).is_none(),
            "{dropped} reached the dev server: {seen}"
        );
    }
    assert_eq!(
        seen["cookie"], "theme=dark",
        "the app's cookie goes, CodeFlux's stays"
    );
    for dropped in ["x-secret-hop", "keep-alive"] {
        assert!(
            !headers.contains_key(dropped),
            "{dropped} reached the browser"
        );
    }
    assert_eq!(headers["set-cookie"], "app_session=1; Path=/");

    // Without a TLS proxy in front, the scheme is plain http.
    let plain: Value = http
        .get(format!("http://127.0.0.1:{port}/"))
        .header("host", &host)
        .header("cookie", &session)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(plain["x-forwarded-proto"], "http");
    assert!(plain.get("cookie").is_none(), "{plain}");
}
