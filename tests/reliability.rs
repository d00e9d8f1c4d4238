//! Reliability under load and abuse: many writers at once, bad input, model faults, shutdown.
//! Everything here runs in-process against the scripted model and the host test sandbox.

mod support;

use std::time::Duration;

use serde_json::json;
use support::fake_llm::Reply;
use support::harness::Harness;

/// 8 clients × 400 creates at once: every write answers, and the queue drains.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creates_all_answer_and_every_job_ends() {
    let server = Harness::start_with(|settings| settings.max_jobs = 4).await;
    let clients: Vec<_> = (0..8)
        .map(|client| {
            let http = reqwest::Client::new();
            let url = format!("{}/api/projects", server.base);
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for n in 0..400 {
                    let response = http
                        .post(&url)
                        .json(&json!({ "prompt": format!("app {client}-{n}") }))
                        .send()
                        .await
                        .expect("the server answers");
                    assert_eq!(response.status(), 201, "create {client}-{n}");
                    let body: serde_json::Value = response.json().await.unwrap();
                    ids.push(body["id"].as_str().unwrap().to_string());
                }
                ids
            })
        })
        .collect();
    let burst = tokio::time::timeout(Duration::from_secs(300), futures::future::join_all(clients))
        .await
        .expect("3,200 concurrent creates finished instead of wedging");
    let ids: Vec<String> = burst.into_iter().flat_map(Result::unwrap).collect();
    assert_eq!(ids.len(), 3200);

    // A create after the burst still answers.
    let last = server.create("one more after the burst").await;

    // The fake model has no script, so every job ends quickly with an error message; what
    // matters is that each one ends.
    for id in ids.iter().chain([&last]) {
        let project = server.settled(id).await;
        let messages = project["messages"].as_array().unwrap();
        assert_eq!(messages.len(), 2, "{project}");
        assert_eq!(messages[1]["role"], "assistant");
    }
}

/// Sends a raw request and returns the status, the content type and the body.
async fn send_raw(
    server: &Harness,
    method: reqwest::Method,
    path: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> (u16, String, String) {
    let mut request = server
        .http
        .request(method, format!("{}{path}", server.base))
        .body(body);
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|value| value.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, content_type, response.text().await.unwrap())
}

/// A request (method, path, content type, body) and the status it must get.
type Case<'a> = (reqwest::Method, &'a str, Option<&'a str>, Vec<u8>, u16);

