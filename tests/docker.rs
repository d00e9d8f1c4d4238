//! The Docker backend on a real engine: the conformance suite, the preview proxy (HTTP and
//! hot-reload WebSocket), idle reaping, orphan removal, the air-gapped network, and the whole
//! pipeline with the scripted model. No test leaves a container behind.

mod support;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use codeflux::preview::{PreviewOptions, PreviewTargets, RunningOnly};
use codeflux::sandbox::docker::NetworkMode;
use codeflux::sandbox::{FileWrite, SandboxProvider, WorkspacePath, conformance};
use futures::StreamExt;
use serde_json::json;
use support::docker_env::{containers_of, docker_cli, provider, test_config, wait_for_text};
use support::fake_llm::{FakeLlm, Reply};
use support::harness::Harness;
use uuid::Uuid;

const TIMEOUT: Duration = Duration::from_secs(120);

fn page(text: &str) -> FileWrite {
    FileWrite {
        path: WorkspacePath::parse("app/page.tsx").unwrap(),
        content: format!("export default function Page() {{\n  return <main>{text}</main>;\n}}\n")
            .into_bytes(),
    }
}

async fn start_proxy(targets: Arc<dyn PreviewTargets>) -> u16 {
    start_proxy_with(targets, Default::default()).await
}

async fn start_proxy_with(targets: Arc<dyn PreviewTargets>, options: PreviewOptions) -> u16 {
    support::serve_on_loopback(codeflux::preview::router(targets, options).unwrap()).await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_conformance_suite_passes_on_docker() {
    let (provider, cleanup) = provider(test_config()).await;
    let project = Uuid::now_v7();
    let acquired = tokio::time::timeout(TIMEOUT * 5, provider.acquire(project))
        .await
        .unwrap()
        .unwrap();
    assert!(acquired.created);
    let sandbox = acquired.sandbox;
    conformance::all(sandbox.as_ref()).await;

    // npm reaches its registry from inside (the configured CA is trusted).
    let npm = sandbox
        .run("npm view left-pad version", Duration::from_secs(60))
        .await
        .unwrap();
    assert!(npm.success() && npm.stdout.trim() == "1.3.0", "{npm:?}");

    let again = provider.acquire(project).await.unwrap();
    assert!(!again.created, "the running sandbox is reused");
    assert_eq!(again.sandbox.id(), sandbox.id());

    provider.release(project).await.unwrap();
    assert_eq!(containers_of(&cleanup.instance), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_preview_proxy_serves_pages_and_hot_reload() {
    let (provider, cleanup) = provider(test_config()).await;
    let project = Uuid::now_v7();
    let sandbox = provider.acquire(project).await.unwrap().sandbox;
    let nonce = format!("nonce-{}", Uuid::now_v7().simple());
    sandbox.write_files(&[page(&nonce)]).await.unwrap();

    let port = start_proxy(Arc::new(RunningOnly(provider.clone()))).await;
    let url = format!("http://127.0.0.1:{port}/");
    let host = format!("{project}.localhost:{port}");
    let client = reqwest::Client::new();
    wait_for_text(&client, &url, Some(&host), &nonce).await;

    // Next.js hot reload speaks WebSocket through the proxy.
    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(format!(
            "ws://127.0.0.1:{port}/_next/webpack-hmr"
        ))
        .unwrap();
    request.headers_mut().insert("host", host.parse().unwrap());
    let (mut socket, response) = tokio_tungstenite::connect_async(request)
        .await
        .expect("websocket upgrade through the proxy");
    assert_eq!(response.status(), 101);
    let first = tokio::time::timeout(Duration::from_secs(30), socket.next())
        .await
        .expect("HMR sends a message");
    assert!(first.is_some_and(|message| message.is_ok()));

    // A change shows up in the preview.
    let changed = format!("changed-{}", Uuid::now_v7().simple());
    sandbox.write_files(&[page(&changed)]).await.unwrap();
    wait_for_text(&client, &url, Some(&host), &changed).await;

    // Hosts that are no preview address are refused; projects without a running sandbox
    // get a clear page.
    let unknown = client
        .get(&url)
        .header("host", format!("nothing.localhost:{port}"))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 421);
    assert!(
        unknown
            .text()
            .await
            .unwrap()
            .contains("not a preview address")
    );
    let stopped = client
        .get(&url)
        .header("host", format!("{}.localhost:{port}", Uuid::now_v7()))
        .send()
        .await
        .unwrap();
    assert_eq!(stopped.status(), 503);
    assert!(
        stopped
            .text()
            .await
            .unwrap()
            .contains("The sandbox is not running")
    );

    provider.release(project).await.unwrap();
    assert_eq!(containers_of(&cleanup.instance), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_sandboxes_stop_and_come_back_with_their_files() {
    let mut config = test_config();
    config.idle = Duration::from_millis(500);
    let (provider, cleanup) = provider(config).await;
    let project = Uuid::now_v7();
    let sandbox = provider.acquire(project).await.unwrap().sandbox;
    sandbox
        .write_files(&[page("kept across a stop")])
        .await
        .unwrap();

    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(provider.stop_idle().await.unwrap(), 1);
    assert!(
        provider.preview_upstream(project).await.unwrap().is_none(),
        "stopped sandboxes have no preview"
    );

    let again = provider.acquire(project).await.unwrap();
    assert!(
        !again.created,
        "a stopped sandbox is started again, not recreated"
    );
    let content = again
        .sandbox
        .read_file(&WorkspacePath::parse("app/page.tsx").unwrap())
        .await
        .unwrap();
    assert!(
        String::from_utf8(content)
            .unwrap()
            .contains("kept across a stop")
    );
    assert_eq!(
        provider.stop_idle().await.unwrap(),
        0,
        "just used, so not idle"
    );

    provider.release(project).await.unwrap();
    assert_eq!(containers_of(&cleanup.instance), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn sandboxes_of_deleted_projects_are_removed() {
    let (provider, cleanup) = provider(test_config()).await;
    let (kept, deleted) = (Uuid::now_v7(), Uuid::now_v7());
    provider.acquire(kept).await.unwrap();
    provider.acquire(deleted).await.unwrap();
    assert_eq!(containers_of(&cleanup.instance), 2);

    let removed = provider
        .remove_orphans(&HashSet::from([kept]))
        .await
        .unwrap();
    assert_eq!(removed, 1);
    assert_eq!(containers_of(&cleanup.instance), 1);
    assert!(provider.preview_upstream(kept).await.unwrap().is_some());

    provider.release(kept).await.unwrap();
    assert_eq!(containers_of(&cleanup.instance), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_air_gapped_network_blocks_outbound_but_keeps_the_preview() {
    // The registry npm is configured with, asked for by name rather than written here.
    const REACH_REGISTRY: &str = "curl -sS -m 8 -o /dev/null \"$(npm config get registry)\"";
    // The same command works on the default network, so its failure below is the air gap.
    let (bridge, bridge_cleanup) = provider(test_config()).await;
    let connected = bridge.acquire(Uuid::now_v7()).await.unwrap().sandbox;
    let reached = connected
        .run(REACH_REGISTRY, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(
        reached.exit_code, 0,
        "the bridge reaches the registry: {reached:?}"
    );
    drop(connected);
    drop(bridge_cleanup);

    let mut config = test_config();
    config.network = NetworkMode::None;
    let (provider, cleanup) = provider(config).await;
    let project = Uuid::now_v7();
    let sandbox = provider.acquire(project).await.unwrap().sandbox;
    let outbound = sandbox
        .run(REACH_REGISTRY, Duration::from_secs(30))
        .await
        .unwrap();
    // curl: 6 cannot resolve, 7 cannot connect, 28 timed out; anything else (127: no curl)
    // would say nothing about the network.
    assert!(
        matches!(outbound.exit_code, 6 | 7 | 28),
        "the sandbox reached the internet, or curl did not run: {outbound:?}"
    );

    sandbox
        .write_files(&[page("offline but visible")])
        .await
        .unwrap();
    let upstream = provider
        .preview_upstream(project)
        .await
        .unwrap()
        .expect("running");
    wait_for_text(
        &reqwest::Client::builder().no_proxy().build().unwrap(),
        &upstream.base_url,
        None,
        "offline but visible",
    )
    .await;

    provider.release(project).await.unwrap();
    assert_eq!(containers_of(&cleanup.instance), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_prompt_becomes_a_live_preview_that_survives_a_replaced_sandbox() {
    let (provider, cleanup) = provider(test_config()).await;
    let preview_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let preview_port = preview_listener.local_addr().unwrap().port();
    let fake = FakeLlm::start().await;
    let nonce = format!("habit-{}", Uuid::now_v7().simple());
    fake.push_all([
        Reply::terminal("ls components/ui | head -3"),
        Reply::tool(
            "createOrUpdateFiles",
            json!({ "files": [
                { "path": "app/page.tsx", "content": format!("import {{ Button }} from \"@/components/ui/button\";\n\nexport default function Page() {{\n  return <main><h1>{nonce}</h1><Button>Track</Button></main>;\n}}\n") }
            ] }),
        ),
        Reply::summary("A habit tracker page."),
    ]);
    let server =
        Harness::start_with_provider(fake, provider.clone(), preview_listener, |settings| {
            settings.preview_url_template = format!("http://{{project}}.localhost:{preview_port}");
        })
        .await;

    let project = server.create("build me a habit tracker").await;
    let answer = server.last_message(&project).await;
    assert_eq!(answer["type"], "result", "{answer}");
    let preview_url = answer["fragment"]["sandbox_url"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        preview_url,
        format!("http://{project}.localhost:{preview_port}")
    );

    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let proxy = format!("http://127.0.0.1:{preview_port}/");
    let host = format!("{project}.localhost:{preview_port}");
    let body = wait_for_text(&client, &proxy, Some(&host), &nonce).await;
    assert!(body.contains("Track"), "the kit's Button rendered");

    // The sandbox goes away; the same URL brings it back with the project's files.
    provider.release(project.parse().unwrap()).await.unwrap();
    assert_eq!(containers_of(&cleanup.instance), 0);
    let first = client
        .get(&proxy)
        .header("host", &host)
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 503);
    assert!(first.text().await.unwrap().contains("Preview is starting"));
    wait_for_text(&client, &proxy, Some(&host), &nonce).await;

    provider.release(project.parse().unwrap()).await.unwrap();
    assert_eq!(containers_of(&cleanup.instance), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_template_type_checks_and_renders_every_kit_component() {
    let (provider, cleanup) = provider(test_config()).await;
    let project = Uuid::now_v7();
    let sandbox = provider.acquire(project).await.unwrap().sandbox;
    let write = |path: &str, content: &str| FileWrite {
        path: WorkspacePath::parse(path).unwrap(),
        content: content.as_bytes().to_vec(),
    };

    // The type check is real: a missing component fails it.
    sandbox
        .write_files(&[write("app/broken/page.tsx", "import { Nope } from \"@/components/ui/nope\";\nexport default function P() { return <Nope />; }\n")])
        .await
        .unwrap();
    let broken = sandbox
        .run("npx tsc --noEmit", Duration::from_secs(240))
        .await
        .unwrap();
    assert_ne!(
        broken.exit_code, 0,
        "tsc accepted a missing component: {broken:?}"
    );
    sandbox
        .run("rm -rf app/broken", Duration::from_secs(10))
        .await
        .unwrap();

    sandbox
        .write_files(&[write(
            "app/kit/page.tsx",
            include_str!("fixtures/kit-page.tsx"),
        )])
        .await
        .unwrap();
    let checked = sandbox
        .run("npx tsc --noEmit", Duration::from_secs(240))
        .await
        .unwrap();
    assert!(
        checked.success(),
        "the template does not type-check:\n{}\n{}",
        checked.stdout,
        checked.stderr
    );

    let upstream = provider
        .preview_upstream(project)
        .await
        .unwrap()
        .expect("running");
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let html = wait_for_text(
        &client,
        &format!("{}/kit", upstream.base_url),
        None,
        "Kit card title",
    )
    .await;
    for text in [
        "Kit card description",
        "Kit badge",
        "Kit label",
        "Kit checkbox",
        "data-slot=\"select-trigger\"",
        "Kit radio",
        "Kit button",
        "Kit tab content",
        "Kit alert title",
        "Kit accordion",
        "Kit cell",
        "Kit scroll area",
        "KA",
        "Kit tooltip",
        "Kit popover",
        "Kit menu",
        "Kit dialog",
        "Kit sheet",
        "Kit motion",
        "2026-01-02",
        "aria-label=\"Kit form\"",
        "recharts-wrapper",
    ] {
        assert!(html.contains(text), "{text:?} did not render");
    }
    assert!(
        !html.contains("fonts.googleapis"),
        "the template must not fetch fonts at run time"
    );

    provider.release(project).await.unwrap();
    assert_eq!(containers_of(&cleanup.instance), 0);
}

const TAGGED_PAGE: &str = r#"import { Fragment } from "react";
import { Button } from "@/components/ui/button";

export default function Tagged() {
  return (
    <main className="p-4">
      <>
        <Fragment><span>fragment child</span></Fragment>
      </>
      <Button variant="outline">Tagged button</Button>
    </main>
  );
}
"#;

/// Selecting in the preview rests on the template: its dev server tags every JSX element
/// with file, line, column and name (the place it is used, for components that pass their
/// props on), the proxy adds the picker to pages for the UI's origins only, and neither the
/// files on disk nor a production build carry a tag.
#[tokio::test(flavor = "multi_thread")]
async fn the_dev_server_tags_elements_for_the_picker_and_the_build_does_not() {
    let (provider, cleanup) = provider(test_config()).await;
    let project = Uuid::now_v7();
    let sandbox = provider.acquire(project).await.unwrap().sandbox;
    sandbox
        .write_files(&[FileWrite {
            path: WorkspacePath::parse("app/tagged/page.tsx").unwrap(),
            content: TAGGED_PAGE.as_bytes().to_vec(),
        }])
        .await
        .unwrap();
    let port = start_proxy_with(
        Arc::new(RunningOnly(provider.clone())),
        PreviewOptions {
            ui_origins: vec!["http://ui.test:4000".into()],
            ..PreviewOptions::default()
        },
    )
    .await;
    let url = format!("http://127.0.0.1:{port}/tagged");
    let host = format!("{project}.localhost:{port}");
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    wait_for_text(&client, &url, Some(&host), "Tagged button").await;
    let page = client
        .get(&url)
        .header("host", &host)
        .header("accept", "text/html")
        .header("accept-encoding", "gzip, br")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for expected in [
        r#"<main data-cf-loc="app/tagged/page.tsx:6:5:main""#,
        r#"<span data-cf-loc="app/tagged/page.tsx:8:19:span">fragment child"#,
        // The kit's button spreads its props last: the place of use wins over button.tsx.
        r#"data-cf-loc="app/tagged/page.tsx:10:7:Button""#,
        r#"<body data-cf-loc="app/layout.tsx:"#,
        r#"<head><script src="/__codeflux/picker.js" data-ui-origins="http://ui.test:4000" async></script>"#,
    ] {
        assert!(
            page.contains(expected),
            "{expected} is missing from:\n{page}"
        );
    }
    let picker = client
        .get(format!("http://127.0.0.1:{port}/__codeflux/picker.js"))
        .header("host", &host)
        .send()
        .await
        .unwrap();
    assert_eq!(picker.status(), 200);
    assert!(
        picker
            .text()
            .await
            .unwrap()
            .contains("codeflux: \"picked\"")
    );
    // Without the UI's origins there is no picker (a proxy for other tools).
    let plain = start_proxy(Arc::new(RunningOnly(provider.clone()))).await;
    let untouched = client
        .get(format!("http://127.0.0.1:{plain}/tagged"))
        .header("host", format!("{project}.localhost:{plain}"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(untouched.contains("Tagged button") && !untouched.contains("picker.js"));

    // The tagger itself: type arguments, an explicit tag, and files outside the app.
    let cases = sandbox
        .run(
            r#"node -e 'const { tag } = require("/usr/local/lib/codeflux-tagger.cjs");
console.log(tag("const a = <List<string> items={[]} />;", "x.tsx"));
console.log(tag(`const b = <div data-cf-loc="mine" />;`, "y.jsx"));'"#,
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    assert_eq!(
        cases.stdout.trim(),
        "const a = <List<string> data-cf-loc=\"x.tsx:1:11:List\" items={[]} />;\nconst b = <div data-cf-loc=\"mine\" />;",
        "{cases:?}"
    );
    let clean = sandbox
        .run(
            "grep -c data-cf-loc app/tagged/page.tsx; grep -c 'data-cf-loc' /tmp/codeflux-dev.log",
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    assert_eq!(
        clean.stdout.trim(),
        "0\n0",
        "the file on disk and the dev server's log (React warnings) never show a tag"
    );
    provider.release(project).await.unwrap();

    // A production build of the same page, offline, in a fresh container of the image.
    let image = provider.prepare_image(&mut |_| {}).await.unwrap();
    let script = "set -e; mkdir -p app/tagged; printf '%s' \"$PAGE\" > app/tagged/page.tsx; \
        npm run build > /tmp/build.log 2>&1 || { tail -40 /tmp/build.log; exit 1; }; \
        echo built=$(grep -rl 'Tagged button' .next/server | wc -l); \
        echo tagged=$(grep -rl data-cf-loc .next | wc -l)";
    let output = docker_cli(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--label",
        &format!("codeflux.instance={}", cleanup.instance),
        "-e",
        &format!("PAGE={TAGGED_PAGE}"),
        "--entrypoint",
        "bash",
        &image,
        "-c",
        script,
    ]);
    assert!(
        !output.contains("built=0") && output.contains("built="),
        "the build did not include the page: {output}"
    );
    assert!(
        output.contains("tagged=0"),
        "the production build carries tags: {output}"
    );
    assert_eq!(containers_of(&cleanup.instance), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn generate_builds_one_app_headless_and_writes_its_files() {
    let config = test_config();
    let cleanup = support::docker_env::Cleanup {
        instance: config.instance.clone(),
    };
    let fake = FakeLlm::start().await;
    fake.push_all([
        Reply::tool(
            "createOrUpdateFiles",
            json!({ "files": [
                { "path": "app/page.tsx", "content": "export default function Page() { return <main>headless</main>; }\n" },
                { "path": "components/timer.tsx", "content": "export const Timer = () => null;\n" }
            ] }),
        ),
        Reply::summary("A timer."),
    ]);
    let out = tempfile::tempdir().unwrap();
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_codeflux"));
    command
        .args(["generate", "a pomodoro timer", "--out"])
        .arg(out.path())
        .env("CODEFLUX_LLM_BASE_URL", &fake.base_url)
        .env("CODEFLUX_SANDBOX", "docker")
        .env("CODEFLUX_SANDBOX_BASE_IMAGE", &config.base_image)
        .env("CODEFLUX_SANDBOX_INSTANCE", &config.instance);
    if let Some(ca) = &config.ca_cert {
        command.env("CODEFLUX_SANDBOX_CA_CERT", ca);
    }
    let output = command.output().await.unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    // The template's page is replaced (how many lines went), the timer is new.
    assert!(
        stderr.contains("wrote app/page.tsx (1 line, +1 −")
            && stderr.contains("components/timer.tsx (1 line)"),
        "progress is printed with what changed: {stderr}"
    );
    assert_eq!(
        std::fs::read_to_string(out.path().join("app/page.tsx")).unwrap(),
        "export default function Page() { return <main>headless</main>; }\n"
    );
    assert!(out.path().join("components/timer.tsx").exists());
    assert!(String::from_utf8_lossy(&output.stdout).contains("Wrote 2 files"));
    assert_eq!(
        containers_of(&cleanup.instance),
        0,
        "generate removes its sandbox"
    );
}

/// Waits (bounded, generously) until the project's latest job published an event of `kind`
/// (and `tool`, when given).
async fn wait_for_event(server: &Harness, project: &str, kind: &str, tool: Option<&str>) {
    for _ in 0..3000 {
        let (_, events) = server.get(&format!("/api/projects/{project}/events")).await;
        let found = events.as_array().is_some_and(|events| {
            events.iter().any(|event| {
                event["event"] == kind && tool.is_none_or(|tool| event["tool"] == tool)
            })
        });
        if found {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, events) = server.get(&format!("/api/projects/{project}/events")).await;
    panic!("no {kind} event; events: {events:#}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_engine_that_stops_during_or_before_a_job_ends_it_with_a_clear_error() {
    let relay = support::engine_relay::EngineRelay::start();
    let mut config = test_config();
    config.socket = Some(relay.socket.clone());
    let (provider, _cleanup) = provider(config).await;
    let preview_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let fake = FakeLlm::start().await;
    fake.push_all([
        Reply::write(
            "app/page.tsx",
            "export default function Page() { return <main/>; }\n",
        ),
        Reply::terminal("sleep 120"),
    ]);
    let server = Harness::start_with_provider(fake, provider, preview_listener, |_| {}).await;

    // During: the engine stops while a command runs.
    let project = server.create("a page").await;
    wait_for_event(&server, &project, "tool_started", Some("terminal")).await;
    relay.stop_engine();
    let answer = server.last_message(&project).await;
    assert_eq!(answer["type"], "error", "{answer}");
    let content = answer["content"].as_str().unwrap();
    assert!(
        content.contains("sandbox stopped working during `terminal sleep 120`")
            && content.contains("does not answer"),
        "{content}"
    );

    // Before: the next job cannot get a sandbox and says so.
    server.fake.push(Reply::write("app/page.tsx", "again"));
    server.follow_up(&project, "again").await;
    let answer = server.last_message(&project).await;
    assert_eq!(answer["type"], "error", "{answer}");
    assert!(
        answer["content"]
            .as_str()
            .unwrap()
            .contains("The sandbox could not be prepared"),
        "{answer}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sandbox_removed_mid_command_ends_the_job_and_the_next_visit_revives_it() {
    let (provider, cleanup) = provider(test_config()).await;
    let preview_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let preview_port = preview_listener.local_addr().unwrap().port();
    let fake = FakeLlm::start().await;
    let nonce = format!("kept-{}", Uuid::now_v7().simple());
    fake.push_all([
        Reply::write(
            "app/page.tsx",
            &format!("export default function Page() {{\n  return <main>{nonce}</main>;\n}}\n"),
        ),
        Reply::summary("v1"),
    ]);
    let server =
        Harness::start_with_provider(fake, provider.clone(), preview_listener, |settings| {
            settings.preview_url_template = format!("http://{{project}}.localhost:{preview_port}");
        })
        .await;
    let project = server.create("a page").await;
    assert_eq!(server.last_message(&project).await["type"], "result");

    server.fake.push(Reply::terminal("sleep 120"));
    server.follow_up(&project, "make it slower").await;
    wait_for_event(&server, &project, "tool_started", Some("terminal")).await;
    let removed = std::process::Command::new("docker")
        .args([
            "rm",
            "-f",
            &format!("codeflux-{}-{project}", cleanup.instance),
        ])
        .output()
        .unwrap();
    assert!(removed.status.success(), "{removed:?}");
    let answer = server.last_message(&project).await;
    let (_, events) = server.get(&format!("/api/projects/{project}/events")).await;
    assert_eq!(answer["type"], "error", "{answer}\n{events:#}");
    assert!(
        answer["content"]
            .as_str()
            .unwrap()
            .contains("sandbox stopped working during `terminal sleep 120`"),
        "{answer}\n{events:#}"
    );

    // The preview URL brings a new sandbox with the last version's files.
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let proxy = format!("http://127.0.0.1:{preview_port}/");
    let host = format!("{project}.localhost:{preview_port}");
    wait_for_text(&client, &proxy, Some(&host), &nonce).await;
    provider.release(project.parse().unwrap()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn stop_kills_the_running_command_in_the_container() {
    let (provider, cleanup) = provider(test_config()).await;
    let preview_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let fake = FakeLlm::start().await;
    let tag = 1000 + rand::random_range(0..9000u32);
    fake.push_all([
        Reply::write(
            "app/page.tsx",
            "export default function Page() { return <main/>; }\n",
        ),
        Reply::terminal(&format!("sleep {tag}9")),
    ]);
    let server = Harness::start_with_provider(fake, provider, preview_listener, |_| {}).await;
    let project = server.create("a page").await;
    wait_for_event(&server, &project, "tool_started", Some("terminal")).await;
    let container = format!("codeflux-{}-{project}", cleanup.instance);
    let running = || {
        let listed = std::process::Command::new("docker")
            .args(["exec", &container, "sh", "-c"])
            .arg(conformance::processes_matching(&format!("sleep {tag}9")))
            .output()
            .unwrap();
        String::from_utf8_lossy(&listed.stdout)
            .lines()
            .filter(|line| !line.trim().is_empty())
            .count()
            .to_string()
    };
    for _ in 0..100 {
        if running() != "0" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(running(), "1", "the command runs in the container");

    let (status, _) = server
        .post(&format!("/api/projects/{project}/cancel"), json!({}))
        .await;
    assert_eq!(status, 202);
    let done = server
        .settled_within(&project, Duration::from_secs(10))
        .await;
    assert_eq!(done["messages"][1]["type"], "stopped", "{done:#}");
    let mut gone = false;
    for _ in 0..100 {
        if running() == "0" {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        gone,
        "the stopped job's command was killed in the container"
    );
}

/// Waits (bounded, generously: a dev server's first compile on a busy machine) until
/// `ready()` holds.
async fn eventually(what: &str, ready: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    while !ready() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} did not happen within 5 minutes"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_project_claims_a_warm_sandbox_and_the_pool_refills() {
    let mut config = test_config();
    config.pool = 1;
    let (provider, cleanup) = provider(config).await;
    let pool = provider.spawn_pool().expect("a pool of one");
    eventually("the first warm sandbox", || provider.warm_ready() == 1).await;
    let warm = provider.inventory(false).await.unwrap();
    assert_eq!(warm.len(), 1);
    assert!(warm[0].warm && warm[0].project_id.is_none(), "{warm:?}");
    let warm_id = warm[0].container_id.clone();
    // A warm sandbox belongs to no project: orphan removal and the idle reaper leave it.
    assert_eq!(provider.remove_orphans(&HashSet::new()).await.unwrap(), 0);

    let project = Uuid::now_v7();
    let acquired = provider.acquire(project).await.unwrap();
    assert!(
        acquired.created,
        "a claimed sandbox counts as new (files get restored)"
    );
    assert_eq!(
        acquired.sandbox.id(),
        warm_id,
        "the warm container was claimed"
    );
    let listed = provider.inventory(false).await.unwrap();
    let claimed = listed
        .iter()
        .find(|sandbox| sandbox.container_id == warm_id)
        .unwrap();
    assert_eq!(claimed.project_id, Some(project));
    assert!(!claimed.warm);

    // Its dev server is already up: the first page write is a hot reload.
    acquired
        .sandbox
        .write_files(&[page("claimed warm")])
        .await
        .unwrap();
    let port = start_proxy(Arc::new(RunningOnly(provider.clone()))).await;
    wait_for_text(
        &reqwest::Client::new(),
        &format!("http://127.0.0.1:{port}/"),
        Some(&format!("{project}.localhost")),
        "claimed warm",
    )
    .await;

    eventually("the pool to refill", || provider.warm_ready() == 1).await;
    let live = HashSet::from([project]);
    assert_eq!(provider.remove_orphans(&live).await.unwrap(), 0);
    // The same project finds its claimed sandbox again, by name.
    let again = provider.acquire(project).await.unwrap();
    assert!(!again.created);
    assert_eq!(again.sandbox.id(), warm_id);
    drop((acquired, again));

    // Shutdown removes the unclaimed one and stops the claimed one, files kept.
    pool.abort();
    assert_eq!(provider.shutdown().await.unwrap(), 1);
    let left = provider.inventory(false).await.unwrap();
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0].container_id, warm_id);
    assert!(!left[0].running);
    drop(cleanup);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_running_budget_stops_the_least_recently_used_free_sandbox_and_waits_when_all_are_held()
{
    let mut config = test_config();
    config.max_running = Some(1);
    let (provider, cleanup) = provider(config).await;
    assert_eq!(provider.max_running(), 1);
    let (first, second) = (Uuid::now_v7(), Uuid::now_v7());

    let held = provider.acquire(first).await.unwrap().sandbox;
    held.write_files(&[page("kept across the stop")])
        .await
        .unwrap();
    // While a job holds the first sandbox, the second waits instead of failing.
    let waiting = {
        let provider = provider.clone();
        tokio::spawn(async move { provider.acquire(second).await })
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!waiting.is_finished(), "the second sandbox waits for room");
    drop(held);
    let second_sandbox = tokio::time::timeout(TIMEOUT, waiting)
        .await
        .expect("room is made once the first is let go")
        .unwrap()
        .unwrap()
        .sandbox;
    let running: Vec<_> = provider
        .inventory(false)
        .await
        .unwrap()
        .into_iter()
        .filter(|sandbox| sandbox.running)
        .map(|sandbox| sandbox.project_id)
        .collect();
    assert_eq!(running, vec![Some(second)], "the first was stopped");
    drop(second_sandbox);

    // The first comes back with its files; the second, now free, makes room for it.
    let back = provider.acquire(first).await.unwrap();
    assert!(!back.created);
    let file = back
        .sandbox
        .read_file(&WorkspacePath::parse("app/page.tsx").unwrap())
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&file).contains("kept across the stop"));
    drop(back);
    drop(cleanup);
}

/// With two free sandboxes running and no room for a third, the one used longest ago is
/// the one stopped.
#[tokio::test(flavor = "multi_thread")]
async fn the_running_budget_chooses_the_least_recently_used_of_two_free_sandboxes() {
    let mut config = test_config();
    config.max_running = Some(2);
    let (provider, cleanup) = provider(config).await;
    let (older, newer, third) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    drop(provider.acquire(older).await.unwrap());
    drop(provider.acquire(newer).await.unwrap());
    // `older` is used again: now `newer` is the one used longest ago.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let used = provider.acquire(older).await.unwrap();
    used.sandbox.run("true", TIMEOUT).await.unwrap();
    drop(used);
    drop(provider.acquire(third).await.unwrap());
    let mut running: Vec<Uuid> = provider
        .inventory(false)
        .await
        .unwrap()
        .into_iter()
        .filter(|sandbox| sandbox.running)
        .filter_map(|sandbox| sandbox.project_id)
        .collect();
    running.sort();
    let mut expected = vec![older, third];
    expected.sort();
    assert_eq!(
        running, expected,
        "the least recently used ({newer}) was stopped"
    );
    drop(cleanup);
}

#[tokio::test(flavor = "multi_thread")]
async fn commands_go_through_one_runner_per_container_instead_of_an_exec_each() {
    let (provider, cleanup) = provider(test_config()).await;
    let sandbox = provider.acquire(Uuid::now_v7()).await.unwrap().sandbox;
    for _ in 0..3 {
        let parent = sandbox
            .run("tr '\\0' ' ' < /proc/$PPID/cmdline", TIMEOUT)
            .await
            .unwrap();
        assert!(
            parent.stdout.contains("codeflux-runner"),
            "the command's parent is the runner: {parent:?}"
        );
    }
    // Another handle on the same container shares its runner.
    let again = provider
        .acquire(sandbox_project(&provider).await)
        .await
        .unwrap();
    again.sandbox.run("true", TIMEOUT).await.unwrap();
    let runners = sandbox
        .run(
            r"for p in /proc/[0-9]*; do tr '\0' ' ' < $p/cmdline 2>/dev/null; echo; done | grep -c '^node /usr/local/lib/codeflux-runner'",
            TIMEOUT,
        )
        .await
        .unwrap();
    assert_eq!(runners.stdout.trim(), "1", "{runners:?}");
    drop(cleanup);
}

/// The project of the only sandbox `provider` has.
async fn sandbox_project(provider: &codeflux::sandbox::docker::DockerProvider) -> Uuid {
    let listed = provider.inventory(false).await.unwrap();
    assert_eq!(listed.len(), 1);
    listed[0].project_id.unwrap()
}

/// A warm sandbox that dies while its dev server starts is removed and replaced; nothing
/// is left behind and the pool still fills.
#[tokio::test(flavor = "multi_thread")]
async fn a_warm_sandbox_that_fails_while_warming_is_replaced() {
    let mut config = test_config();
    config.pool = 1;
    let (provider, cleanup) = provider(config).await;
    let pool = provider.spawn_pool().unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    let first = loop {
        let warm: Vec<_> = provider
            .inventory(false)
            .await
            .unwrap()
            .into_iter()
            .filter(|sandbox| sandbox.warm && sandbox.running)
            .collect();
        if let Some(sandbox) = warm.first() {
            break sandbox.container_id.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no warm sandbox was started"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(provider.warm_ready(), 0, "killed before it was ready");
    let killed = std::process::Command::new("docker")
        .args(["kill", &first])
        .output()
        .unwrap();
    assert!(killed.status.success(), "{killed:?}");
    eventually("a replacement warm sandbox", || provider.warm_ready() == 1).await;
    let listed = provider.inventory(false).await.unwrap();
    assert_eq!(listed.len(), 1, "the failed one was removed: {listed:?}");
    assert_ne!(listed[0].container_id, first);
    pool.abort();
    drop(cleanup);
}

#[tokio::test(flavor = "multi_thread")]
async fn warm_sandboxes_left_by_an_earlier_server_are_discarded_at_start() {
    let mut config = test_config();
    config.pool = 1;
    let (earlier, cleanup) = provider(config.clone()).await;
    let pool = earlier.spawn_pool().unwrap();
    eventually("the first warm sandbox", || earlier.warm_ready() == 1).await;
    // The earlier server dies without cleaning up (kill -9): its warm sandbox stays.
    pool.abort();
    let leftover = earlier.inventory(false).await.unwrap()[0]
        .container_id
        .clone();
    drop(earlier);

    // It may come from another template image; the next server starts its pool afresh.
    let (next, _) = provider(config).await;
    let pool = next.spawn_pool().unwrap();
    eventually("a new warm sandbox", || next.warm_ready() == 1).await;
    let listed = next.inventory(false).await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert!(listed[0].warm);
    assert_ne!(listed[0].container_id, leftover, "the leftover was removed");
    pool.abort();
    drop(cleanup);
}
