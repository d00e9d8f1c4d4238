//! A published app's data on the real engine: a first publish that starts empty when asked;
//! a republish whose migrations add a column and drop one, refused while the drop would lose
//! published rows and then accepted, the rows backed up first; `codeflux sandboxes prune`
//! next to a stopped app; a rename that moves the address at once; a build image left by a
//! crash removed at the next start. And an app made on E2B, published on the local engine,
//! or told that publishing needs Docker when none answers.

mod support;

use std::sync::Arc;

use codeflux::sandbox::SandboxProvider;
use codeflux::sandbox::e2b::E2bProvider;
use codeflux::sandbox::select::{Selected, publish_engine_on};
use codeflux::server::PublishEngine;
use serde_json::{Value, json};
use support::docker_env::{docker_cli, provider, test_config};
use support::fake_e2b::FakeE2b;
use support::fake_llm::Reply;
use support::harness::Harness;
use support::publishing::{BACKUP_EVERY, Publishing, app_containers, titles};
use support::todo_app::{SCHEMA, page};

/// The todo schema without `done` and with a `note`: one migration adds, one drops.
fn schema_with_note() -> String {
    SCHEMA
        .replace(
            "  done: boolean(\"done\").notNull().default(false),\n",
            "  note: text(\"note\").notNull().default(\"\"),\n",
        )
        .replace("boolean, ", "")
}