#[tokio::test]
async fn bad_input_gets_a_clear_4xx_and_stores_nothing() {
    use reqwest::Method;
    let server = Harness::start().await;
    let json = Some("application/json");
    let form = Some("application/x-www-form-urlencoded");
    let long_prompt = "x".repeat(1_100_000);
    // Prompt bodies may carry five images, so their limit is higher than other bodies'.
    let huge_prompt = "x".repeat(codeflux::web::upload::MAX_UPLOAD_BYTES + 1);
    let cases: Vec<Case> = vec![
        // Bodies: too large, not UTF-8, not JSON, wrong shape, wrong or no content type.
        (
            Method::POST,
            "/api/projects",
            json,
            json!({ "prompt": huge_prompt }).to_string().into_bytes(),
            413,
        ),
        (
            Method::POST,
            "/api/projects",
            json,
            json!({ "prompt": long_prompt }).to_string().into_bytes(),
            422,
        ),
        (
            Method::POST,
            "/api/projects",
            json,
            b"{\"prompt\": \"\xff\xfe\"}".to_vec(),
            400,
        ),
        (Method::POST, "/api/projects", json, b"{oops".to_vec(), 400),
        (
            Method::POST,
            "/api/projects",
            json,
            br#"{"prompt": 5}"#.to_vec(),
            422,
        ),
        (
            Method::POST,
            "/api/projects",
            Some("text/plain"),
            br#"{"prompt": "hi"}"#.to_vec(),
            415,
        ),
        (
            Method::POST,
            "/api/projects",
            None,
            br#"{"prompt": "hi"}"#.to_vec(),
            415,
        ),
        // Malformed ids and queries on every API route.
        (Method::GET, "/api/projects/not-a-uuid", None, vec![], 400),
        (
            Method::DELETE,
            "/api/projects/not-a-uuid",
            None,
            vec![],
            400,
        ),
        (Method::GET, "/api/projects/12/events", None, vec![], 400),
        (
            Method::POST,
            "/api/projects/zzz/messages",
            json,
            br#"{"prompt": "hi"}"#.to_vec(),
            400,
        ),
        (Method::GET, "/api/projects?limit=lots", None, vec![], 400),
        (
            Method::GET,
            "/api/projects?before=yesterday",
            None,
            vec![],
            400,
        ),
        (Method::GET, "/api/nothing-here", None, vec![], 404),
    ];
    for (method, path, content_type, body, expected) in cases {
        let (status, answered_type, text) =
            send_raw(&server, method.clone(), path, content_type, body).await;
        assert_eq!(status, expected, "{method} {path}: {text}");
        assert!(
            answered_type.starts_with("application/json"),
            "{method} {path} answers JSON, not {answered_type}: {text}"
        );
        let error: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert!(
            !error["error"].as_str().unwrap().is_empty(),
            "{method} {path}"
        );
    }

    // Pages answer the same failures with an HTML error page.
    let unknown_project = format!("/projects/{}", uuid::Uuid::now_v7());
    let form_too_large = format!(
        "prompt={}",
        "y".repeat(codeflux::web::upload::MAX_UPLOAD_BYTES + 1)
    )
    .into_bytes();
    let pages: Vec<Case> = vec![
        (Method::POST, "/projects", form, form_too_large, 413),
        (Method::GET, "/projects/not-a-uuid", None, vec![], 400),
        (
            Method::GET,
            "/projects/not-a-uuid/workspace",
            None,
            vec![],
            400,
        ),
        (
            Method::GET,
            "/projects/not-a-uuid/fragments/x/download",
            None,
            vec![],
            400,
        ),
        (
            Method::POST,
            "/projects/not-a-uuid/messages",
            form,
            b"prompt=hi".to_vec(),
            400,
        ),
        (Method::DELETE, "/projects/not-a-uuid", None, vec![], 400),
        (Method::GET, "/projects?before=nope", None, vec![], 400),
        (Method::GET, "/no/such/page", None, vec![], 404),
        (Method::GET, &unknown_project, None, vec![], 404),
    ];
    for (method, path, content_type, body, expected) in pages {
        let (status, answered_type, text) =
            send_raw(&server, method.clone(), path, content_type, body).await;
        assert_eq!(status, expected, "{method} {path}: {text}");
        assert!(
            answered_type.starts_with("text/html"),
            "{method} {path} answers HTML, not {answered_type}"
        );
        assert!(text.contains("error-page"), "{method} {path}: {text}");
    }

    let (_, list) = server.get("/api/projects").await;
    assert_eq!(list["projects"], json!([]), "nothing was stored");
}

// --- model faults: bounded retries, then a clear error on the project ---

