//! Apps that keep their data, on the real Docker engine with the scripted model: a todo app
//! on the embedded database keeps its rows through a reload, `docker rm -f` of its sandbox
//! and a CodeFlux restart; versions record the data and bring it back; a schema change that
//! would drop data is refused until accepted, and the data from before can be restored;
//! two projects never see each other's rows; all of it also with no network.

mod support;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use support::docker_env::{Cleanup, docker_cli, provider, run_image, test_config, wait_for_text};
use support::fake_llm::{FakeLlm, Reply};
use support::harness::Harness;
use support::postgres::Postgres;
use support::todo_app::{SCHEMA, Todos, checked_settings, page, todo_rows};

type Provider = Arc<codeflux::sandbox::docker::DockerProvider>;

struct Setup {
    server: Harness,
    cleanup: Cleanup,
    provider: Provider,
    preview_port: u16,
}

async fn start(network: codeflux::sandbox::docker::NetworkMode, pool: usize) -> Setup {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let mut config = test_config();
    config.network = network;
    config.pool = pool;
    let (provider, cleanup) = provider(config).await;
    let preview_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let preview_port = preview_listener.local_addr().unwrap().port();
    let sandboxes: Arc<dyn codeflux::sandbox::SandboxProvider> = provider.clone();
    let fake = FakeLlm::start().await;
    let server = Harness::start_with_provider(
        fake,
        sandboxes,
        preview_listener,
        checked_settings(preview_port),
    )
    .await;
    Setup {
        server,
        cleanup,
        provider,
        preview_port,
    }
}

impl Setup {
    /// Stops CodeFlux (its shutdown stops the sandboxes) and starts it again on the same
    /// data directory, engine and preview port.
    async fn restart(self) -> Setup {
        let Setup {
            server,
            cleanup,
            provider,
            preview_port,
        } = self;
        let (fake, data_dir, _) = server.stop().await;
        let preview_listener = tokio::net::TcpListener::bind(("127.0.0.1", preview_port))
            .await
            .unwrap();
        let sandboxes: Arc<dyn codeflux::sandbox::SandboxProvider> = provider.clone();
        let server = Harness::restart_with_provider(
            fake,
            data_dir,
            sandboxes,
            preview_listener,
            checked_settings(preview_port),
        )
        .await;
        Setup {
            server,
            cleanup,
            provider,
            preview_port,
        }
    }

    fn todos(&self) -> Todos<'_> {
        Todos {
            server: &self.server,
            preview_port: self.preview_port,
        }
    }

    async fn todo_project(&self, heading: &str) -> String {
        self.todos().build(heading).await
    }

    fn preview_host(&self, project: &str) -> String {
        self.todos().preview_host(project)
    }

    async fn add_todo(&self, project: &str, title: &str) {
        self.todos().add(project, title).await
    }

    async fn page_shows(&self, project: &str, text: &str) -> String {
        self.todos().page_shows(project, text).await
    }

    async fn data(&self, project: &str) -> Value {
        self.todos().data(project).await
    }

    async fn saved_rows(&self, project: &str, rows: u64) -> Value {
        self.todos().saved_rows(project, rows).await
    }

    async fn titles(&self, project: &str) -> Vec<String> {
        self.todos().titles(project).await
    }
}