/// The app container has the sandboxes' limits and hardening, a restart policy, an
/// unprivileged user, and no sandbox label (so pruning and the idle reaper never list it).
fn assert_app_is_hardened(container: &str, config: &codeflux::sandbox::docker::DockerConfig) {
    let inspect = |format: &str| docker_cli(&["inspect", "--format", format, container]);
    assert_eq!(
        inspect("{{.HostConfig.RestartPolicy.Name}}"),
        "unless-stopped"
    );
    assert_eq!(
        inspect("{{.HostConfig.Memory}}"),
        (config.memory_mb * 1024 * 1024).to_string()
    );
    assert_eq!(
        inspect("{{.HostConfig.NanoCpus}}"),
        ((config.cpus * 1e9) as i64).to_string()
    );
    assert_eq!(
        inspect("{{.HostConfig.PidsLimit}}"),
        config.pids.to_string()
    );
    assert_eq!(inspect("{{.HostConfig.CapDrop}}"), "[ALL]");
    assert_eq!(inspect("{{.HostConfig.CapAdd}}"), "[]");
    assert!(
        inspect("{{.HostConfig.SecurityOpt}}").contains("no-new-privileges"),
        "{}",
        inspect("{{.HostConfig.SecurityOpt}}")
    );
    assert_eq!(
        inspect(r#"{{index .Config.Labels "codeflux.sandbox"}}"#),
        "",
        "an app is not a sandbox"
    );
    assert_eq!(docker_cli(&["exec", container, "id", "-u"]), "10001");
}

#[tokio::test(flavor = "multi_thread")]
async fn published_data_starts_empty_when_asked_and_a_dropping_republish_waits_for_consent() {
    let setup = Publishing::start().await;
    let project = setup.todos().build("Todos v1").await;
    setup.todos().add(&project, "Only in development").await;
    setup.todos().saved_rows(&project, 2).await;
    setup.new_version(&project, &page("Todos v2")).await;
    let (_, versions) = setup
        .server
        .get(&format!("/api/projects/{project}/versions"))
        .await;
    let v2 = versions[1]["id"].clone();
    let data = setup.todos().data(&project).await;
    let v2_data = data["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .find(|snapshot| snapshot["kind"] == "version" && snapshot["version_id"] == v2)
        .unwrap_or_else(|| panic!("no data snapshot of v2: {data}"));
    assert_eq!(
        v2_data["rows"], 2,
        "v2 was made with the development row, so a copy would carry it: {data}"
    );

    // A first publish that starts empty: the migrations' rows only, not v2's data.
    let published = setup
        .publish_with(&project, json!({ "version": 2, "data": "empty" }))
        .await;
    assert_eq!(published["status"], "running", "{published:#}");
    assert_eq!(published["data"], "empty", "{published:#}");
    let name = published["name"].as_str().unwrap().to_string();
    let html = setup.app_page_shows(&name, "Todos v2").await;
    assert_app_is_hardened(&app_containers(&project)[0], setup.engine.config());
    assert!(html.contains("Buy milk"), "the seed migration ran: {html}");
    assert!(!html.contains("Only in development"), "{html}");
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let written = client
        .post(format!("{}api/todos", setup.app_url()))
        .header("host", setup.app_host(&name))
        .json(&json!({ "title": "Written in production" }))
        .send()
        .await
        .unwrap();
    assert_eq!(written.status(), 201, "{:?}", written.text().await);

    // The schedule backs the changed data up, once: unchanged data makes no new backup.
    let published_backups = |data: &Value| -> Vec<u64> {
        data["snapshots"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|snapshot| snapshot["kind"] == "published")
            .map(|snapshot| snapshot["rows"].as_u64().unwrap())
            .collect()
    };
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(180);
    let backups = loop {
        let (_, data) = setup
            .server
            .get(&format!("/api/projects/{project}/data?of=published"))
            .await;
        let backups = published_backups(&data);
        if backups.last() == Some(&2) {
            break backups;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no scheduled backup of the 2 published rows: {data}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    };
    tokio::time::sleep(BACKUP_EVERY * 3).await;
    let (_, data) = setup
        .server
        .get(&format!("/api/projects/{project}/data?of=published"))
        .await;
    assert_eq!(published_backups(&data), backups, "{data}");

    // v3 adds `note` and drops `done` (the dev sandbox asks first, as for any drop).
    setup
        .follow_up(
            &project,
            "replace the done flag by a note",
            vec![
                Reply::write("db/schema.ts", &schema_with_note()),
                Reply::terminal("npm run db:push"),
                Reply::terminal("npm run db:push -- --accept-data-loss"),
                Reply::write("app/page.tsx", &page("Todos v3")),
                Reply::summary("Todos have a note instead of a done flag."),
                Reply::summary("Todos have a note instead of a done flag, checked."),
            ],
        )
        .await;

    // Publishing v3 is refused before anything is built: v2 keeps serving.
    let refused = setup.publish(&project, 3).await;
    assert_eq!(refused["status"], "failed", "{refused:#}");
    assert_eq!(refused["version"], 2, "{refused:#}");
    assert_eq!(refused["data_loss"]["version"], 3, "{refused:#}");
    let losses = refused["data_loss"]["losses"].as_array().unwrap();
    assert_eq!(losses.len(), 1, "{refused:#}");
    assert_eq!(losses[0]["what"], "column todos.done", "{refused:#}");
    assert_eq!(losses[0]["rows"], 2, "{refused:#}");
    assert!(refused["log"].is_null(), "nothing was built: {refused:#}");
    setup.app_page_shows(&name, "Written in production").await;
    let panel = setup
        .server
        .page(&format!("/projects/{project}/publish"))
        .await;
    assert!(
        panel.contains("column todos.done") && panel.contains("Publish v3 anyway"),
        "{panel}"
    );
    assert!(!panel.contains("Fix the build"), "no build failed: {panel}");

    // "Publish v3 anyway": the published rows are backed up while requests are held, then
    // the new schema is applied to them.
    let (status, panel) = setup
        .server
        .htmx_post(
            &format!("/projects/{project}/publish"),
            Ok(&[("version", "3"), ("accept_data_loss", "true")]),
        )
        .await;
    assert_eq!(status, 200, "{panel}");
    let published = setup.publish_ended(&project).await;
    assert_eq!(published["status"], "running", "{published:#}");
    assert_eq!(published["version"], 3, "{published:#}");
    assert!(published.get("data_loss").is_none(), "{published:#}");
    setup.app_page_shows(&name, "Todos v3").await;
    let rows = setup.published_rows(&project, "todos").await;
    assert_eq!(
        titles(&rows),
        ["Buy milk", "Written in production"],
        "republishing keeps the rows: {rows}"
    );
    let (_, data) = setup
        .server
        .get(&format!("/api/projects/{project}/data?of=published"))
        .await;
    let columns: Vec<&str> = data["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|table| table["name"] == "todos")
        .unwrap_or_else(|| panic!("{data}"))["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|column| column["name"].as_str().unwrap())
        .collect();
    assert_eq!(columns, ["id", "title", "note"], "the new schema: {data}");
    let backup = data["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|snapshot| snapshot["kind"] == "published" && snapshot["version"] == 2)
        .unwrap_or_else(|| panic!("no backup of v2's published data: {data}"))
        .clone();
    assert_eq!(backup["rows"], 2, "{backup}");
    let panel = setup
        .server
        .page(&format!("/projects/{project}/data-panel?of=published"))
        .await;
    assert!(
        panel.contains("Published data, while v2 served it")
            && panel.contains("Copy into development"),
        "{panel}"
    );

    // The backup holds what production wrote: copied into development, the row is there.
    let (status, restored) = setup
        .server
        .post(
            &format!(
                "/api/projects/{project}/snapshots/{}/restore",
                backup["id"].as_str().unwrap()
            ),
            Value::Null,
        )
        .await;
    assert_eq!(status, 200, "{restored}");
    assert!(
        setup
            .todos()
            .titles(&project)
            .await
            .contains(&"Written in production".to_string())
    );

    // `codeflux sandboxes prune` removes stopped sandboxes, never a published app, even a
    // stopped one.
    let instance = setup.engine.config().instance.clone();
    for label in [
        format!("codeflux.project={project}"),
        format!("codeflux.app={project}"),
    ] {
        for id in
            docker_cli(&["ps", "-q", "--filter", &format!("label={label}")]).split_whitespace()
        {
            docker_cli(&["stop", "-t", "1", id]);
        }
    }
    let data_dir = tempfile::tempdir().unwrap();
    let pruned = std::process::Command::new(env!("CARGO_BIN_EXE_codeflux"))
        .args(["sandboxes", "--data-dir"])
        .arg(data_dir.path())
        .arg("prune")
        .env("CODEFLUX_SANDBOX_INSTANCE", &instance)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&pruned.stdout);
    assert!(
        pruned.status.success() && said.contains("removed 1 stopped sandbox"),
        "{said}{}",
        String::from_utf8_lossy(&pruned.stderr)
    );
    let left = docker_cli(&[
        "ps",
        "-aq",
        "--filter",
        &format!("label=codeflux.project={project}"),
    ]);
    assert!(left.is_empty(), "the dev sandbox was pruned: {left}");
    let app = app_containers(&project);
    assert_eq!(app.len(), 1, "the published app is still there");
    docker_cli(&["start", &app[0]]);
    setup.app_page_shows(&name, "Written in production").await;

    // Renamed in the panel: the address moves at once, without a rebuild.
    let (status, panel) = setup
        .server
        .htmx_post(
            &format!("/projects/{project}/publish/name"),
            Ok(&[("name", "our-todos")]),
        )
        .await;
    assert_eq!(status, 200, "{panel}");
    assert!(panel.contains("http://our-todos.apps.localhost"), "{panel}");
    setup.app_page_shows("our-todos", "Todos v3").await;
    assert_eq!(
        setup.app_status(&name).await,
        404,
        "the old address is gone"
    );
    assert_eq!(
        app_containers(&project),
        app,
        "the same container serves it"
    );
    let (_, detail) = setup.server.get(&format!("/api/projects/{project}")).await;
    assert_eq!(
        detail["published"]["url"],
        format!("http://our-todos.apps.localhost:{}/", setup.preview_port)
    );
    let refused = setup
        .server
        .http
        .patch(format!(
            "{}/api/projects/{project}/publish",
            setup.server.base
        ))
        .json(&json!({ "name": "Not A Name" }))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 422, "{:?}", refused.text().await);
    setup.app_page_shows("our-todos", "Todos v3").await;

    // A build image that a crash left behind goes when CodeFlux starts again.
    let leftover = format!("codeflux-build-stage-{instance}:left-by-a-crash");
    let base = std::env::var("CODEFLUX_TEST_BASE_IMAGE").unwrap();
    docker_cli(&["tag", &base, &leftover]);
    let stage_images = || docker_cli(&["images", "-q", &leftover]);
    assert!(!stage_images().is_empty());
    let setup = setup.restart().await;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(120);
    while !stage_images().is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    assert!(
        stage_images().is_empty(),
        "the leftover build image is still there"
    );
    setup.app_page_shows("our-todos", "Todos v3").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_app_made_on_e2b_is_published_on_the_local_engine_and_without_one_publishing_needs_docker()
 {
    let (engine, cleanup) = provider(test_config()).await;
    let fake = FakeE2b::on_template(&engine).await;
    let ids = support::fake_e2b::id_tree();
    let e2b: Arc<dyn SandboxProvider> =
        Arc::new(E2bProvider::new(fake.edge_config(), ids.clone()).unwrap());

    // Sandboxes on E2B and no engine answering: publishing says it needs Docker.
    let on_e2b = Selected::e2b(E2bProvider::new(fake.edge_config(), ids).unwrap());
    let mut nowhere = engine.config().clone();
    nowhere.socket = Some("/nonexistent/docker.sock".into());
    let problem = publish_engine_on(&on_e2b, nowhere)
        .await
        .err()
        .expect("no engine answers there");
    assert!(
        problem.contains("Published apps run on Docker, also when sandboxes are on E2B"),
        "{problem}"
    );
    let without = Harness::start_with(|settings| {
        settings.publish_engine = PublishEngine(Err(problem.clone()));
    })
    .await;
    without.fake.push_all(vec![
        Reply::write(
            "app/page.tsx",
            "export default function Page() { return <h1>Hi</h1>; }\n",
        ),
        Reply::summary("A page."),
    ]);
    let project = without.create("a page").await;
    without.settled(&project).await;
    let (status, answer) = without
        .post(&format!("/api/projects/{project}/publish"), json!({}))
        .await;
    assert_eq!(status, 503, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap_or_default()
            .contains("Published apps run on Docker"),
        "{answer}"
    );
    let page = without.page(&format!("/projects/{project}")).await;
    assert!(page.contains("Publishing needs Docker"), "{page}");

    // With the local engine answering, the app made on E2B runs there.
    let local = publish_engine_on(&on_e2b, engine.config().clone())
        .await
        .expect("the local engine answers");
    let setup = Publishing::start_on(e2b, local, cleanup).await;
    let project = setup.todos().build("Todos on E2B").await;
    assert!(
        app_containers(&project).is_empty() && !fake.sandbox_ids().is_empty(),
        "the app was made on E2B"
    );
    let published = setup.publish(&project, 1).await;
    assert_eq!(published["status"], "running", "{published:#}");
    let name = published["name"].as_str().unwrap();
    let html = setup.app_page_shows(name, "Todos on E2B").await;
    assert!(html.contains("Buy milk"), "{html}");
    assert_eq!(
        app_containers(&project).len(),
        1,
        "it runs on the local engine"
    );
}