fn raw_completion(message: serde_json::Value, finish_reason: &str) -> Reply {
    Reply::Raw(json!({
        "id": "chatcmpl-raw", "object": "chat.completion", "created": 0, "model": "fake-model",
        "choices": [{ "index": 0, "message": message, "finish_reason": finish_reason }],
        "usage": { "prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2 }
    }))
}

fn content(message: &serde_json::Value) -> &str {
    message["content"].as_str().unwrap()
}

#[tokio::test]
async fn a_model_that_hangs_past_the_timeout_is_retried_then_reported() {
    let server = Harness::start_with(|settings| {
        settings.llm.request_timeout = Duration::from_secs(1);
        settings.llm.max_attempts = 2;
    })
    .await;
    server.fake.push_all([
        Reply::Hang(Duration::from_secs(5)),
        Reply::Hang(Duration::from_secs(5)),
    ]);
    let project = server.create("anything").await;
    let answer = server.last_message(&project).await;
    assert_eq!(answer["type"], "error");
    assert!(
        content(&answer).contains("timed out") && content(&answer).contains("after 2 attempts"),
        "{answer}"
    );
}

#[tokio::test]
async fn a_connection_dropped_mid_answer_is_retried() {
    let server = Harness::start().await;
    server.fake.push_all([
        Reply::DropMidBody,
        Reply::write("app/page.tsx", "ok"),
        Reply::summary("done"),
    ]);
    let project = server.create("anything").await;
    let answer = server.last_message(&project).await;
    assert_eq!(answer["type"], "result", "{answer}");
    assert_eq!(server.fake.agent_requests().len(), 3);

    // Dropped every time: a clear error once the attempts are spent.
    server
        .fake
        .push_all([Reply::DropMidBody, Reply::DropMidBody, Reply::DropMidBody]);
    server.follow_up(&project, "again").await;
    let answer = server.last_message(&project).await;
    assert_eq!(answer["type"], "error");
    assert!(content(&answer).contains("after 3 attempts"), "{answer}");
}

#[tokio::test]
async fn empty_choices_are_retried_then_reported() {
    let server = Harness::start().await;
    let empty = Reply::Raw(json!({ "id": "x", "object": "chat.completion", "choices": [] }));
    server.fake.push_all([
        empty.clone(),
        Reply::write("app/page.tsx", "ok"),
        Reply::summary("done"),
    ]);
    let project = server.create("anything").await;
    assert_eq!(server.last_message(&project).await["type"], "result");

    server
        .fake
        .push_all([empty.clone(), empty.clone(), empty.clone()]);
    server.follow_up(&project, "again").await;
    let answer = server.last_message(&project).await;
    assert_eq!(answer["type"], "error");
    assert!(
        content(&answer).contains("no choices") && content(&answer).contains("after 3 attempts"),
        "{answer}"
    );
}

#[tokio::test]
async fn an_unknown_tool_gets_a_tool_error_and_the_job_goes_on() {
    let server = Harness::start().await;
    server.fake.push_all([
        Reply::tool("deleteEverything", json!({ "really": true })),
        Reply::write("app/page.tsx", "ok"),
        Reply::summary("done"),
    ]);
    let project = server.create("anything").await;
    assert_eq!(server.last_message(&project).await["type"], "result");
    let second = &server.fake.agent_requests()[1];
    let tool_answer = second["messages"]
        .as_array()
        .unwrap()
        .iter()
        .rfind(|message| message["role"] == "tool")
        .unwrap();
    assert!(
        content(tool_answer).contains("no tool named \"deleteEverything\""),
        "{tool_answer}"
    );
}

#[tokio::test]
async fn an_answer_cut_off_by_the_length_limit_is_asked_to_continue() {
    let server = Harness::start().await;
    server.fake.push_all([
        raw_completion(
            json!({ "role": "assistant", "content": "I will now write the whole app in one go: imp" }),
            "length",
        ),
        Reply::write("app/page.tsx", "ok"),
        Reply::summary("done"),
    ]);
    let project = server.create("anything").await;
    assert_eq!(server.last_message(&project).await["type"], "result");
    let second = &server.fake.agent_requests()[1];
    let last = second["messages"].as_array().unwrap().last().unwrap();
    assert_eq!(last["role"], "user");
    assert!(content(last).contains("cut off"), "{last}");
}

#[tokio::test]
async fn a_job_that_runs_past_its_wall_clock_limit_is_stopped_with_a_message() {
    let server = Harness::start_with(|settings| {
        settings.agent.job_timeout = Duration::from_secs(1);
    })
    .await;
    server.fake.set_delay(Duration::from_secs(3));
    server.fake.push(Reply::write("app/page.tsx", "slow"));
    let project = server.create("anything").await;
    let answer = server.last_message(&project).await;
    assert_eq!(answer["type"], "error");
    assert!(
        content(&answer).contains("CODEFLUX_JOB_TIMEOUT_SECS"),
        "{answer}"
    );
}

// --- exposure: a token guards the UI, the API, the WebSocket and the previews ---

const TOKEN: &str = "test-token-0123456789abcdef";

async fn guarded_server() -> (Harness, u16) {
    let preview_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let preview_port = preview_listener.local_addr().unwrap().port();
    let sandboxes: std::sync::Arc<dyn codeflux::sandbox::SandboxProvider> =
        support::host_sandbox::HostSandboxes::new();
    let server = Harness::start_with_provider(
        support::fake_llm::FakeLlm::start().await,
        sandboxes,
        preview_listener,
        move |settings| {
            settings.auth = codeflux::auth::Auth::new(Some(TOKEN.into())).unwrap();
            settings.preview_url_template = format!("http://{{project}}.localhost:{preview_port}");
        },
    )
    .await;
    (server, preview_port)
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_token_guards_the_api_pages_and_websocket() {
    let (server, _) = guarded_server().await;
    let http = no_redirects();
    let url = |path: &str| format!("{}{path}", server.base);

    // The API: bearer token or nothing.
    let refused = http.get(url("/api/projects")).send().await.unwrap();
    assert_eq!(refused.status(), 401);
    assert!(refused.headers().contains_key("www-authenticate"));
    assert!(refused.text().await.unwrap().contains("Bearer"));
    let wrong = http
        .get(url("/api/projects"))
        .bearer_auth("test-token-0123456789abcdeX")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let created = http
        .post(url("/api/projects"))
        .bearer_auth(TOKEN)
        .json(&json!({ "prompt": "guarded" }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let project: serde_json::Value = created.json().await.unwrap();
    let id = project["id"].as_str().unwrap().to_string();

    // Pages send the browser to sign in, and come back where it was going.
    let page = http
        .get(url(&format!("/projects/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 303);
    let location = page.headers()["location"].to_str().unwrap().to_string();
    assert_eq!(location, format!("/login?next=/projects/{id}"));
    let htmx = http
        .get(url("/"))
        .header("hx-request", "true")
        .send()
        .await
        .unwrap();
    assert_eq!(htmx.status(), 401);
    assert!(
        htmx.headers()["hx-redirect"]
            .to_str()
            .unwrap()
            .starts_with("/login")
    );
    let form = http.get(url(&location)).send().await.unwrap();
    assert_eq!(form.status(), 200);
    assert!(form.text().await.unwrap().contains("Access token"));
    for open in ["/healthz", "/login"] {
        assert_eq!(
            http.get(url(open)).send().await.unwrap().status(),
            200,
            "{open}"
        );
    }

    let wrong = http
        .post(url("/login"))
        .form(&[("token", "nope"), ("next", "/")])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    assert!(!wrong.headers().contains_key("set-cookie"));
    let signed_in = http
        .post(url("/login"))
        .form(&[("token", TOKEN), ("next", &format!("/projects/{id}"))])
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.status(), 303);
    assert_eq!(
        signed_in.headers()["location"],
        format!("/projects/{id}").as_str()
    );
    let cookie = signed_in.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let session = cookie.split(';').next().unwrap().to_string();
    let page = http
        .get(url(&format!("/projects/{id}")))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("Sign out"));
    assert!(!html.contains(TOKEN), "the token never appears in a page");

    // Sign-in never redirects off the site.
    let offsite = http
        .post(url("/login"))
        .form(&[("token", TOKEN), ("next", "//evil.example/")])
        .send()
        .await
        .unwrap();
    assert_eq!(offsite.headers()["location"], "/");

    // The progress WebSocket needs the session too.
    let ws_url = format!("{}/projects/{id}/ws", server.base.replace("http", "ws"));
    assert!(tokio_tungstenite::connect_async(&ws_url).await.is_err());
    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(&ws_url)
            .unwrap();
    request
        .headers_mut()
        .insert("cookie", session.parse().unwrap());
    assert!(tokio_tungstenite::connect_async(request).await.is_ok());
}

#[tokio::test]
async fn previews_need_a_signed_link_when_a_token_is_set() {
    let (server, preview_port) = guarded_server().await;
    let http = no_redirects();
    let project = |body: &serde_json::Value| body["id"].as_str().unwrap().to_string();
    let mut ids = Vec::new();
    for prompt in ["one", "two"] {
        let created = http
            .post(format!("{}/api/projects", server.base))
            .bearer_auth(TOKEN)
            .json(&json!({ "prompt": prompt }))
            .send()
            .await
            .unwrap();
        ids.push(project(&created.json().await.unwrap()));
    }
    let detail: serde_json::Value = http
        .get(format!("{}/api/projects/{}", server.base, ids[0]))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let link = detail["preview_link"].as_str().unwrap();
    assert!(link.contains("/__codeflux/auth?grant="), "{link}");
    let path_of = |url: &str| url[url.find("/__codeflux").unwrap()..].to_string();
    let preview = |host_project: &str, path: &str, cookie: Option<&str>| {
        let mut request = http
            .get(format!("http://127.0.0.1:{preview_port}{path}"))
            .header("host", format!("{host_project}.localhost:{preview_port}"));
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie);
        }
        request.send()
    };

    let refused = preview(&ids[0], "/", None).await.unwrap();
    assert_eq!(refused.status(), 401);
    assert!(
        refused
            .text()
            .await
            .unwrap()
            .contains("Open this preview from CodeFlux")
    );
    let tampered = preview(&ids[0], &path_of(link).replace("grant=", "grant=1"), None)
        .await
        .unwrap();
    assert_eq!(tampered.status(), 401);
    let other_project = preview(&ids[1], &path_of(link), None).await.unwrap();
    assert_eq!(
        other_project.status(),
        401,
        "a link opens only its own project"
    );

    let granted = preview(&ids[0], &path_of(link), None).await.unwrap();
    assert_eq!(granted.status(), 303);
    assert_eq!(granted.headers()["location"], "/");
    let cookie = granted.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    let session = cookie.split(';').next().unwrap();
    // Let in: the proxy goes on to the project's sandbox, which the visit starts (the
    // test backend has no dev server, so the answer is the page that waits for it).
    let shown = preview(&ids[0], "/", Some(session)).await.unwrap();
    assert_eq!(shown.status(), 503, "the preview host lets the browser in");
    assert!(
        shown
            .text()
            .await
            .unwrap()
            .contains("The sandbox and its dev server are starting up"),
        "the answer is the preview's own, not a refusal or an error"
    );
    let elsewhere = preview(&ids[1], "/", Some(session)).await.unwrap();
    assert_eq!(
        elsewhere.status(),
        401,
        "the cookie is bound to its project"
    );

    // A link opens the preview once: a leaked copy gets nothing, while the browser that
    // used it (a frame reloading its link) is simply sent on to the app.
    let reused = preview(&ids[0], &path_of(link), None).await.unwrap();
    assert_eq!(reused.status(), 401, "a used link opens nothing");
    assert!(!reused.headers().contains_key("set-cookie"));
    let reloaded = preview(&ids[0], &path_of(link), Some(session))
        .await
        .unwrap();
    assert_eq!(reloaded.status(), 303);
    assert!(!reloaded.headers().contains_key("set-cookie"));
}

#[tokio::test]
async fn signing_out_ends_the_session_on_the_server_and_wrong_tokens_back_off() {
    let (server, _) = guarded_server().await;
    let http = no_redirects();
    let url = |path: &str| format!("{}{path}", server.base);
    let sign_in = |token: &'static str| {
        http.post(url("/login"))
            .form(&[("token", token), ("next", "/")])
            .send()
    };
    // Behind a TLS-terminating proxy the session cookie is `Secure`; on plain HTTP it
    // cannot be (the browser would drop it).
    let behind_tls = http
        .post(url("/login"))
        .header("x-forwarded-proto", "https")
        .form(&[("token", TOKEN), ("next", "/")])
        .send()
        .await
        .unwrap();
    let secure = behind_tls.headers()["set-cookie"].to_str().unwrap();
    assert!(
        secure.contains("; Secure") && secure.contains("HttpOnly"),
        "{secure}"
    );
    let signed_in = sign_in(TOKEN).await.unwrap();
    assert_eq!(signed_in.status(), 303);
    let cookie = signed_in.headers()["set-cookie"].to_str().unwrap();
    assert!(!cookie.contains("Secure"), "{cookie}");
    let session = cookie.split(';').next().unwrap().to_string();
    let home = |session: String| http.get(url("/")).header("cookie", session).send();
    assert_eq!(home(session.clone()).await.unwrap().status(), 200);

    let out = http
        .post(url("/logout"))
        .header("cookie", &session)
        .header("origin", &server.base)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 303);
    // A browser (or a thief) that kept the cookie is not signed in any more.
    let after = home(session).await.unwrap();
    assert_eq!(
        after.status(),
        303,
        "the old session was ended on the server"
    );
    assert!(
        after.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with("/login")
    );

    // Wrong tokens: a few are answered as wrong, then sign-ins must wait, even a right one.
    for _ in 0..codeflux::auth::FREE_SIGN_IN_FAILURES {
        assert_eq!(sign_in("not-the-token").await.unwrap().status(), 401);
    }
    let throttled = sign_in(TOKEN).await.unwrap();
    assert_eq!(throttled.status(), 429);
    assert!(!throttled.headers().contains_key("set-cookie"));
    assert!(
        throttled
            .text()
            .await
            .unwrap()
            .contains("Too many wrong tokens")
    );
    // The first wait is one second; then the right token gets in and resets the count.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let again = sign_in(TOKEN).await.unwrap();
    assert_eq!(again.status(), 303);
    let fresh = again.headers()["set-cookie"].to_str().unwrap();
    let fresh = fresh.split(';').next().unwrap().to_string();
    assert_eq!(
        home(fresh).await.unwrap().status(),
        200,
        "a new session works"
    );
}

#[tokio::test]
async fn serving_beyond_loopback_without_a_token_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    for (listen, preview) in [("0.0.0.0:0", "127.0.0.1:0"), ("127.0.0.1:0", "0.0.0.0:0")] {
        let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_codeflux"))
            .args(["serve", "--listen", listen, "--preview-listen", preview])
            .env("CODEFLUX_DATA_DIR", dir.path())
            .env_remove("CODEFLUX_AUTH_TOKEN")
            .output()
            .await
            .unwrap();
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("CODEFLUX_AUTH_TOKEN"), "{stderr}");
    }
    let short = tokio::process::Command::new(env!("CARGO_BIN_EXE_codeflux"))
        .args(["serve", "--listen", "0.0.0.0:0"])
        .env("CODEFLUX_DATA_DIR", dir.path())
        .env("CODEFLUX_AUTH_TOKEN", "short")
        .output()
        .await
        .unwrap();
    assert!(!short.status.success());
    assert!(String::from_utf8_lossy(&short.stderr).contains("too short"));
}

