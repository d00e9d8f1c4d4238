//! A model's installs never kill the sandbox, on the real Docker engine with the scripted
//! model: pinned Next.js/React majors are refused before npm runs (in commands and in a
//! written package.json), a stale peer range installs, and a dev server that is killed is
//! reported to the model and comes back while the container lives on.

mod support;

use std::sync::Arc;

use serde_json::json;
use support::docker_env::{Cleanup, containers_of, provider, test_config, wait_for_text};
use support::fake_llm::{FakeLlm, Reply};
use support::harness::Harness;

type Provider = Arc<codeflux::sandbox::docker::DockerProvider>;

async fn checked_server(fake: FakeLlm) -> (Harness, Cleanup, u16, Provider) {
    let (provider, cleanup) = provider(test_config()).await;
    let docker = provider.clone();
    let preview_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let preview_port = preview_listener.local_addr().unwrap().port();
    let sandboxes: Arc<dyn codeflux::sandbox::SandboxProvider> = provider;
    let server = Harness::start_with_provider(fake, sandboxes, preview_listener, move |settings| {
        settings.agent.verify = true;
        settings.agent.fix_attempts = 2;
        // npm installs and a dev server's first compile take longer than the usual test limit.
        settings.agent.command_timeout = std::time::Duration::from_secs(300);
        settings.preview_url_template = format!("http://{{project}}.localhost:{preview_port}");
    })
    .await;
    (server, cleanup, preview_port, docker)
}

/// Runs `command` in the project's sandbox and returns its stdout.
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

async fn preview_shows(project: &str, preview_port: u16, text: &str) {
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    wait_for_text(
        &client,
        &format!("http://127.0.0.1:{preview_port}/"),
        Some(&format!("{project}.localhost:{preview_port}")),
        text,
    )
    .await;
}

/// What a v0 app asks for, written through the tools as a model would: its install pins
/// Next.js 14 and React 18 next to a package whose peer range stops at React 18, and its
/// package.json pins them too.
#[tokio::test(flavor = "multi_thread")]
async fn an_app_that_pins_other_versions_is_refused_those_and_installs_the_rest() {
    let fake = FakeLlm::start().await;
    let nonce = format!("drawer-{}", uuid::Uuid::now_v7().simple());
    let v0_manifest = json!({
        "name": "my-v0-project", "private": true,
        "dependencies": { "next": "14.2.16", "react": "^18", "react-dom": "^18", "vaul": "^0.9.9" }
    });
    fake.push_all([
        Reply::terminal("npm install next@14 react@^18 react-dom@^18 vaul@^0.9.9"),
        Reply::write("package.json", &serde_json::to_string_pretty(&v0_manifest).unwrap()),
        // vaul 0.9.9 names React ^16.8 || ^17 || ^18 as its peer: ERESOLVE without
        // legacy-peer-deps, and npm would then install nothing at all.
        Reply::terminal("npm install vaul@^0.9.9 @vercel/analytics"),
        Reply::write(
            "app/page.tsx",
            &format!(
                "\"use client\";\n\nimport {{ Drawer }} from \"vaul\";\n\nexport default function Page() {{\n  return (\n    <main>\n      <h1>{nonce}</h1>\n      <Drawer.Root>\n        <Drawer.Trigger>Open</Drawer.Trigger>\n      </Drawer.Root>\n    </main>\n  );\n}}\n"
            ),
        ),
        Reply::summary("A page with a drawer."),
    ]);
    let (server, cleanup, preview_port, provider) = checked_server(fake).await;
    let project = server.create("a page with a drawer").await;
    let answer = server.last_message(&project).await;
    assert_eq!(answer["type"], "result", "{answer}");

    let said = server.fake.said_to_model();
    assert!(
        said[1].contains("Refused before anything ran")
            && said[1].contains("next@14, react@^18, react-dom@^18")
            && said[1].contains("Next.js 15.3.3 with React 19.1.0"),
        "the pinned install is refused with what the sandbox runs: {}",
        said[1]
    );
    assert!(
        said[2].contains("package.json was not written")
            && said[2].contains("\"next\": \"14.2.16\""),
        "{}",
        said[2]
    );
    assert!(
        said[3].starts_with("Command succeeded"),
        "the stale peer range installs: {}",
        said[3]
    );
    // New packages load without a restart.
    assert!(!said[3].contains("restarted"), "{}", said[3]);
    assert_eq!(
        answer["fragment"]["verification"]["status"], "passed",
        "{answer}"
    );
    preview_shows(&project, preview_port, &nonce).await;

    // The sandbox still runs the template's Next.js and React, and now has vaul. recharts'
    // peer react-is is still there: with legacy-peer-deps npm prunes peers that nothing
    // names, so the template names it.
    let versions = in_sandbox(
        &provider,
        &project,
        "node -p \"['next','react','react-is','vaul'].map(p => require('./node_modules/' + p + '/package.json').version).join(' ')\"",
    )
    .await;
    assert!(
        versions.starts_with("15.3.3 19.1.0 19.3.1 0.9."),
        "{versions}"
    );
    drop(server);
    drop(cleanup);
}

