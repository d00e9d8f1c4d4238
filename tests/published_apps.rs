//! Published apps on the preview listener, against a stand-in app server: served by name as
//! they are (no picker, no CodeFlux cookie), public by default even with a token, private
//! ones only after the CodeFlux sign-in, unknown names 404, and a request that meets a
//! container that stopped answering is sent again once the app has been looked at.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use axum::http::HeaderMap;
use codeflux::auth::Auth;
use codeflux::preview::{AppTarget, PreviewOptions, PreviewTargets, PublishedApps, Wake};
use codeflux::sandbox::PreviewUpstream;
use uuid::Uuid;

const TOKEN: &str = "a-long-enough-preview-token";

/// A production server: a page, and the cookies it was sent.
async fn app_server() -> u16 {
    let app = axum::Router::new().route(
        "/",
        axum::routing::get(|headers: HeaderMap| async move {
            let cookies = headers
                .get("cookie")
                .and_then(|value| value.to_str().ok())
                .unwrap_or_default()
                .to_string();
            (
                [("content-type", "text/html")],
                format!("<html><body><h1>The shop</h1><p>cookies: {cookies}</p></body></html>"),
            )
        }),
    );
    support::serve_on_loopback(app).await
}

struct Apps {
    project_id: Uuid,
    port: u16,
    /// The port that answers nothing, given once before the real one (a restarted app).
    dead_port: u16,
    unreachable: AtomicUsize,
}

#[async_trait]
impl PublishedApps for Apps {
    fn app_name(&self, authority: &str) -> Option<String> {
        codeflux::hosts::AppsUrl::new("http://{app}.apps.localhost")
            .unwrap()
            .app(authority)
    }

    async fn target(&self, name: &str) -> AppTarget {
        let port = if name == "restarted" && self.unreachable.load(Ordering::SeqCst) == 0 {
            self.dead_port
        } else {
            self.port
        };
        match name {
            "shop" | "vault" | "restarted" => AppTarget::Serving {
                project_id: self.project_id,
                private: name == "vault",
                base_url: format!("http://127.0.0.1:{port}"),
            },
            "stopped" => AppTarget::Unavailable("This app is not running right now.".into()),
            _ => AppTarget::Unknown,
        }
    }

    async fn unreachable(&self, _name: &str, _base_url: &str) {
        self.unreachable.fetch_add(1, Ordering::SeqCst);
    }
}

/// Previews are not what these tests are about: every project's dev server is gone.
struct NoPreviews;

#[async_trait]
impl PreviewTargets for NoPreviews {
    async fn upstream(&self, _project: Uuid) -> Result<Option<PreviewUpstream>, String> {
        Ok(None)
    }

    async fn wake(&self, _project: Uuid) -> Wake {
        Wake::UnknownProject
    }
}

async fn proxy(auth: Auth) -> (u16, Arc<Apps>) {
    let dead_port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let apps = Arc::new(Apps {
        project_id: Uuid::now_v7(),
        port: app_server().await,
        dead_port,
        unreachable: AtomicUsize::new(0),
    });
    let router = codeflux::preview::router(
        Arc::new(NoPreviews),
        PreviewOptions {
            auth,
            // With the UI's origins known, preview pages get the picker: apps must not.
            ui_origins: vec!["http://localhost:3000".into()],
            apps: Some(apps.clone()),
            ..PreviewOptions::default()
        },
    )
    .unwrap();
    (support::serve_on_loopback(router).await, apps)
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn fetch(port: u16, host: &str, cookie: Option<&str>) -> (u16, String) {
    let mut request = http()
        .get(format!("http://127.0.0.1:{port}/"))
        .header("host", host)
        .header("accept", "text/html");
    if let Some(cookie) = cookie {
        request = request.header("cookie", cookie);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

#[tokio::test]
async fn a_published_app_is_public_with_a_token_and_served_as_it_is() {
    let (port, _) = proxy(Auth::new(Some(TOKEN.into())).unwrap()).await;
    let (status, html) = fetch(port, "shop.apps.localhost", Some("theme=dark")).await;
    assert_eq!(status, 200, "{html}");
    assert!(
        html.contains("The shop") && html.contains("cookies: theme=dark"),
        "{html}"
    );
    assert!(
        !html.contains("__codeflux"),
        "no picker in a published app: {html}"
    );

    let (status, _) = fetch(port, "nothing-here.apps.localhost", None).await;
    assert_eq!(status, 404);
    let (status, html) = fetch(port, "stopped.apps.localhost", None).await;
    assert_eq!(status, 503, "{html}");
    assert!(html.contains("not running"), "{html}");
}

#[tokio::test]
async fn a_private_app_needs_the_codeflux_sign_in_and_never_sees_its_cookie() {
    let auth = Auth::new(Some(TOKEN.into())).unwrap();
    let (port, apps) = proxy(auth.clone()).await;
    let (status, html) = fetch(port, "vault.apps.localhost", None).await;
    assert_eq!(status, 401, "{html}");
    assert!(!html.contains("The shop"));

    // The signed link the project page hands out opens it once and leaves a cookie.
    let link = auth.preview_link_query(apps.project_id);
    let granted = http()
        .get(format!("http://127.0.0.1:{port}/__codeflux/auth?{link}"))
        .header("host", "vault.apps.localhost")
        .send()
        .await
        .unwrap();
    assert_eq!(granted.status(), 303);
    let session = granted.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let (status, html) = fetch(
        port,
        "vault.apps.localhost",
        Some(&format!("{session}; cart=3")),
    )
    .await;
    assert_eq!(status, 200, "{html}");
    assert!(
        html.contains("cookies: cart=3"),
        "the app's cookie only: {html}"
    );

    // Without a token there is no sign-in, and private apps open like public ones.
    let (open_port, _) = proxy(Auth::default()).await;
    assert_eq!(fetch(open_port, "vault.apps.localhost", None).await.0, 200);
}

#[tokio::test]
async fn a_request_that_meets_a_restarted_app_is_sent_again() {
    let (port, apps) = proxy(Auth::default()).await;
    let (status, html) = fetch(port, "restarted.apps.localhost", None).await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("The shop"));
    assert_eq!(apps.unreachable.load(Ordering::SeqCst), 1);
}
