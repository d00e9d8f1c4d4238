//! DNS rebinding and cross-site requests, against a real server with its preview listener:
//! a foreign `Host` is refused on both ports before any route runs (JSON, multipart,
//! WebSocket, hot-reload upgrade), with nothing stored and no sandbox woken; a foreign
//! `Origin` is refused for writes and WebSockets; the names a reverse proxy or a LAN uses
//! can be allowed.

mod support;

use std::sync::Arc;

use serde_json::{Value, json};
use support::fake_llm::FakeLlm;
use support::harness::Harness;
use support::host_sandbox::HostSandboxes;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

struct Server {
    harness: Harness,
    sandboxes: Arc<HostSandboxes>,
    port: u16,
    preview_port: u16,
}

async fn server(adjust: impl FnOnce(&mut codeflux::server::Settings)) -> Server {
    let sandboxes = HostSandboxes::new();
    let preview = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let preview_port = preview.local_addr().unwrap().port();
    let harness = Harness::start_with_provider(
        FakeLlm::start().await,
        sandboxes.clone(),
        preview,
        |settings| {
            settings.preview_url_template = format!("http://{{project}}.localhost:{preview_port}");
            adjust(settings);
        },
    )
    .await;
    let port = harness.base.rsplit(':').next().unwrap().parse().unwrap();
    Server {
        harness,
        sandboxes,
        port,
        preview_port,
    }
}

impl Server {
    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    async fn project_count(&self) -> usize {
        let (status, body) = self.harness.get("/api/projects").await;
        assert_eq!(status, 200, "{body}");
        body["projects"].as_array().unwrap().len()
    }

    fn sandboxes_created(&self) -> u32 {
        *self.sandboxes.created.lock().unwrap()
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> (u16, String) {
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.text().await.unwrap())
    }

    /// Creates a project as a browser at `host` whose page came from `origin` would.
    async fn create_from(&self, host: &str, origin: &str) -> (u16, String) {
        self.send(
            reqwest::Client::new()
                .post(self.url("/api/projects"))
                .header("host", host)
                .header("origin", origin)
                .json(&json!({ "prompt": "from a browser" })),
        )
        .await
    }

    /// A WebSocket handshake to `url` with these headers; the refusal's status, or 101.
    async fn websocket(&self, url: &str, headers: &[(&str, String)]) -> u16 {
        let mut request = url.into_client_request().unwrap();
        for (name, value) in headers {
            let name = axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap();
            request.headers_mut().insert(name, value.parse().unwrap());
        }
        match tokio_tungstenite::connect_async(request).await {
            Ok((_, response)) => response.status().as_u16(),
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                response.status().as_u16()
            }
            Err(other) => panic!("the handshake failed without an answer: {other}"),
        }
    }
}