/// A job that writes a page, waits for the dev server, runs `command` and sums up (twice
/// scripted: the check may send it back once).
struct PageJob {
    server: Harness,
    cleanup: Cleanup,
    provider: Provider,
    project: String,
    preview_port: u16,
    nonce: String,
    answer: serde_json::Value,
    /// What the model was told, in order.
    said: Vec<String>,
}

async fn page_then(command: &str) -> PageJob {
    let fake = FakeLlm::start().await;
    let nonce = format!("page-{}", uuid::Uuid::now_v7().simple());
    fake.push_all([
        Reply::write(
            "app/page.tsx",
            &format!("export default function Page() {{\n  return <main>{nonce}</main>;\n}}\n"),
        ),
        // The agent may start while the dev server is still starting: wait until it answers,
        // so that there is a dev server for the command to act on.
        Reply::terminal(
            "curl -s -o /dev/null --retry 120 --retry-connrefused --retry-delay 1 http://127.0.0.1:3000/",
        ),
        Reply::terminal(command),
        Reply::summary("A page."),
        // Only used when the check sends the app back (an exit it reports).
        Reply::summary("A page, with the dev server left alone."),
    ]);
    let (server, cleanup, preview_port, provider) = checked_server(fake).await;
    let project = server.create("a page").await;
    let answer = server.last_message(&project).await;
    assert_eq!(answer["type"], "result", "{answer}");
    let said = server.fake.said_to_model();
    PageJob {
        server,
        cleanup,
        provider,
        project,
        preview_port,
        nonce,
        answer,
        said,
    }
}

impl PageJob {
    /// The check passed in the end and the preview shows the page.
    async fn passed_and_shows_the_page(self) {
        assert_eq!(
            self.answer["fragment"]["verification"]["status"], "passed",
            "{}",
            self.answer
        );
        preview_shows(&self.project, self.preview_port, &self.nonce).await;
        drop(self.server);
        drop(self.cleanup);
    }
}

/// `pkill -f next` stops the dev server; the supervisor restarts it, the model hears of it
/// with the log, and the check passes once it is back. The container never stops.
#[tokio::test(flavor = "multi_thread")]
async fn a_killed_dev_server_is_reported_and_comes_back() {
    let job = page_then("pkill -f next").await;
    let inside = in_sandbox(
        &job.provider,
        &job.project,
        "cat /tmp/codeflux-dev-server.json; echo; tail -n 5 /tmp/codeflux-dev.log; ps -eo pid,user,args",
    )
    .await;
    let said = &job.said;
    let told = said
        .iter()
        .find(|text| text.contains("The dev server exited"))
        .unwrap_or_else(|| {
            panic!("the model was told the dev server exited: {said:#?}\nin the sandbox:\n{inside}")
        });
    assert!(
        told.contains("codeflux: the dev server exited"),
        "with the log's last lines: {told}"
    );
    assert_eq!(
        support::docker_env::running_containers_of(&job.cleanup.instance),
        1,
        "the sandbox outlived its dev server"
    );
    assert_eq!(containers_of(&job.cleanup.instance), 1);
    job.passed_and_shows_the_page().await;
}