/// `docker rm -f` of every container of the test's instance, behind CodeFlux's back.
fn remove_sandboxes(instance: &str) {
    let ids = docker_cli(&[
        "ps",
        "-aq",
        "--filter",
        &format!("label=codeflux.instance={instance}"),
    ]);
    for id in ids.split_whitespace() {
        docker_cli(&["rm", "-f", id]);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_todo_app_keeps_its_items_through_reload_removal_and_restart() {
    let setup = start(codeflux::sandbox::docker::NetworkMode::Bridge, 0).await;
    let project = setup.todo_project("Todos that stay").await;

    let data = setup.data(&project).await;
    assert_eq!(data["source"], "live", "{data}");
    assert_eq!(todo_rows(&data), 1, "the seed row is in: {data}");
    let version_snapshots: Vec<&Value> = data["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|snapshot| snapshot["kind"] == "version")
        .collect();
    assert_eq!(version_snapshots.len(), 1, "{data}");
    assert_eq!(version_snapshots[0]["rows"], 1);

    setup.add_todo(&project, "Walk the dog").await;
    setup.saved_rows(&project, 2).await;
    setup.page_shows(&project, "Walk the dog").await;

    // The sandbox is removed behind CodeFlux's back: the next visit revives it with the data.
    let instance = setup.cleanup.instance.clone();
    remove_sandboxes(&instance);
    let body = setup.page_shows(&project, "Walk the dog").await;
    assert!(body.contains("Buy milk"), "{body}");

    // CodeFlux restarts (its shutdown stops the sandbox); the data is still there.
    let setup = setup.restart().await;
    setup.page_shows(&project, "Walk the dog").await;
    assert_eq!(setup.titles(&project).await, ["Buy milk", "Walk the dog"]);

    // The Data tab and its CSV.
    let panel = setup
        .server
        .page(&format!("/projects/{project}/data-panel"))
        .await;
    assert!(
        panel.contains("Walk the dog") && panel.contains("rows 1–2 of 2"),
        "{panel}"
    );
    let csv = setup
        .server
        .page(&format!("/projects/{project}/data/todos/csv"))
        .await;
    assert_eq!(
        csv.lines().collect::<Vec<_>>(),
        ["id,title,done", "1,Buy milk,false", "2,Walk the dog,false"]
    );

    // A quick edit is a version too, and records the data it was made with.
    let (status, edited) = setup
        .server
        .post(
            &format!("/api/projects/{project}/edits"),
            json!({"file": "app/page.tsx", "line": 13, "column": 7, "name": "h1", "text": "Todos, edited"}),
        )
        .await;
    assert_eq!(status, 201, "{edited}");
    let data = setup.data(&project).await;
    let versions: Vec<u64> = data["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|snapshot| snapshot["kind"] == "version")
        .map(|snapshot| snapshot["rows"].as_u64().unwrap())
        .collect();
    assert_eq!(versions, [1, 2], "{data}");

    // Editing the live data: one row found by its key; bad values and unknown keys change
    // nothing and say why; the saved copy follows.
    let rows_api = format!("/api/projects/{project}/data/todos/rows");
    let change = |body: Value| {
        let request = setup
            .server
            .http
            .patch(format!("{}{rows_api}", setup.server.base))
            .json(&body);
        async move {
            let response = request.send().await.unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        }
    };
    let (status, answer) =
        change(json!({"key": {"id": 2}, "set": {"title": "Walk the cat", "done": "true"}})).await;
    assert_eq!(status, 200, "{answer}");
    let (status, answer) = change(json!({"key": {"id": 2}, "set": {"done": "maybe"}})).await;
    assert!(
        status == 422 && answer.contains("boolean"),
        "{status} {answer}"
    );
    let (status, answer) = change(json!({"key": {"id": 99}, "set": {"title": "x"}})).await;
    assert!(
        status == 422 && answer.contains("no row"),
        "{status} {answer}"
    );
    let (status, answer) =
        change(json!({"key": {"title": "Buy milk"}, "set": {"title": "x"}})).await;
    assert!(
        status == 422 && answer.contains("found by id"),
        "{status} {answer}"
    );
    assert_eq!(setup.titles(&project).await, ["Buy milk", "Walk the cat"]);
    let deleted = setup
        .server
        .http
        .delete(format!("{}{rows_api}", setup.server.base))
        .json(&json!({"key": {"id": 1}}))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 200);
    assert_eq!(setup.titles(&project).await, ["Walk the cat"]);
    setup.saved_rows(&project, 1).await;

    // The Data tab is read-only until Edit rows; its forms do the same.
    let panel_of = |query: &'static str| {
        let request = setup.server.http.get(format!(
            "{}/projects/{project}/data-panel?table=todos{query}",
            setup.server.base
        ));
        async move { request.send().await.unwrap().text().await.unwrap() }
    };
    let read_only = panel_of("").await;
    assert!(
        read_only.contains("Edit rows") && !read_only.contains("cell-edit"),
        "{read_only}"
    );
    let editing = panel_of("&edit=true").await;
    assert!(
        editing.contains("cell-edit") && editing.contains("Done editing"),
        "{editing}"
    );
    let (status, panel) = setup
        .server
        .htmx_post(
            &format!("/projects/{project}/data/todos/rows"),
            Ok(&[
                ("key", r#"{"id":2}"#),
                ("column", "title"),
                ("value", "Feed the cat"),
                ("page", "1"),
            ]),
        )
        .await;
    assert_eq!(status, 200, "{panel}");
    assert!(
        panel.contains("Changed title.") && panel.contains("Feed the cat"),
        "{panel}"
    );
    let (status, panel) = setup
        .server
        .htmx_post(
            &format!("/projects/{project}/data/todos/rows"),
            Ok(&[("key", r#"{"id":2}"#)]),
        )
        .await;
    assert!(
        status == 200 && panel.contains("Deleted the row.") && panel.contains("no rows"),
        "{panel}"
    );
}

/// Data bigger than a backend lets one file read be (1 MiB) is saved and comes back whole.
#[tokio::test(flavor = "multi_thread")]
async fn a_database_bigger_than_one_file_read_is_saved_and_restored_whole() {
    use rand::distr::{Alphanumeric, SampleString};

    let setup = start(codeflux::sandbox::docker::NetworkMode::Bridge, 0).await;
    let project = setup.todo_project("Big todos").await;
    // Random text hardly compresses: 24 items of 120 kB make about 2 MiB gzipped.
    let titles: Vec<String> = (0..24)
        .map(|index| {
            format!(
                "item{index:02}-{}",
                Alphanumeric.sample_string(&mut rand::rng(), 120_000)
            )
        })
        .collect();
    for title in &titles {
        setup.add_todo(&project, title).await;
    }
    let data = setup.saved_rows(&project, 25).await;
    let bytes = data["saved"]["bytes"].as_u64().unwrap();
    assert!(
        bytes > 2 * codeflux::sandbox::MAX_FILE_BYTES as u64 - 100_000,
        "the saved copy is bigger than a file read: {bytes} bytes"
    );
    // Saves overlap (a debounced one and an edit's): each still reads a whole snapshot.
    let project_id = project.parse().unwrap();
    let sandbox = codeflux::sandbox::SandboxProvider::acquire(setup.provider.as_ref(), project_id)
        .await
        .unwrap()
        .sandbox;
    let database = codeflux::data::Database::new(sandbox.as_ref());
    let snapshots = futures::future::join_all((0..3).map(|_| database.snapshot())).await;
    for snapshot in snapshots {
        let (gzipped, counts) = snapshot.unwrap().expect("the app has tables");
        assert_eq!(counts.rows, 25);
        assert_eq!(codeflux::data::count_snapshot(&gzipped).rows, 25, "whole");
    }

    remove_sandboxes(&setup.cleanup.instance);
    setup.page_shows(&project, "item23-").await;
    let data = setup.data(&project).await;
    assert_eq!(data["source"], "live", "{data}");
    let mut expected = vec!["Buy milk".to_string()];
    expected.extend(titles);
    assert!(
        setup.titles(&project).await == expected,
        "every row came back whole"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn versions_bring_their_data_back_and_a_dropping_change_waits_for_consent() {
    let setup = start(codeflux::sandbox::docker::NetworkMode::Bridge, 0).await;
    let project = setup.todo_project("Todos v1").await;
    setup.add_todo(&project, "Walk the dog").await;
    setup.add_todo(&project, "Water the plants").await;
    setup.saved_rows(&project, 3).await;

    // v2: a change to the page; its version records the 3 rows.
    setup.server.fake.clear();
    setup.server.fake.push_all([
        Reply::write("app/page.tsx", &page("Todos v2")),
        Reply::summary("A new heading."),
        Reply::summary("A new heading, checked."),
    ]);
    setup.server.follow_up(&project, "change the heading").await;
    let answer = setup.server.last_message(&project).await;
    assert_eq!(answer["type"], "result", "{answer}");
    let (_, versions) = setup
        .server
        .get(&format!("/api/projects/{project}/versions"))
        .await;
    let v1 = versions[0]["id"].as_str().unwrap().to_string();

    // Restoring v1's code keeps today's data.
    let (status, restored) = setup
        .server
        .post(
            &format!("/api/projects/{project}/versions/{v1}/restore"),
            Value::Null,
        )
        .await;
    assert_eq!(status, 201, "{restored}");
    assert!(restored.get("data").is_none(), "{restored}");
    setup.page_shows(&project, "Todos v1").await;
    assert_eq!(setup.titles(&project).await.len(), 3);

    // Restoring v1 with its data brings back its single row; today's rows are kept aside.
    let (status, restored) = setup
        .server
        .post(
            &format!("/api/projects/{project}/versions/{v1}/restore"),
            json!({"data": true}),
        )
        .await;
    assert_eq!(status, 201, "{restored}");
    assert_eq!(restored["data"]["restored"], true, "{restored}");
    assert_eq!(restored["data"]["rows"], 1, "{restored}");
    assert_eq!(setup.titles(&project).await, ["Buy milk"]);
    let data = setup.data(&project).await;
    let before_restore = data["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .find(|snapshot| snapshot["kind"] == "before_restore")
        .unwrap_or_else(|| panic!("{data}"))
        .clone();
    assert_eq!(before_restore["rows"], 3);

    // A change that drops a column holding rows is refused, then accepted; the data from
    // before it is kept and can be brought back.
    let without_done = SCHEMA
        .replace("  done: boolean(\"done\").notNull().default(false),\n", "")
        .replace("boolean, ", "");
    setup.server.fake.clear();
    setup.server.fake.push_all([
        Reply::write("db/schema.ts", &without_done),
        Reply::terminal("npm run db:push"),
        Reply::terminal("npm run db:push -- --accept-data-loss"),
        Reply::summary("Todos no longer have a done flag."),
        Reply::summary("Todos no longer have a done flag, checked."),
    ]);
    setup.server.follow_up(&project, "drop the done flag").await;
    let answer = setup.server.last_message(&project).await;
    assert_eq!(answer["type"], "result", "{answer}");
    let said = setup.server.fake.said_to_model();
    let refusal = said
        .iter()
        .find(|text| text.contains("Not applied"))
        .unwrap_or_else(|| panic!("the dropping change was not refused: {said:#?}"));
    assert!(
        refusal.contains("drops column todos.done (1 row)")
            && refusal.contains("--accept-data-loss"),
        "{refusal}"
    );
    let data = setup.data(&project).await;
    let columns: Vec<&str> = data["tables"][0]["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|column| column["name"].as_str().unwrap())
        .collect();
    assert_eq!(columns, ["id", "title"], "{data}");
    let before_change = data["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .find(|snapshot| snapshot["kind"] == "before_change")
        .unwrap_or_else(|| panic!("{data}"));
    assert_eq!(before_change["rows"], 1);
    let snapshot_id = before_change["id"].as_str().unwrap();
    let (status, restored) = setup
        .server
        .post(
            &format!("/api/projects/{project}/snapshots/{snapshot_id}/restore"),
            Value::Null,
        )
        .await;
    assert_eq!(status, 200, "{restored}");
    assert_eq!(restored["rows"], 1, "{restored}");

    // The Data tab brings back the 3 rows from before the version restore, under today's
    // schema (the `done` column they had is gone).
    let before_restore_id = before_restore["id"].as_str().unwrap().to_string();
    let (status, panel) = setup
        .server
        .htmx_post(
            &format!("/projects/{project}/snapshots/{before_restore_id}/restore"),
            Ok(&[]),
        )
        .await;
    assert_eq!(status, 200, "{panel}");
    assert!(panel.contains("Brought back 3 rows"), "{panel}");
    assert!(
        panel.contains("Earlier data") && panel.contains("Bring back"),
        "{panel}"
    );
    assert_eq!(
        setup.titles(&project).await,
        ["Buy milk", "Walk the dog", "Water the plants"]
    );

    // Another project with the same app sees only its own rows.
    let other = setup.todo_project("Other todos").await;
    setup.add_todo(&other, "Only here").await;
    assert_eq!(setup.titles(&other).await, ["Buy milk", "Only here"]);
    assert_eq!(
        setup.titles(&project).await,
        ["Buy milk", "Walk the dog", "Water the plants"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_todo_app_works_without_a_network() {
    let setup = start(codeflux::sandbox::docker::NetworkMode::None, 0).await;
    let project = setup.todo_project("Offline todos").await;
    setup.add_todo(&project, "No network needed").await;
    setup.page_shows(&project, "No network needed").await;
    let data = setup.saved_rows(&project, 2).await;
    assert_eq!(todo_rows(&data), 2, "{data}");
}

/// The zip with data runs outside CodeFlux: in a plain container of the sandbox image with
/// none of CodeFlux's helpers, `npm run dev` applies the migrations, loads `db/data.sql` into
/// the new database and serves the version's rows.
#[tokio::test(flavor = "multi_thread")]
async fn the_zip_with_data_starts_with_the_same_rows_outside_codeflux() {
    let setup = start(codeflux::sandbox::docker::NetworkMode::Bridge, 0).await;
    let project = setup.todo_project("Todos to take away").await;
    let answer = setup.server.last_message(&project).await;
    let message = answer["id"].as_str().unwrap();
    let zip = setup
        .server
        .http
        .get(format!(
            "{}/projects/{project}/fragments/{message}/download?data=1",
            setup.server.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(zip.status(), 200);
    let bytes = zip.bytes().await.unwrap();
    let unpacked = tempfile::tempdir().unwrap();
    zip::ZipArchive::new(std::io::Cursor::new(bytes.to_vec()))
        .unwrap()
        .extract(unpacked.path())
        .unwrap();
    let folder = std::fs::read_dir(unpacked.path())
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    assert!(folder.join("db/data.sql").exists());

    // The image's node_modules are what `npm install` of this package-lock gives; the
    // helpers and their settings are removed, so nothing of CodeFlux is left.
    let image = setup.provider.prepare_image(&mut |_| {}).await.unwrap();
    let container = docker_cli(&[
        "run",
        "-d",
        "--label",
        &format!("codeflux.instance={}", setup.cleanup.instance),
        "--entrypoint",
        "sleep",
        &image,
        "infinity",
    ]);
    docker_cli(&[
        "exec",
        "-u",
        "0",
        &container,
        "bash",
        "-c",
        "rm -f /usr/local/lib/codeflux-*.cjs /etc/profile.d/codeflux.sh && rm -rf /opt/codeflux /home/user/app /home/user/db /home/user/.data && mkdir -p /tmp/app",
    ]);
    docker_cli(&[
        "cp",
        &format!("{}/.", folder.display()),
        &format!("{container}:/tmp/app"),
    ]);
    let script = "cp -r /tmp/app/. /home/user/ && cd /home/user && \
        (env -u NODE_OPTIONS -u CODEFLUX_DB_BRIDGE npm run dev > /tmp/dev.log 2>&1 &) && \
        for i in $(seq 240); do curl -sf http://127.0.0.1:3000/ > /tmp/page.html && break; sleep 0.5; done; \
        cat /tmp/page.html; echo; echo ---; cat /tmp/dev.log";
    docker_cli(&[
        "exec",
        "-u",
        "0",
        &container,
        "chown",
        "-R",
        "user:user",
        "/tmp/app",
    ]);
    let output = docker_cli(&["exec", "-u", "user", &container, "bash", "-c", script]);
    assert!(
        output.contains("Buy milk") && output.contains("got the rows in ./db/data.sql"),
        "{output}"
    );

    // The same app on a Postgres server (DATABASE_URL): `npm run dev` migrates it and loads
    // the same rows, the app writes there, and no embedded database is made.
    // The host, as the container reaches it.
    let gateway = docker_cli(&["inspect", "-f", "{{.NetworkSettings.Gateway}}", &container]);
    assert!(!gateway.is_empty(), "the container has no gateway");
    let postgres = Postgres::start(&[&gateway]);
    let url = format!("postgres://postgres@{gateway}:{}/postgres", postgres.port);
    let script = format!(
        "pkill -f '[n]ext dev'; while curl -s -o /dev/null http://127.0.0.1:3000/; do sleep 0.2; done; \
        cd /home/user && rm -rf .data && \
        (env -u NODE_OPTIONS -u CODEFLUX_DB_BRIDGE DATABASE_URL={url} npm run dev > /tmp/dev-pg.log 2>&1 &) && \
        for i in $(seq 240); do curl -sf http://127.0.0.1:3000/ > /tmp/page-pg.html && break; sleep 0.5; done; \
        curl -sf -X POST -H 'content-type: application/json' -d '{{\"title\":\"Ship it\"}}' http://127.0.0.1:3000/api/todos; \
        echo; cat /tmp/page-pg.html; echo; echo ---; ls -a /home/user/.data 2>&1; cat /tmp/dev-pg.log"
    );
    let output = docker_cli(&["exec", "-u", "user", &container, "bash", "-c", &script]);
    assert!(
        output.contains("Buy milk")
            && output.contains("got the rows in ./db/data.sql")
            && output.contains("\"title\":\"Ship it\""),
        "{output}"
    );
    assert!(
        output.contains("'/home/user/.data': No such file"),
        "PGlite stayed closed: {output}"
    );
    assert_eq!(
        postgres.query("SELECT string_agg(title, ',' ORDER BY id) FROM todos"),
        "Buy milk,Ship it"
    );

    // The zip's own Dockerfile, as its README says (a local Node image: no registry here):
    // the production server with the version's rows, run as an unprivileged user.
    let base = std::env::var("CODEFLUX_TEST_BASE_IMAGE").unwrap();
    let tag = format!("codeflux-test-zip-{}", &setup.cleanup.instance[5..17]);
    docker_cli(&[
        "build",
        "-q",
        "--build-arg",
        &format!("NODE_IMAGE={base}"),
        "-t",
        &tag,
        &folder.display().to_string(),
    ]);
    let (app, port) = run_image(&tag, &setup.cleanup.instance);
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let html = wait_for_text(
        &client,
        &format!("http://127.0.0.1:{port}/"),
        None,
        "Buy milk",
    )
    .await;
    assert!(!html.contains("data-cf-loc"), "{html}");
    assert_eq!(docker_cli(&["exec", &app, "id", "-u"]), "10001");
    docker_cli(&["rm", "-f", &app]);
    docker_cli(&["rmi", &tag]);
}

/// The person's side, in Chromium, on a sandbox claimed from the warm pool: an item added
/// through the app's form (a server action) stays through a reload, the sandbox's removal and
/// a CodeFlux restart, and the Data tab shows it (the README's screenshot).
#[tokio::test(flavor = "multi_thread")]
async fn in_chromium_an_item_added_in_the_form_stays_and_the_data_tab_shows_it() {
    use fantoccini::Locator;
    use support::chromium::{browser, click, screenshot, type_into, wait_for};

    let setup = start(codeflux::sandbox::docker::NetworkMode::Bridge, 1).await;
    // `serve` starts the pool from its command line; here the test does.
    let _pool = setup.provider.spawn_pool().expect("a pool of one");
    let mut warm = Vec::new();
    for _ in 0..600 {
        warm = setup.provider.inventory(false).await.unwrap();
        if setup.provider.warm_ready() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let warm_id = warm
        .iter()
        .find(|sandbox| sandbox.warm)
        .unwrap_or_else(|| panic!("no warm sandbox: {warm:?}"))
        .container_id
        .clone();
    let project = setup.todo_project("Todos in a browser").await;
    let claimed = setup.provider.inventory(false).await.unwrap();
    assert!(
        claimed.iter().any(|sandbox| sandbox.container_id == warm_id
            && sandbox.project_id.map(|id| id.to_string()) == Some(project.clone())),
        "the project runs in the warm sandbox: {claimed:?}"
    );

    let (client, _driver) = browser().await;
    let preview = format!("http://{}/", setup.preview_host(&project));
    let has = |text: &str| format!("return document.body.innerText.includes({text:?})");
    client.goto(&preview).await.unwrap();
    wait_for(&client, "the todo page", &has("Buy milk")).await;
    type_into(&client, "input[name=title]", "Call mom").await;
    click(&client, "form button[type=submit]").await;
    wait_for(&client, "the added item", &has("Call mom")).await;
    client.refresh().await.unwrap();
    wait_for(&client, "the item after a reload", &has("Call mom")).await;
    // The form's server action went through the preview, so CodeFlux saved the data.
    setup.saved_rows(&project, 2).await;

    let instance = setup.cleanup.instance.clone();
    remove_sandboxes(&instance);
    setup.page_shows(&project, "Call mom").await;
    client.goto(&preview).await.unwrap();
    wait_for(&client, "the item in the revived sandbox", &has("Call mom")).await;

    client
        .goto(&format!("{}/projects/{project}", setup.server.base))
        .await
        .unwrap();
    wait_for(
        &client,
        "the project page",
        "return !!window.htmx && !!document.querySelector('#tab-data')",
    )
    .await;
    click(&client, "#tab-data").await;
    wait_for(
        &client,
        "the Data tab's rows",
        "const table = document.querySelector('.data-table'); return !!table && table.innerText.includes('Call mom') && table.innerText.includes('Buy milk')",
    )
    .await;
    screenshot(&client, "data").await;

    // Edit rows: a cell changed in its form, in the running app.
    click(&client, "button[hx-get$='edit=true']").await;
    wait_for(
        &client,
        "the edit forms",
        "return !!document.querySelector('.cell-edit')",
    )
    .await;
    client
        .execute(
            "const cell = [...document.querySelectorAll('details.cell-edit')].find((d) => d.querySelector('summary').innerText === 'Call mom'); cell.open = true; cell.id = 'editing-cell';",
            vec![],
        )
        .await
        .unwrap();
    let input = client
        .find(Locator::Css("#editing-cell input[name=value]"))
        .await
        .unwrap();
    input.clear().await.unwrap();
    input.send_keys("Call dad").await.unwrap();
    click(&client, "#editing-cell button[type=submit]").await;
    wait_for(
        &client,
        "the changed cell",
        "const table = document.querySelector('.data-table'); return document.body.innerText.includes('Changed title.') && !!table && table.innerText.includes('Call dad')",
    )
    .await;
    setup.page_shows(&project, "Call dad").await;

    // CodeFlux restarts: the app in the browser still has the item, as edited.
    let setup = setup.restart().await;
    setup.page_shows(&project, "Call dad").await;
    client.goto(&preview).await.unwrap();
    wait_for(&client, "the item after a restart", &has("Call dad")).await;
}