fn multipart_prompt() -> reqwest::multipart::Form {
    reqwest::multipart::Form::new().text("prompt", "steal everything")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rebinding_page_reaches_nothing_on_the_ui_port() {
    let server = server(|_| {}).await;
    let project = server.harness.create("a project someone cares about").await;
    server.harness.settled(&project).await;
    let agent_calls = server.harness.fake.requests().len();
    let evil = format!("evil.example:{}", server.port);
    let evil_origin = format!("http://{evil}");
    let http = reqwest::Client::new();

    let attempts = [
        (
            "JSON create",
            http.post(server.url("/api/projects"))
                .json(&json!({ "prompt": "steal everything" })),
        ),
        (
            "multipart create",
            http.post(server.url("/api/projects"))
                .multipart(multipart_prompt()),
        ),
        (
            "page form create",
            http.post(server.url("/projects"))
                .multipart(multipart_prompt()),
        ),
        (
            "follow-up",
            http.post(server.url(&format!("/api/projects/{project}/messages")))
                .json(&json!({ "prompt": "rm -rf" })),
        ),
        (
            "delete",
            http.delete(server.url(&format!("/api/projects/{project}"))),
        ),
        ("list", http.get(server.url("/api/projects"))),
        (
            "read",
            http.get(server.url(&format!("/api/projects/{project}"))),
        ),
        ("page", http.get(server.url("/"))),
    ];
    for (what, request) in attempts {
        let (status, body) = server
            .send(request.header("host", &evil).header("origin", &evil_origin))
            .await;
        assert_eq!(status, 421, "{what}: {body}");
        assert!(body.contains("CODEFLUX_ALLOWED_HOSTS"), "{what}: {body}");
        assert!(
            !body.contains(&project),
            "{what} leaked the project: {body}"
        );
    }
    let socket = server
        .websocket(
            &format!("ws://127.0.0.1:{}/projects/{project}/ws", server.port),
            &[("host", evil.clone()), ("origin", evil_origin.clone())],
        )
        .await;
    assert_eq!(socket, 421, "progress WebSocket under a foreign host");

    assert_eq!(
        server.project_count().await,
        1,
        "nothing was created or deleted"
    );
    let (_, detail) = server
        .harness
        .get(&format!("/api/projects/{project}"))
        .await;
    assert_eq!(detail["messages"].as_array().unwrap().len(), 2, "{detail}");
    assert_eq!(
        server.harness.fake.requests().len(),
        agent_calls,
        "no job ran"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn writes_and_websockets_from_other_origins_are_refused() {
    let server = server(|_| {}).await;
    let project = server.harness.create("mine").await;
    server.harness.settled(&project).await;
    let own = format!("127.0.0.1:{}", server.port);
    let http = reqwest::Client::new();
    // The right name, but a page of another site, or of another local server, sends it.
    for origin in [
        format!("http://evil.example:{}", server.port),
        "http://localhost:8080".to_string(),
        format!("http://{project}.localhost:{}", server.preview_port),
        "null".to_string(),
    ] {
        for (what, request) in [
            (
                "JSON",
                http.post(server.url("/api/projects"))
                    .json(&json!({ "prompt": "x" })),
            ),
            (
                "multipart",
                http.post(server.url("/projects"))
                    .multipart(multipart_prompt()),
            ),
        ] {
            let (status, body) = server
                .send(request.header("host", &own).header("origin", &origin))
                .await;
            assert_eq!(status, 403, "{what} from {origin}: {body}");
        }
        let socket = server
            .websocket(
                &format!("ws://{own}/projects/{project}/ws"),
                &[("origin", origin.clone())],
            )
            .await;
        assert_eq!(socket, 403, "WebSocket from {origin}");
    }
    assert_eq!(server.project_count().await, 1);

    // The UI's own origin still works, by each loopback name.
    for name in ["127.0.0.1", "localhost"] {
        let (status, body) = server
            .create_from(
                &format!("{name}:{}", server.port),
                &format!("http://{name}:{}", server.port),
            )
            .await;
        assert_eq!(status, 201, "{name}: {body}");
        let socket = server
            .websocket(
                &format!("ws://127.0.0.1:{}/projects/{project}/ws", server.port),
                &[
                    ("host", format!("{name}:{}", server.port)),
                    ("origin", format!("http://{name}:{}", server.port)),
                ],
            )
            .await;
        assert_eq!(socket, 101, "{name}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_preview_port_answers_only_to_preview_addresses() {
    let server = server(|_| {}).await;
    let project = server.harness.create("an app").await;
    server.harness.settled(&project).await;
    let before = server.sandboxes_created();
    let http = reqwest::Client::new();
    let preview = format!("http://127.0.0.1:{}/", server.preview_port);
    for host in [
        format!("{project}.evil.example:{}", server.preview_port),
        format!("{project}.localhost.evil.example:{}", server.preview_port),
        format!("evil.example:{}", server.preview_port),
        format!("localhost:{}", server.preview_port),
    ] {
        let (status, body) = server.send(http.get(&preview).header("host", &host)).await;
        assert_eq!(status, 421, "{host}: {body}");
        assert!(body.contains("CODEFLUX_PREVIEW_URL"), "{body}");
        let socket = server
            .websocket(
                &format!("ws://127.0.0.1:{}/_next/webpack-hmr", server.preview_port),
                &[("host", host.clone())],
            )
            .await;
        assert_eq!(socket, 421, "hot reload under {host}");
    }
    assert_eq!(server.sandboxes_created(), before, "no sandbox was woken");

    // The real preview address wakes the sandbox (so the refusals above were the check).
    server.sandboxes.expire(project.parse().unwrap());
    let host = format!("{project}.localhost:{}", server.preview_port);
    let (status, body) = server.send(http.get(&preview).header("host", &host)).await;
    assert_ne!(status, 421, "{body}");
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    while server.sandboxes_created() == before {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the visit never woke the sandbox"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn reverse_proxy_and_lan_names_work_when_configured() {
    let server = server(|settings| {
        settings.public_origin = Some("https://codeflux.example.com".into());
        settings.allowed_hosts = vec!["codeflux.lan".into()];
        settings.preview_url_template = "https://{project}.preview.example.com".into();
    })
    .await;
    let http = reqwest::Client::new();
    let created = |host: &'static str, origin: &'static str| {
        http.post(server.url("/api/projects"))
            .header("host", host)
            .header("origin", origin)
            .header("x-forwarded-proto", "https")
            .json(&json!({ "prompt": "through the proxy" }))
    };
    // nginx as in examples/nginx-tls.conf: `Host $host`.
    let (status, body) = server
        .send(created(
            "codeflux.example.com",
            "https://codeflux.example.com",
        ))
        .await;
    assert_eq!(status, 201, "{body}");
    let project: Value = serde_json::from_str(&body).unwrap();
    let project = project["id"].as_str().unwrap().to_string();
    // A LAN name from CODEFLUX_ALLOWED_HOSTS, on the listen port.
    let (status, body) = server
        .create_from(
            &format!("codeflux.lan:{}", server.port),
            &format!("http://codeflux.lan:{}", server.port),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    // Still nobody else.
    let (status, _) = server
        .send(created("evil.example", "https://evil.example"))
        .await;
    assert_eq!(status, 421);

    // Previews by the configured wildcard name, and by the LAN name.
    server.harness.settled(&project).await;
    let preview = format!("http://127.0.0.1:{}/", server.preview_port);
    for host in [
        format!("{project}.preview.example.com"),
        format!("{project}.codeflux.lan:{}", server.preview_port),
    ] {
        let (status, body) = server.send(http.get(&preview).header("host", &host)).await;
        assert_ne!(status, 421, "{host}: {body}");
    }
    let (status, _) = server
        .send(
            http.get(&preview)
                .header("host", format!("{project}.localhost")),
        )
        .await;
    assert_eq!(
        status, 421,
        "the default suffix is not served once another is set"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn pages_may_not_be_framed_and_scripts_come_only_from_the_ui() {
    let server = server(|_| {}).await;
    let response = reqwest::get(server.url("/")).await.unwrap();
    let headers = response.headers();
    assert_eq!(headers["x-frame-options"], "DENY");
    assert_eq!(headers["referrer-policy"], "same-origin");
    let policy = headers["content-security-policy"].to_str().unwrap();
    assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
    assert!(policy.contains("script-src 'self';"), "{policy}");
    assert!(
        policy.contains(&format!(
            "frame-src http://*.localhost:{};",
            server.preview_port
        )),
        "{policy}"
    );
}