/// An install that changes package.json and leaves the dev server unable to answer (here it
/// is frozen with SIGSTOP) gets the dev server restarted, and the model is told.
#[tokio::test(flavor = "multi_thread")]
async fn an_install_that_leaves_the_dev_server_unanswering_restarts_it() {
    let job = page_then("npm install left-pad && pkill -STOP -f '[n]ext-server'").await;
    assert!(
        job.said[3].starts_with("Command succeeded")
            && job.said[3].contains("package.json changed, so the dev server was restarted"),
        "{:#?}",
        job.said
    );
    job.passed_and_shows_the_page().await;
}

/// A page that shows what the `is-number` package says, so the preview proves it loaded
/// (one text node: React separates neighbouring ones with comments).
fn page_using_is_number(nonce: &str) -> String {
    format!(
        "import isNumber from \"is-number\";\n\nexport default function Page() {{\n  return <main>{{\"{nonce} is-number says \" + String(isNumber(5))}}</main>;\n}}\n"
    )
}

/// The packages the agent installs are part of the version (package.json and the
/// lockfile): a new sandbox (after the old one was reaped) installs them before it serves
/// the app, a version without them leaves them out, and restoring the version that had
/// them installs them again.
#[tokio::test(flavor = "multi_thread")]
async fn packages_the_agent_installed_come_back_in_a_new_sandbox_and_with_a_restore() {
    let fake = FakeLlm::start().await;
    let nonce = format!("packages-{}", uuid::Uuid::now_v7().simple());
    fake.push_all([
        Reply::terminal("npm install is-number@7.0.0"),
        Reply::write("app/page.tsx", &page_using_is_number(&nonce)),
        Reply::summary("A page that asks is-number."),
        Reply::summary("A page that asks is-number, checked."),
    ]);
    let (server, _cleanup, preview_port, provider) = checked_server(fake).await;
    let project = server.create("a page that uses is-number").await;
    let answer = server.last_message(&project).await;
    assert_eq!(answer["type"], "result", "{answer}");
    let files = &answer["fragment"]["files"];
    assert!(
        files["package.json"]
            .as_str()
            .unwrap_or_default()
            .contains("\"is-number\""),
        "the version carries the manifest npm changed: {}",
        files["package.json"]
    );
    assert!(
        files["package-lock.json"]
            .as_str()
            .unwrap_or_default()
            .contains("node_modules/is-number"),
        "and the lockfile"
    );
    preview_shows(&project, preview_port, "is-number says true").await;

    // The sandbox goes (as the reaper would take it); a visit brings a new one.
    use codeflux::sandbox::SandboxProvider;
    provider.release(project.parse().unwrap()).await.unwrap();
    preview_shows(
        &project,
        preview_port,
        &format!("{nonce} is-number says true"),
    )
    .await;
    let installed = in_sandbox(
        &provider,
        &project,
        "node -p \"require('./node_modules/is-number/package.json').version\"",
    )
    .await;
    assert_eq!(installed, "7.0.0");

    // v2 removes the package: its version no longer names it.
    let plain = format!("plain-{nonce}");
    server.fake.push_all([
        Reply::write(
            "app/page.tsx",
            &format!("export default function Page() {{\n  return <main>{plain}</main>;\n}}\n"),
        ),
        Reply::terminal("npm uninstall is-number"),
        Reply::summary("A plain page."),
        Reply::summary("A plain page, checked."),
    ]);
    server.follow_up(&project, "drop is-number").await;
    let answer = server.last_message(&project).await;
    assert_eq!(answer["type"], "result", "{answer}");
    let files = &answer["fragment"]["files"];
    for name in ["package.json", "package-lock.json"] {
        assert!(
            !files[name]
                .as_str()
                .unwrap_or_default()
                .contains("is-number"),
            "{name}: {}",
            files[name]
        );
    }
    preview_shows(&project, preview_port, &plain).await;

    // Restoring v1 brings its package back into the running sandbox.
    let (_, versions) = server
        .get(&format!("/api/projects/{project}/versions"))
        .await;
    let v1 = versions[0]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{versions}"))
        .to_string();
    let (status, restored) = server
        .post(
            &format!("/api/projects/{project}/versions/{v1}/restore"),
            json!({}),
        )
        .await;
    assert_eq!(status, 201, "{restored}");
    preview_shows(
        &project,
        preview_port,
        &format!("{nonce} is-number says true"),
    )
    .await;
    provider.release(project.parse().unwrap()).await.unwrap();
}
