//! Publishing on the real engine: the todo app's production build at its stable address,
//! with data of its own; a republish under load with no failed request; a failed build
//! that leaves the running version alone; CodeFlux restarted and the dev sandbox stopped
//! while the app keeps answering; an exported image run by plain `docker run`; unpublish.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::json;
use support::docker_env::{docker_cli, run_image, wait_for_text};
use support::fake_llm::Reply;
use support::publishing::{Publishing, app_containers, titles};
use support::todo_app::page;

#[tokio::test(flavor = "multi_thread")]
async fn a_published_app_runs_in_production_swaps_without_failures_and_outlives_codeflux() {
    let setup = Publishing::start().await;
    let project = setup.todos().build("Todos v1").await;
    setup.todos().add(&project, "Only in development").await;

    // v1: the production build, at the app's own address, with a copy of v1's data.
    let published = setup.publish(&project, 1).await;
    assert_eq!(published["status"], "running", "{published:#}");
    assert_eq!(published["version"], 1);
    let name = published["name"].as_str().unwrap().to_string();
    assert_eq!(
        published["url"],
        format!("http://{name}.apps.localhost:{}/", setup.preview_port)
    );
    let html = setup.app_page_shows(&name, "Todos v1").await;
    assert!(
        html.contains("Buy milk"),
        "the seed migration's row: {html}"
    );
    assert!(!html.contains("__codeflux"), "no picker script: {html}");
    assert!(!html.contains("data-cf-loc"), "no source tags: {html}");
    assert_eq!(app_containers(&project).len(), 1);
    in_chromium(&setup, &project, &name).await;

    // Its data is its own: a row written there is not in the project's development data.
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let written = client
        .post(format!("{}api/todos", setup.app_url()))
        .header("host", setup.app_host(&name))
        .json(&json!({ "title": "Published row" }))
        .send()
        .await
        .unwrap();
    assert_eq!(written.status(), 201, "{:?}", written.text().await);
    assert!(
        !setup
            .todos()
            .titles(&project)
            .await
            .contains(&"Published row".to_string())
    );

    // v2 replaces v1 while a client asks every 50 ms: not one request fails.
    setup.new_version(&project, &page("Todos v2")).await;
    let polling = Arc::new(AtomicBool::new(true));
    let failures = Arc::new(AtomicUsize::new(0));
    let answered = Arc::new(AtomicUsize::new(0));
    let poller = tokio::spawn({
        let (polling, failures, answered) = (polling.clone(), failures.clone(), answered.clone());
        let (url, host) = (setup.app_url(), setup.app_host(&name));
        let client = client.clone();
        async move {
            let mut seen = Vec::new();
            while polling.load(Ordering::SeqCst) {
                match client.get(&url).header("host", &host).send().await {
                    Ok(response) if response.status() == 200 => {
                        answered.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(response) => {
                        failures.fetch_add(1, Ordering::SeqCst);
                        seen.push(response.status().to_string());
                    }
                    Err(error) => {
                        failures.fetch_add(1, Ordering::SeqCst);
                        seen.push(error.to_string());
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            seen
        }
    });
    // This one through the CLI, by the project's name, as a person would.
    let slug = setup
        .server
        .get(&format!("/api/projects/{project}"))
        .await
        .1["name"]
        .as_str()
        .unwrap()
        .to_string();
    let cli = tokio::process::Command::new(env!("CARGO_BIN_EXE_codeflux"))
        .args([
            "publish",
            &slug,
            "--version",
            "2",
            "--server",
            &setup.server.base,
        ])
        .env_remove("CODEFLUX_AUTH_TOKEN")
        .output()
        .await
        .unwrap();
    let said = String::from_utf8_lossy(&cli.stdout);
    assert!(
        cli.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&cli.stderr)
    );
    assert!(
        said.contains(&format!("Running v2 at http://{name}.apps.localhost")),
        "{said}"
    );
    let published = setup.publish_ended(&project).await;
    polling.store(false, Ordering::SeqCst);
    let seen = poller.await.unwrap();
    assert_eq!(published["status"], "running", "{published:#}");
    assert_eq!(published["version"], 2);
    assert_eq!(
        failures.load(Ordering::SeqCst),
        0,
        "failed requests: {seen:?}"
    );
    assert!(answered.load(Ordering::SeqCst) > 20);
    let html = setup.app_page_shows(&name, "Todos v2").await;
    assert!(
        html.contains("Published row"),
        "republishing keeps the data: {html}"
    );
    assert_eq!(
        app_containers(&project).len(),
        1,
        "the old container is gone"
    );
    let image = published["image"].as_str().unwrap().to_string();

    // The Data tab's published side: the app's rows, not the project's.
    let (status, data) = setup
        .server
        .get(&format!("/api/projects/{project}/data?of=published"))
        .await;
    assert_eq!(status, 200, "{data}");
    assert_eq!(data["source"], "published", "{data}");
    assert_eq!(data["version"], 2, "{data}");
    let titles = titles(&setup.published_rows(&project, "todos").await);
    assert!(
        titles.contains(&"Published row".to_string())
            && titles.contains(&"From Chromium".to_string()),
        "{titles:?}"
    );
    assert!(
        !titles.contains(&"Only in development".to_string()),
        "{titles:?}"
    );
    let panel = setup
        .server
        .page(&format!("/projects/{project}/data-panel?of=published"))
        .await;
    assert!(
        panel.contains("Live from the published app (v2)") && panel.contains("Published row"),
        "{panel}"
    );

    // `codeflux apps` and the home page list it.
    let listed = std::process::Command::new(env!("CARGO_BIN_EXE_codeflux"))
        .args(["apps", "--server", &setup.server.base])
        .env_remove("CODEFLUX_AUTH_TOKEN")
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout);
    let row = listed
        .lines()
        .find(|line| line.starts_with(&name))
        .unwrap_or_else(|| panic!("{listed}"));
    assert!(
        row.contains(" v2 ") && row.contains("running") && row.contains("MiB"),
        "{listed}"
    );
    let home = setup.server.page("/").await;
    assert!(
        home.contains("Published apps") && home.contains(published["url"].as_str().unwrap()),
        "{home}"
    );

    // v3 reads the database in a page that is not dynamic: its build fails, v2 stays.
    let static_page = page("Todos v3").replace("export const dynamic = \"force-dynamic\";\n", "");
    setup.new_version(&project, &static_page).await;
    let failed = setup.publish(&project, 3).await;
    assert_eq!(failed["status"], "failed", "{failed:#}");
    assert_eq!(failed["version"], 2, "{failed:#}");
    let log = failed["log"].as_str().unwrap_or_default();
    assert!(log.contains("force-dynamic"), "the log says why: {log}");
    setup.app_page_shows(&name, "Todos v2").await;
    // "Fix the build" sends that log to the agent as a follow-up.
    setup.server.fake.clear();
    setup.server.fake.push_all(vec![
        Reply::write("app/page.tsx", &page("Todos v4")),
        Reply::summary("Made the page dynamic again."),
        Reply::summary("Made the page dynamic again, checked."),
    ]);
    let (status, _) = setup
        .server
        .htmx_post(&format!("/projects/{project}/publish/fix"), Ok(&[]))
        .await;
    assert_eq!(status, 200);
    let (_, detail) = setup.server.get(&format!("/api/projects/{project}")).await;
    let asked = detail["messages"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|message| message["role"] == "user")
        .unwrap()["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        asked.starts_with("Publishing failed") && asked.contains("force-dynamic"),
        "{asked}"
    );
    assert_eq!(setup.server.last_message(&project).await["type"], "result");

    // CodeFlux restarts: the app answers again, without a rebuild.
    let setup = setup.restart().await;
    setup.app_page_shows(&name, "Todos v2").await;
    let (_, detail) = setup.server.get(&format!("/api/projects/{project}")).await;
    assert_eq!(detail["published"]["image"], image.as_str());

    // The dev sandbox stops: the app does not care.
    let sandboxes = docker_cli(&[
        "ps",
        "-q",
        "--filter",
        &format!("label=codeflux.project={project}"),
    ]);
    for id in sandboxes.split_whitespace() {
        docker_cli(&["stop", "-t", "1", id]);
    }
    setup.app_page_shows(&name, "Published row").await;

    // `GET /api/apps` lists it with its memory.
    let (status, apps) = setup.server.get("/api/apps").await;
    assert_eq!(status, 200, "{apps}");
    let listed = &apps["apps"][0];
    assert_eq!(listed["name"], name.as_str(), "{apps}");
    assert!(
        listed["memory_bytes"].as_u64().unwrap_or(0) > 1024 * 1024,
        "{apps}"
    );

    // `codeflux export` makes an image, a tarball and a compose file; the tarball, loaded
    // into an engine without the image, runs with plain `docker run`.
    let exported = format!("codeflux-test-export-{}:v2", &project[..8]);
    let out = tempfile::tempdir().unwrap();
    let tarball = out.path().join("app.tar");
    let cli = tokio::process::Command::new(env!("CARGO_BIN_EXE_codeflux"))
        .args([
            "export",
            &slug,
            "--version",
            "2",
            "--image",
            &exported,
            "--server",
            &setup.server.base,
        ])
        .arg("--tar")
        .arg(&tarball)
        .arg("--compose")
        .arg(out.path())
        .env_remove("CODEFLUX_AUTH_TOKEN")
        .output()
        .await
        .unwrap();
    let said = String::from_utf8_lossy(&cli.stdout);
    assert!(
        cli.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&cli.stderr)
    );
    let compose = std::fs::read_to_string(out.path().join("docker-compose.yml")).unwrap();
    assert!(compose.contains(&format!("image: {exported}")), "{compose}");
    docker_cli(&["rmi", &exported]);
    let loaded = docker_cli(&["load", "-i", &tarball.display().to_string()]);
    assert!(loaded.contains(&exported), "{loaded}");
    let (run, port) = run_image(&exported, &setup.engine.config().instance);
    let html = wait_for_text(
        &client,
        &format!("http://127.0.0.1:{port}/"),
        None,
        "Todos v2",
    )
    .await;
    assert!(html.contains("Buy milk"));
    let user = docker_cli(&["exec", &run, "id", "-u"]);
    assert_eq!(user, "10001", "the exported app runs unprivileged");
    docker_cli(&["rm", "-f", &run]);
    docker_cli(&["rmi", &exported]);

    // Unpublish: the container goes, the address answers 404.
    let response = setup
        .server
        .http
        .delete(format!(
            "{}/api/projects/{project}/publish",
            setup.server.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    assert!(app_containers(&project).is_empty());
    let gone = client
        .get(setup.app_url())
        .header("host", setup.app_host(&name))
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 404);

    // The data volume stays for a later publish, until the project is deleted.
    let volumes = || {
        docker_cli(&[
            "volume",
            "ls",
            "-q",
            "--filter",
            &format!("name=codeflux-{}-app-", setup.engine.config().instance),
        ])
    };
    assert!(!volumes().is_empty());
    let deleted = setup
        .server
        .http
        .delete(format!("{}/api/projects/{project}", setup.server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    assert!(
        volumes().is_empty(),
        "deleting the project removes its app's data"
    );
}

/// The person's side: the project page shows the published app, and its address opens in
/// Chromium as a production page whose form (a server action) writes to its own data.
async fn in_chromium(setup: &Publishing, project: &str, name: &str) {
    use support::chromium::{browser, click, screenshot, type_into, wait_for};

    let (client, _driver) = browser().await;
    client
        .goto(&format!("{}/projects/{project}", setup.server.base))
        .await
        .unwrap();
    wait_for(
        &client,
        "the publish panel shows the address",
        &format!(
            "return !!document.querySelector('#publish-panel a[href^=\"http://{name}.apps.localhost\"]');"
        ),
    )
    .await;
    screenshot(&client, "published").await;
    client
        .goto(&format!(
            "http://{name}.apps.localhost:{}/",
            setup.preview_port
        ))
        .await
        .unwrap();
    wait_for(
        &client,
        "the published page",
        "return document.body && document.body.innerText.includes('Buy milk');",
    )
    .await;
    let tagged: bool = client
        .execute(
            "return !!document.querySelector('[data-cf-loc]') || [...document.scripts].some((s) => (s.src || '').includes('__codeflux'));",
            vec![],
        )
        .await
        .unwrap()
        .as_bool()
        .unwrap();
    assert!(!tagged, "no source tags and no picker in production");
    type_into(&client, "input[name=title]", "From Chromium").await;
    click(&client, "button[type=submit]").await;
    wait_for(
        &client,
        "the new row after the server action",
        "return document.body.innerText.includes('From Chromium');",
    )
    .await;
    client.close().await.unwrap();
}