/// Unmounts a file system the test mounted, however the test ends.
struct Unmount(std::path::PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// A workspace whose disk is full: the write fails with the system's own message, the model
/// hears it as a tool error, and the job still ends with an answer.
#[tokio::test]
async fn a_full_workspace_disk_is_a_clear_tool_error_and_the_job_still_ends() {
    let base = tempfile::tempdir().unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"])
        .arg(base.path())
        .status()
        .unwrap();
    assert!(
        mounted.success(),
        "mounting a small tmpfs needs root (CI runs as root)"
    );
    let _unmount = Unmount(base.path().to_path_buf());
    let sandboxes = support::host_sandbox::HostSandboxes::in_folder(base);
    let fake = support::fake_llm::FakeLlm::start().await;
    fake.push_all([
        Reply::write("app/data.json", &"x".repeat(600 * 1024)),
        Reply::summary("tried"),
    ]);
    let data_dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let server = Harness::start_on(fake, data_dir, sandboxes, |_| {}).await;
    let project = server.create("fill the disk").await;
    let answer = server.last_message(&project).await;
    assert_eq!(answer["role"], "assistant");
    let (_, events) = server.get(&format!("/api/projects/{project}/events")).await;
    let failed_write = events
        .as_array()
        .unwrap()
        .iter()
        .find(|event| event["event"] == "tool_finished")
        .unwrap();
    assert_eq!(failed_write["ok"], false, "{failed_write}");
    let told = &server.fake.agent_requests()[1];
    let tool_answer = told["messages"]
        .as_array()
        .unwrap()
        .iter()
        .rfind(|message| message["role"] == "tool")
        .unwrap();
    assert!(
        content(tool_answer).contains("No space left on device"),
        "{tool_answer}"
    );
    // The server goes on answering.
    server.create("next one").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_project_takes_only_so_many_waiting_requests() {
    let server = Harness::start().await;
    // The model is slow: the first job keeps running while follow-ups queue behind it.
    server.fake.set_delay(Duration::from_secs(20));
    let project = server.create("the first request").await;
    for n in 1..codeflux::store::MAX_OPEN_JOBS {
        server.follow_up(&project, &format!("follow-up {n}")).await;
    }
    let (status, body) = server
        .post(
            &format!("/api/projects/{project}/messages"),
            json!({ "prompt": "one too many" }),
        )
        .await;
    assert_eq!(status, 429, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("waiting"),
        "{body}"
    );
    let (_, detail) = server.get(&format!("/api/projects/{project}")).await;
    let prompts = detail["messages"].as_array().unwrap();
    assert_eq!(
        prompts.len(),
        codeflux::store::MAX_OPEN_JOBS,
        "the refused one was not stored"
    );
    // Once the work is stopped, the project takes prompts again.
    let (status, _) = server
        .post(&format!("/api/projects/{project}/cancel"), json!({}))
        .await;
    assert_eq!(status, 202);
    server
        .settled_within(&project, Duration::from_secs(120))
        .await;
    server.follow_up(&project, "after the stop").await;
}
