//! Handler tests for every page and fragment, through the real router without a socket.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use codeflux::hosts::UiHosts;
use codeflux::server::Services;
use codeflux::store::{MessageType, NewFragment};
use codeflux::web::{AppState, Guard, Setup, app};
use http_body_util::BodyExt;
use tower::ServiceExt;
use uuid::Uuid;

const EVIL: &str = "<script>alert('x')</script>";

async fn state_with(setup: Setup) -> AppState {
    let mut settings = support::harness::settings(
        std::path::Path::new("/nonexistent"),
        "http://127.0.0.1:9/v1",
        30,
    );
    settings.data_dir = None;
    let sandboxes: Arc<dyn codeflux::sandbox::SandboxProvider> =
        support::host_sandbox::HostSandboxes::new();
    Services::build(&settings, Some(sandboxes), setup)
        .await
        .unwrap()
        .state
}

async fn state() -> AppState {
    state_with(Setup {
        model: "fake-model".into(),
        sandbox_backend: Some("docker".into()),
        ..Setup::default()
    })
    .await
}

/// The router as `serve` on 127.0.0.1:3000 builds it.
fn router(state: &AppState) -> axum::Router {
    let hosts = UiHosts::new("127.0.0.1:3000".parse().unwrap(), None, &[]).unwrap();
    app(
        state.clone(),
        Arc::new(Guard::new(hosts, support::harness::PREVIEW_TEMPLATE)),
    )
}

