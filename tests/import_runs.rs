//! An imported app runs as itself: its packages (its own Next.js, React and Tailwind) are
//! installed by the project's first job, with `npm ci` from its lockfile, in a sandbox
//! cleared of the template's files; the preview serves it, its client-side JavaScript runs
//! in Chromium, and a follow-up works on it. An install that fails says why, and "Fix the
//! install" sends that to the agent.

mod support;

use std::path::Path;
use std::sync::Arc;

use serde_json::Value;
use support::checks::events_of;
use support::docker_env::{Cleanup, provider, test_config, wait_for_text};
use support::fake_llm::{FakeLlm, Reply};
use support::harness::Harness;

type Provider = Arc<codeflux::sandbox::docker::DockerProvider>;

/// A zip of the folder's files, all under one top folder (as GitHub's downloads are).
fn zip_of_folder(root: &Path, top: &str) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let relative = path.strip_prefix(root).unwrap().to_string_lossy();
            writer
                .start_file(format!("{top}/{relative}"), options)
                .unwrap();
            std::io::Write::write_all(&mut writer, &std::fs::read(&path).unwrap()).unwrap();
        }
    }
    writer.finish().unwrap().into_inner()
}

async fn import_zip(server: &Harness, zip: Vec<u8>) -> String {
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(zip).file_name("app.zip"),
    );
    let response = server
        .http
        .post(format!("{}/api/projects/import", server.base))
        .multipart(form)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    assert_eq!(status, 201, "{body}");
    body["id"].as_str().unwrap().to_string()
}

async fn in_sandbox(provider: &Provider, project: &str, command: &str) -> String {
    use codeflux::sandbox::SandboxProvider;
    let acquired = provider.acquire(project.parse().unwrap()).await.unwrap();
    let output = acquired
        .sandbox
        .run(command, std::time::Duration::from_secs(60))
        .await
        .unwrap();
    assert!(output.success(), "{command}: {output:?}");
    output.stdout.trim().to_string()
}