/// Sends `request` as a browser at the UI would (with its `Host`).
async fn send(
    state: &AppState,
    mut request: Request<Body>,
) -> (StatusCode, axum::http::HeaderMap, String) {
    request
        .headers_mut()
        .entry("host")
        .or_insert(axum::http::HeaderValue::from_static("127.0.0.1:3000"));
    let response = router(state).oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

async fn get(state: &AppState, uri: &str) -> (StatusCode, axum::http::HeaderMap, String) {
    send(state, Request::get(uri).body(Body::empty()).unwrap()).await
}

fn form_post(uri: &str, body: &str, htmx: bool) -> Request<Body> {
    let mut request = Request::post(uri)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("host", "localhost:3000")
        .header("origin", "http://localhost:3000");
    if htmx {
        request = request.header("hx-request", "true");
    }
    request.body(Body::from(body.to_string())).unwrap()
}

/// A project with one answered prompt and a version whose files hold hostile text.
fn finished_project(state: &AppState, prompt: &str) -> (Uuid, Uuid) {
    let (project, _, mut job) = state.store.create_project(prompt).unwrap();
    job.status = codeflux::store::JobStatus::Done;
    state.store.put_job(&job).unwrap();
    let files = BTreeMap::from([
        (
            "app/page.tsx".to_string(),
            format!("export default function Page() {{ return <main>{EVIL}</main>; }}\n"),
        ),
        (
            "components/habit-list.tsx".to_string(),
            "export const HabitList = () => null;\n".to_string(),
        ),
    ]);
    let (message, _) = state
        .store
        .add_assistant_message(
            project.id,
            MessageType::Result,
            &format!("Here is your tracker {EVIL}"),
            None,
            Some(NewFragment {
                title: "Habit Tracker".into(),
                sandbox_url: "http://x.localhost:3001".into(),
                files,
                verification: None,
            }),
        )
        .unwrap();
    (project.id, message.id)
}

#[tokio::test]
async fn home_shows_the_prompt_box_examples_and_projects() {
    let state = state().await;
    let (status, headers, body) = get(&state, "/").await;
    assert_eq!(status, 200);
    assert_eq!(headers["vary"], "HX-Request");
    assert!(body.contains("What do you want to build?"));
    assert!(body.contains("data-example=\"Build a habit tracker"));
    assert!(body.contains("No projects yet"));
    assert!(body.contains("/assets/") && body.contains("htmx-2.0.11.min.js"));

    finished_project(&state, &format!("build {EVIL} tracker"));
    let (_, _, body) = get(&state, "/").await;
    assert!(!body.contains(EVIL), "prompts are escaped");
    assert!(body.contains("build &lt;script&gt;alert('x')&lt;/script&gt; tracker"));
    assert!(body.contains("badge idle"));
    assert!(body.contains("just now"));
}

#[tokio::test]
async fn the_project_list_pages_with_a_load_more_button() {
    let state = state().await;
    for index in 0..21 {
        state
            .store
            .create_project(&format!("project number {index}"))
            .unwrap();
    }
    let (_, _, body) = get(&state, "/").await;
    assert_eq!(body.matches("class=\"project-row\"").count(), 20);
    assert!(body.contains("project number 20") && !body.contains("project number 0<"));
    let cursor = body
        .split("/projects?before=")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    let (status, _, more) = get(&state, &format!("/projects?before={cursor}")).await;
    assert_eq!(status, 200);
    assert_eq!(more.matches("class=\"project-row\"").count(), 1);
    assert!(more.contains("project number 0"));
    assert!(!more.contains("<html"), "the next page is a fragment");
}

#[tokio::test]
async fn creating_a_project_validates_inline_and_redirects() {
    let state = state().await;
    let (status, _, body) = send(&state, form_post("/projects", "prompt=+++", true)).await;
    assert_eq!(status, 422);
    assert!(body.contains("prompt is required") && body.contains("id=\"prompt-form\""));
    assert!(!body.contains("<html"), "htmx gets just the form back");

    let long = "x".repeat(10_001);
    let (status, _, body) = send(
        &state,
        form_post("/projects", &format!("prompt={long}"), true),
    )
    .await;
    assert_eq!(status, 422);
    assert!(body.contains("too long"));
    assert!(body.contains(&long), "what was typed is kept");

    let (status, headers, _) =
        send(&state, form_post("/projects", "prompt=a+todo+app", true)).await;
    assert_eq!(status, 200);
    let location = headers["hx-redirect"].to_str().unwrap();
    assert!(location.starts_with("/projects/"));

    let (status, headers, _) = send(&state, form_post("/projects", "prompt=another", false)).await;
    assert_eq!(status, 303);
    assert!(
        headers["location"]
            .to_str()
            .unwrap()
            .starts_with("/projects/")
    );
    assert_eq!(
        state.store.list_projects(10, None).unwrap().projects.len(),
        2
    );
}

#[tokio::test]
async fn cross_site_writes_are_refused() {
    let state = state().await;
    let request = Request::post("/projects")
        .header("content-type", "application/x-www-form-urlencoded")
        .header("host", "localhost:3000")
        .header("origin", "http://evil.example")
        .body(Body::from("prompt=hi"))
        .unwrap();
    let (status, _, _) = send(&state, request).await;
    assert_eq!(status, 403);
    let request = Request::post("/api/projects")
        .header("content-type", "application/json")
        .header("sec-fetch-site", "cross-site")
        .body(Body::from(r#"{"prompt":"hi"}"#))
        .unwrap();
    let (status, _, _) = send(&state, request).await;
    assert_eq!(status, 403);
    assert!(
        state
            .store
            .list_projects(10, None)
            .unwrap()
            .projects
            .is_empty()
    );

    let request = Request::get("/projects/00000000-0000-0000-0000-000000000000/ws")
        .header("host", "localhost:3000")
        .header("origin", "http://evil.example")
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .body(Body::empty())
        .unwrap();
    let (status, _, _) = send(&state, request).await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn the_project_page_shows_conversation_preview_and_follow_up() {
    let state = state().await;
    let (project, message) = finished_project(&state, "build a tracker");
    let (status, _, body) = get(&state, &format!("/projects/{project}")).await;
    assert_eq!(status, 200);
    assert!(body.contains("build a tracker"));
    assert!(
        body.contains("Here is your tracker &lt;script&gt;"),
        "model text is escaped"
    );
    assert!(!body.contains(EVIL));
    assert!(body.contains("Habit Tracker") && body.contains("2 files"));
    assert!(body.contains(&format!("fragment={message}")));
    assert!(
        body.contains(&format!("src=\"http://{project}.preview.test\"")),
        "iframe on the preview origin"
    );
    assert!(body.contains("id=\"follow-up\""));
    assert!(
        body.contains("section id=\"progress\" hidden"),
        "no live panel when idle"
    );

    let (status, _, _) = get(&state, &format!("/projects/{}", Uuid::now_v7())).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn errors_are_styled_as_errors_and_running_projects_stream_progress() {
    let state = state().await;
    let (project, _, job) = state.store.create_project("anything").unwrap();
    state
        .events
        .publish(project.id, job.id, codeflux::events::EventKind::Queued)
        .unwrap();
    let (_, _, body) = get(&state, &format!("/projects/{}", project.id)).await;
    assert!(body.contains(&format!(
        "ws-connect=\"/projects/{}/ws?after=1\"",
        project.id
    )));
    assert!(body.contains("Queued, waiting for a free worker"));
    assert!(body.contains("aria-live=\"polite\""));
    assert!(
        body.contains(&format!("hx-post=\"/projects/{}/cancel\"", project.id)),
        "a running job has a Stop button"
    );

    state
        .store
        .add_assistant_message(
            project.id,
            MessageType::Error,
            "Something went wrong: model down",
            None,
            None,
        )
        .unwrap();
    let (_, _, body) = get(&state, &format!("/projects/{}", project.id)).await;
    assert!(body.contains("message assistant error"));

    state
        .store
        .add_assistant_message(
            project.id,
            MessageType::Stopped,
            "Stopped at your request.",
            None,
            None,
        )
        .unwrap();
    let (_, _, body) = get(&state, &format!("/projects/{}", project.id)).await;
    assert!(body.contains("message assistant stopped"));
}

#[tokio::test]
async fn follow_ups_validate_and_start_the_live_panel() {
    let state = state().await;
    let (project, _) = finished_project(&state, "build a tracker");
    let (status, _, body) = send(
        &state,
        form_post(&format!("/projects/{project}/messages"), "prompt=", true),
    )
    .await;
    assert_eq!(status, 422);
    assert!(body.contains("prompt is required"));

    let (status, _, body) = send(
        &state,
        form_post(
            &format!("/projects/{project}/messages"),
            "prompt=make+it+blue",
            true,
        ),
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        body.contains("make it blue"),
        "the new message is swapped into the conversation"
    );
    assert!(body.contains("hx-swap-oob=\"true\""));
    assert!(body.contains(&format!("ws-connect=\"/projects/{project}/ws?after=")));
    assert!(body.contains("badge queued"));
}

#[tokio::test]
async fn the_code_tab_shows_a_tree_and_a_highlighted_file() {
    let state = state().await;
    let (project, message) = finished_project(&state, "build a tracker");
    let (status, _, body) = get(
        &state,
        &format!("/projects/{project}/workspace?tab=code&fragment={message}"),
    )
    .await;
    assert_eq!(status, 200);
    assert!(body.contains("aria-selected=\"true\"") && body.contains(">Code<"));
    assert!(body.contains("habit-list.tsx") && body.contains("page.tsx"));
    assert!(body.contains("hl-"), "highlighted on the server");
    assert!(!body.contains(EVIL), "file content is escaped");
    assert!(body.contains("Download zip"));

    let (_, _, body) = get(&state, &format!("/projects/{project}/workspace?tab=code&fragment={message}&file=components/habit-list.tsx")).await;
    assert!(body.contains("Contents of components/habit-list.tsx"));
    assert!(body.contains("HabitList"));

    let (status, _, _) = get(
        &state,
        &format!("/projects/{project}/workspace?fragment={}", Uuid::now_v7()),
    )
    .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn a_version_downloads_as_a_zip() {
    let state = state().await;
    let (project, message) = finished_project(&state, "build a tracker");
    let files = unzip(
        &state,
        &format!("/projects/{project}/fragments/{message}/download"),
    )
    .await;
    let folder = state.store.project(project).unwrap().name;
    let names: Vec<&str> = files.keys().map(String::as_str).collect();
    // The version's own files, over the template's app files: a copy that runs with
    // `npm install && npm run dev`.
    for name in [
        "app/page.tsx",
        "components/habit-list.tsx",
        "package.json",
        "package-lock.json",
        "next.config.ts",
        "lib/db.ts",
        "db/push.mjs",
        "components/ui/button.tsx",
        "README.md",
    ] {
        assert!(
            names.contains(&format!("{folder}/{name}").as_str()),
            "{name}: {names:?}"
        );
    }
    assert!(files[&format!("{folder}/app/page.tsx")].contains(EVIL));
    // Nothing of the sandbox's own machinery, and no data unless asked for. The Dockerfile
    // is the app's production image, not the sandbox's.
    let dockerfile = &files[&format!("{folder}/Dockerfile")];
    assert!(dockerfile.contains("next build") && dockerfile.contains("USER 10001"));
    assert!(!dockerfile.contains("codeflux"), "{dockerfile}");
    assert!(files[&format!("{folder}/README.md")].contains("docker build -t"));
    assert!(
        names.iter().all(|name| !name.ends_with("e2b.Dockerfile")
            && !name.contains("codeflux-")
            && !name.ends_with("start-dev.sh")
            && !name.ends_with("db/data.sql")),
        "{names:?}"
    );
    assert!(files[&format!("{folder}/README.md")].contains("npm run dev"));
}

#[tokio::test]
async fn a_zip_with_data_carries_the_versions_rows_as_sql() {
    use codeflux::store::snapshots::{NewSnapshot, SnapshotKind};
    use std::io::Write;
    let state = state().await;
    let (project, message) = finished_project(&state, "build a tracker");
    let url = format!("/projects/{project}/fragments/{message}/download?data=1");
    let (status, _, _) = get(&state, &url).await;
    assert_eq!(status, 404, "a version that kept no data has none to give");

    let version_id = state.store.fragment(message).unwrap().unwrap().id;
    let snapshot = serde_json::json!({
        "format": "codeflux-data/1",
        "tables": [{"name": "habits", "schema": "public", "table": "habits",
                    "columns": [{"name": "id", "type": "integer", "nullable": false},
                                {"name": "name", "type": "text", "nullable": false}],
                    "rows": [{"id": 1, "name": "Read"}, {"id": 2, "name": "Run"}]}],
        "sequences": [{"schema": "public", "name": "habits_id_seq", "value": "2"}]
    });
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gzip.write_all(snapshot.to_string().as_bytes()).unwrap();
    let gzipped = gzip.finish().unwrap();
    state
        .store
        .add_snapshot(
            project,
            NewSnapshot {
                kind: SnapshotKind::Version { version_id },
                gzipped: &gzipped,
                tables: 1,
                rows: 2,
            },
            Default::default(),
        )
        .unwrap();
    let files = unzip(&state, &url).await;
    let folder = state.store.project(project).unwrap().name;
    let sql = &files[&format!("{folder}/db/data.sql")];
    assert!(
        sql.contains(r#"INSERT INTO "public"."habits" ("id", "name")"#),
        "{sql}"
    );
    assert!(sql.contains(r#"{"id":1,"name":"Read"}"#), "{sql}");
    assert!(
        sql.contains(r#"SELECT setval('"public"."habits_id_seq"', 2, true);"#),
        "{sql}"
    );
}

/// Downloads a zip and returns its text files by name.
async fn unzip(state: &AppState, url: &str) -> BTreeMap<String, String> {
    let response = router(state)
        .oneshot(
            Request::get(url)
                .header("host", "127.0.0.1:3000")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/zip");
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes.to_vec())).unwrap();
    (0..archive.len())
        .map(|index| {
            let mut file = archive.by_index(index).unwrap();
            let name = file.name().unwrap().to_string();
            let mut text = String::new();
            std::io::Read::read_to_string(&mut file, &mut text).unwrap();
            (name, text)
        })
        .collect()
}

#[tokio::test]
async fn assets_are_served_with_content_hashes() {
    let state = state().await;
    let url = codeflux::web::assets::url("app.css");
    let (status, headers, body) = get(&state, &url).await;
    assert_eq!(status, 200);
    assert_eq!(
        headers["cache-control"],
        "public, max-age=31536000, immutable"
    );
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/css")
    );
    assert!(body.contains("--accent"));
    let (_, headers, _) = get(&state, "/assets/0000000000/app.css").await;
    assert_eq!(
        headers["cache-control"], "no-cache",
        "a stale hash is not cached"
    );
    let (status, _, _) = get(&state, "/assets/0000000000/nope.js").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn missing_configuration_is_explained_in_a_banner() {
    let state = state_with(Setup {
        model: "m".into(),
        model_problem: Some(
            "No API key for https://openrouter.ai/api/v1: set CODEFLUX_LLM_API_KEY".into(),
        ),
        sandbox_problem: Some("Start Docker (or set DOCKER_HOST)".into()),
        sandbox_backend: None,
        auth_enabled: false,
        sandbox_readiness: None,
        demo: false,
    })
    .await;
    let (_, _, body) = get(&state, "/").await;
    assert!(body.contains("No model configured") && body.contains("CODEFLUX_LLM_API_KEY"));
    assert!(body.contains("No sandbox backend") && body.contains("DOCKER_HOST"));
}

#[tokio::test]
async fn a_project_can_be_deleted_from_its_page() {
    let state = state().await;
    let (project, _) = finished_project(&state, "build a tracker");
    let (_, _, body) = get(&state, &format!("/projects/{project}")).await;
    assert!(body.contains(&format!("hx-delete=\"/projects/{project}\"")));
    assert!(body.contains("hx-confirm="));
    let request = Request::delete(format!("/projects/{project}"))
        .header("host", "localhost:3000")
        .header("origin", "http://localhost:3000")
        .body(Body::empty())
        .unwrap();
    let (status, headers, _) = send(&state, request).await;
    assert_eq!(status, 200);
    assert_eq!(headers["hx-redirect"], "/");
    let (status, _, _) = get(&state, &format!("/projects/{project}")).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn answers_show_what_they_cost() {
    let state = state().await;
    let (project, _, _) = state.store.create_project("x").unwrap();
    let usage = codeflux::store::TokenUsage {
        prompt_tokens: 11_000,
        completion_tokens: 1_300,
        model_calls: 6,
        cost_usd: Some(0.0123),
        calls: vec![codeflux::store::CallId {
            id: Some("chatcmpl-abc123".into()),
            request_id: Some("req_7f3e".into()),
        }],
    };
    state
        .store
        .add_assistant_message(
            project.id,
            MessageType::Result,
            "done",
            Some(usage.clone()),
            None,
        )
        .unwrap();
    state
        .store
        .add_assistant_message(project.id, MessageType::Result, "again", Some(usage), None)
        .unwrap();
    let (_, _, body) = get(&state, &format!("/projects/{}", project.id)).await;
    assert!(
        body.contains("6 model calls · 12.3k tokens · $0.0123<"),
        "{body}"
    );
    assert!(
        body.contains("chatcmpl-abc123  x-request-id: req_7f3e"),
        "{body}"
    );
    assert!(
        body.contains("24.6k tokens · $0.0246<"),
        "the project's sum: {body}"
    );
}

#[tokio::test]
async fn an_older_version_offers_restore_and_restoring_swaps_in_the_new_newest() {
    let state = state().await;
    let (project, first) = finished_project(&state, "build a tracker");
    let (second, _) = state
        .store
        .add_assistant_message(
            project,
            MessageType::Result,
            "v2",
            None,
            Some(NewFragment {
                title: "Second".into(),
                sandbox_url: "http://x.localhost:3001".into(),
                files: BTreeMap::from([("app/page.tsx".to_string(), "v2".to_string())]),
                verification: None,
            }),
        )
        .unwrap();
    let (_, _, newest) = get(
        &state,
        &format!("/projects/{project}/workspace?fragment={}", second.id),
    )
    .await;
    assert!(
        !newest.contains("version-bar"),
        "the newest version needs no restore"
    );
    let (_, _, older) = get(
        &state,
        &format!("/projects/{project}/workspace?fragment={first}"),
    )
    .await;
    assert!(older.contains("version 1 of 2"), "{older}");
    let v1 = state.store.versions(project).unwrap()[0].0.id;
    let restore = format!("/projects/{project}/versions/{v1}/restore");
    assert!(older.contains(&format!("hx-post=\"{restore}\"")));
    assert!(older.contains("Restore v1"));

    let (status, _, body) = send(&state, form_post(&restore, "", true)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body.contains("hx-swap-oob"),
        "conversation and workspace are swapped in"
    );
    assert!(body.contains("Restored version 1"));
    assert!(body.contains("v3"));
    assert_eq!(state.store.versions(project).unwrap().len(), 3);
}

#[tokio::test]
async fn answers_show_whether_the_app_was_checked() {
    let state = state().await;
    let (project, _, _) = state.store.create_project("check it").unwrap();
    for (status, errors) in [
        (codeflux::store::VerificationStatus::Passed, vec![]),
        (
            codeflux::store::VerificationStatus::Failed,
            vec!["app/page.tsx(2,9): error TS2322: nope <b>".to_string()],
        ),
    ] {
        state
            .store
            .add_assistant_message(
                project.id,
                MessageType::Result,
                "answer",
                None,
                Some(NewFragment {
                    title: "T".into(),
                    sandbox_url: "http://x.localhost:3001".into(),
                    files: BTreeMap::new(),
                    verification: Some(codeflux::store::Verification {
                        status,
                        errors,
                        browser: None,
                    }),
                }),
            )
            .unwrap();
    }
    let (_, _, body) = get(&state, &format!("/projects/{}", project.id)).await;
    assert!(body.contains("Checked: compiles and renders"));
    assert!(body.contains("Still failing"));
    assert!(
        body.contains("error TS2322: nope &lt;b&gt;"),
        "errors are escaped"
    );
}

#[tokio::test]
async fn a_version_shows_its_browser_check_with_a_thumbnail_of_each_page() {
    use codeflux::store::{BrowserCheck, CheckedPage, Verification, VerificationStatus};
    let state = state().await;
    let (project, _, _) = state.store.create_project("check it").unwrap();
    let page = |route: &str, clicks, screenshot| CheckedPage {
        route: route.into(),
        clicks,
        problems: 0,
        millis: 1200,
        screenshot,
    };
    let checks = [
        BrowserCheck {
            unavailable: None,
            pages: vec![page("/", 4, true), page("/about", 1, false)],
        },
        BrowserCheck {
            unavailable: Some("no Chromium in the sandbox".into()),
            pages: vec![],
        },
    ];
    let mut versions = Vec::new();
    for browser in checks {
        let (_, version) = state
            .store
            .add_assistant_message(
                project.id,
                MessageType::Result,
                "answer",
                None,
                Some(NewFragment {
                    title: "T".into(),
                    sandbox_url: "http://x.localhost:3001".into(),
                    files: BTreeMap::new(),
                    verification: Some(Verification {
                        status: VerificationStatus::Passed,
                        errors: vec![],
                        browser: Some(browser),
                    }),
                }),
            )
            .unwrap();
        versions.push(version.unwrap());
    }
    let jpeg = [0xFF, 0xD8, 0xFF, 0xE0, 1, 2, 3, 4].to_vec();
    let kept = state
        .store
        .put_screenshots(
            project.id,
            versions[0].id,
            &[
                (0, jpeg.clone()),
                (1, b"<script>not an image</script>".to_vec()),
            ],
        )
        .unwrap();
    assert_eq!(kept, 1, "bytes that are not an image are not kept");

    let (_, _, body) = get(&state, &format!("/projects/{}", project.id)).await;
    assert!(body.contains("Checked in a browser: 2 pages, 5 clicks, no errors"));
    assert!(body.contains("Not checked in a browser: no Chromium in the sandbox"));
    let thumbnail = format!("/projects/{}/versions/1/screenshots/0", project.id);
    assert!(body.contains(&format!("src=\"{thumbnail}\"")), "{body}");
    assert!(
        !body.contains(&format!(
            "/projects/{}/versions/1/screenshots/1",
            project.id
        )),
        "a page without a screenshot has no thumbnail"
    );

    let (status, headers, bytes) = get(&state, &thumbnail).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "image/jpeg");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(bytes.len(), String::from_utf8_lossy(&jpeg).len());
    let (status, _, _) = get(&state, &format!("/api{thumbnail}")).await;
    assert_eq!(status, StatusCode::OK);
    for missing in [
        format!("/projects/{}/versions/1/screenshots/1", project.id),
        format!("/projects/{}/versions/9/screenshots/0", project.id),
    ] {
        let (status, _, _) = get(&state, &missing).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{missing}");
    }

    let (status, _, body) = get(
        &state,
        &format!("/api/projects/{}/versions/1/check", project.id),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let check: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(check["status"], "passed");
    assert_eq!(
        check["browser"]["summary"],
        "Checked in a browser: 2 pages, 5 clicks, no errors"
    );
    assert_eq!(check["browser"]["pages"][0]["route"], "/");
    assert_eq!(check["browser"]["pages"][0]["clicks"], 4);
    assert_eq!(
        check["browser"]["pages"][0]["screenshot"],
        format!("/api{thumbnail}")
    );
    assert_eq!(
        check["browser"]["pages"][1]["screenshot"],
        serde_json::Value::Null
    );
    let (_, _, body) = get(
        &state,
        &format!("/api/projects/{}/versions/2/check", project.id),
    )
    .await;
    let check: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        check["browser"]["unavailable"],
        "no Chromium in the sandbox"
    );
}

#[tokio::test]
async fn the_sandbox_image_banner_follows_the_build_and_goes_when_ready() {
    use codeflux::sandbox::readiness::{Readiness, ReadinessCell};
    let readiness = ReadinessCell::default();
    readiness.set(Readiness::Preparing {
        step: "Step 7/12 : RUN npm ci <fast>".into(),
    });
    let state = state_with(Setup {
        model: "fake-model".into(),
        sandbox_backend: Some("docker".into()),
        sandbox_readiness: Some(readiness.clone()),
        ..Setup::default()
    })
    .await;

    let (status, _, home) = get(&state, "/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(home.contains("Preparing the sandbox image"), "{home}");
    assert!(
        home.contains("Step 7/12 : RUN npm ci &lt;fast&gt;"),
        "the build's latest line, escaped"
    );
    assert!(
        home.contains(r#"hx-get="/setup/sandbox""#),
        "it polls itself"
    );

    readiness.set(Readiness::Failed {
        error: "building the sandbox image from node:20 failed: pull access denied".into(),
    });
    let (_, _, banner) = get(&state, "/setup/sandbox").await;
    assert!(banner.contains("could not be built"), "{banner}");
    assert!(banner.contains("pull access denied"));
    assert!(banner.contains("codeflux doctor"));

    readiness.set(Readiness::Ready);
    let (status, _, banner) = get(&state, "/setup/sandbox").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(banner.trim(), "", "nothing is left to poll");
    let (_, _, home) = get(&state, "/").await;
    assert!(!home.contains("sandbox-readiness"));
}