async fn docker_server() -> (Harness, Cleanup, u16, Provider) {
    let (provider, cleanup) = provider(test_config()).await;
    let docker = provider.clone();
    let preview_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let preview_port = preview_listener.local_addr().unwrap().port();
    let sandboxes: Arc<dyn codeflux::sandbox::SandboxProvider> = provider;
    let server = Harness::start_with_provider(
        FakeLlm::start().await,
        sandboxes,
        preview_listener,
        move |settings| {
            settings.preview_url_template = format!("http://{{project}}.localhost:{preview_port}");
        },
    )
    .await;
    (server, cleanup, preview_port, docker)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_next_14_app_with_tailwind_3_runs_on_its_own_packages_and_takes_a_follow_up() {
    let (server, _cleanup, preview_port, provider) = docker_server().await;
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/next14-tailwind3");
    let project = import_zip(&server, zip_of_folder(&fixture, "habit-board-main")).await;

    // The install job: its packages, exactly as locked, then its first start.
    let settled = server.settled(&project).await;
    let messages = settled["messages"].as_array().unwrap();
    let (_, events) = server.get(&format!("/api/projects/{project}/events")).await;
    assert_eq!(messages.len(), 2, "{settled:#}\n{events:#}");
    let answer = &messages[1];
    assert_eq!(answer["type"], "result", "{answer}\n{events:#}");
    let said = answer["content"].as_str().unwrap();
    assert!(
        said.contains("npm ci") && said.contains("HTTP 200"),
        "{said}"
    );
    let installed = events_of(&events, "packages_installed");
    assert_eq!(installed.len(), 1, "{events:#}");
    assert_eq!(installed[0]["ok"], true);
    assert_eq!(events_of(&events, "check_passed").len(), 1, "{events:#}");

    let inside = in_sandbox(
        &provider,
        &project,
        "node -p \"require('next/package.json').version + ' ' + require('react/package.json').version + ' ' + require('tailwindcss/package.json').version\"; \
         test ! -e app && test ! -e components && test ! -e next.config.ts && echo cleared",
    )
    .await;
    assert_eq!(
        inside, "14.2.35 18.3.1 3.4.17\ncleared",
        "its own packages, none of the template's files"
    );

    // The preview serves it, styled by its Tailwind 3 config, with its public files.
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let preview = format!("http://127.0.0.1:{preview_port}");
    let host = format!("{project}.localhost:{preview_port}");
    let html = wait_for_text(
        &client,
        &format!("{preview}/"),
        Some(&host),
        "Habit board from Next 14",
    )
    .await;
    // In development the Pages Router ships the app's CSS inside `_app`'s chunk.
    assert!(
        html.contains("/_next/static/chunks/pages/_app.js"),
        "{html}"
    );
    let styles = wait_for_text(
        &client,
        &format!("{preview}/_next/static/chunks/pages/_app.js"),
        Some(&host),
        ".text-emerald-700",
    )
    .await;
    assert!(
        styles.contains(".mx-auto"),
        "Tailwind 3 generated the page's classes"
    );
    wait_for_text(
        &client,
        &format!("{preview}/check.svg"),
        Some(&host),
        "<svg",
    )
    .await;

    // Text that only client-side JavaScript renders shows in a real browser.
    {
        use support::chromium::{browser, click, wait_for, wait_for_preview};
        let (browser, _driver) = browser().await;
        browser.goto(&format!("http://{host}/")).await.unwrap();
        wait_for(
            &browser,
            "the text rendered by the page's JavaScript",
            "return document.body.innerText.includes('Rendered in the browser')",
        )
        .await;
        // Its pages carry no source tags, so the element picker says it is not available.
        browser
            .goto(&format!("{}/projects/{project}", server.base))
            .await
            .unwrap();
        wait_for_preview(&browser, "Rendered in the browser").await;
        click(&browser, "#select-toggle").await;
        wait_for(
            &browser,
            "the picker's answer",
            "return (document.querySelector('#select-hint') || {}).textContent.includes('not available for this project')",
        )
        .await;
        let pressed = browser
            .execute(
                "return document.querySelector('#select-toggle').getAttribute('aria-pressed')",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(pressed, "false", "select mode does not stay on");
        let _ = browser.close().await;
    }

    // A follow-up: the model hears the app is imported, and its change is served.
    server.fake.push_all([
        Reply::write(
            "pages/index.js",
            "export default function Home() {\n  return <main className=\"p-8\"><h1>Habit board, edited</h1></main>;\n}\n",
        ),
        Reply::summary("Edited the imported home page."),
    ]);
    server.follow_up(&project, "change the heading").await;
    let answer = server.last_message(&project).await;
    assert_eq!(answer["type"], "result", "{answer}");
    let sent = server.fake.agent_requests()[0]["messages"].to_string();
    assert!(sent.contains("This app was imported"), "{sent}");
    assert!(
        sent.contains("Next.js 14.2.35 with the Pages Router"),
        "{sent}"
    );
    wait_for_text(
        &client,
        &format!("{preview}/"),
        Some(&host),
        "Habit board, edited",
    )
    .await;
    use codeflux::sandbox::SandboxProvider;
    provider.release(project.parse().unwrap()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_install_that_fails_says_why_and_fix_the_install_sends_it_to_the_agent() {
    let server = Harness::start().await;
    let manifest = r#"{"name":"broken","dependencies":{"next":"14.2.35","react":"18.3.1","react-dom":"18.3.1","left-pad":"99.99.99"}}"#;
    let page = "export default function Home() {\n  return <main>Broken</main>;\n}\n";
    let zip = {
        let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let options = zip::write::SimpleFileOptions::default();
        for (name, content) in [("package.json", manifest), ("pages/index.js", page)] {
            writer.start_file(name, options).unwrap();
            std::io::Write::write_all(&mut writer, content.as_bytes()).unwrap();
        }
        writer.finish().unwrap().into_inner()
    };
    let project = import_zip(&server, zip).await;
    let answer = server.last_message(&project).await;
    assert_eq!(answer["type"], "error", "{answer}");
    let said = answer["content"].as_str().unwrap();
    assert!(
        said.starts_with("The app's packages could not be installed")
            && said.contains("`npm install --no-audit --no-fund` failed")
            && said.contains("left-pad"),
        "{said}"
    );
    let (_, events) = server.get(&format!("/api/projects/{project}/events")).await;
    let installed = events_of(&events, "packages_installed");
    assert_eq!(installed.len(), 1, "{events:#}");
    assert_eq!(installed[0]["ok"], false);

    let message = answer["id"].as_str().unwrap();
    let fix = format!("/projects/{project}/messages/{message}/fix");
    let page = server.page(&format!("/projects/{project}")).await;
    assert!(
        page.contains("Fix the install") && page.contains(&fix),
        "{page}"
    );
    // Only a failed install or start can be sent this way.
    let v1 = server.settled(&project).await["messages"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, _) = server
        .htmx_post(&format!("/projects/{project}/messages/{v1}/fix"), Ok(&[]))
        .await;
    assert_eq!(status, 422);

    server.fake.push_all([
        Reply::write(
            "package.json",
            r#"{"name":"broken","dependencies":{"next":"14.2.35","react":"18.3.1","react-dom":"18.3.1"}}"#,
        ),
        Reply::summary("Removed the version of left-pad that does not exist."),
    ]);
    let (status, _) = server.htmx_post(&fix, Ok(&[])).await;
    assert_eq!(status, 200);
    let answer = server.last_message(&project).await;
    assert_eq!(answer["type"], "result", "{answer}");
    let prompt = server.fake.agent_requests()[0]["messages"].to_string();
    assert!(
        prompt.contains("The imported app does not run in the sandbox yet")
            && prompt.contains("left-pad"),
        "the failure and its log reach the agent: {prompt}"
    );
}
