//! CodeFlux with publishing on the real engine, as the publish tests drive it: start and
//! restart it, publish a version and wait for the end, reach the app at its address.

use std::sync::Arc;
use std::time::Duration;

use codeflux::sandbox::SandboxProvider;
use codeflux::sandbox::docker::DockerProvider;
use codeflux::server::{PublishEngine, Settings};
use serde_json::{Value, json};

use super::docker_env::{Cleanup, docker_cli, provider, test_config, wait_for_text};
use super::fake_llm::{FakeLlm, Reply};
use super::harness::Harness;
use super::todo_app::{Todos, checked_settings};

/// A publish (a production build on 2 cores) takes minutes.
pub const PUBLISH_LIMIT: Duration = Duration::from_secs(900);

pub struct Publishing {
    pub server: Harness,
    /// The engine published apps run on.
    pub engine: Arc<DockerProvider>,
    /// Where the projects' sandboxes run: the same engine, or E2B.
    sandboxes: Arc<dyn SandboxProvider>,
    pub preview_port: u16,
    _cleanup: Cleanup,
    _volumes: VolumeCleanup,
}

/// Removes the test's app containers, volumes and build images however it ends.
struct VolumeCleanup {
    instance: String,
}

impl Drop for VolumeCleanup {
    fn drop(&mut self) {
        let run = |args: &[&str]| {
            std::process::Command::new("docker")
                .args(args)
                .output()
                .map(|output| String::from_utf8_lossy(&output.stdout).to_string())
                .unwrap_or_default()
        };
        let instance = &self.instance;
        // What to list, and how to remove each thing listed.
        let leftovers: [(Vec<String>, &[&str]); 3] = [
            (
                vec![
                    "ps".into(),
                    "-aq".into(),
                    "--filter".into(),
                    format!("label=codeflux.instance={instance}"),
                ],
                &["rm", "-f"],
            ),
            (
                vec![
                    "volume".into(),
                    "ls".into(),
                    "-q".into(),
                    "--filter".into(),
                    format!("name=codeflux-{instance}-app-"),
                ],
                &["volume", "rm", "-f"],
            ),
            (
                vec![
                    "images".into(),
                    "--format".into(),
                    "{{.Repository}}:{{.Tag}}".into(),
                    format!("codeflux-build-stage-{instance}"),
                ],
                &["rmi", "-f"],
            ),
        ];
        for (list, remove) in leftovers {
            let list: Vec<&str> = list.iter().map(String::as_str).collect();
            for item in run(&list).split_whitespace() {
                run(&[remove, &[item]].concat());
            }
        }
    }
}

/// How often the published data is backed up in these tests (an hour by default).
pub const BACKUP_EVERY: std::time::Duration = std::time::Duration::from_secs(3);

fn publishing(engine: Arc<DockerProvider>, preview_port: u16) -> impl FnOnce(&mut Settings) {
    move |settings| {
        checked_settings(preview_port)(settings);
        settings.publish_engine = PublishEngine(Ok(engine));
        settings.published_backup = Some(BACKUP_EVERY);
    }
}

impl Publishing {
    /// Sandboxes and published apps on one engine, as a local install has them.
    pub async fn start() -> Self {
        let (engine, cleanup) = provider(test_config()).await;
        Self::start_on(engine.clone(), engine, cleanup).await
    }

    /// Sandboxes on `sandboxes`, published apps on `engine`; `cleanup` is `engine`'s.
    pub async fn start_on(
        sandboxes: Arc<dyn SandboxProvider>,
        engine: Arc<DockerProvider>,
        cleanup: Cleanup,
    ) -> Self {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let preview_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let preview_port = preview_listener.local_addr().unwrap().port();
        let server = Harness::start_with_provider(
            FakeLlm::start().await,
            sandboxes.clone(),
            preview_listener,
            publishing(engine.clone(), preview_port),
        )
        .await;
        Self {
            server,
            _volumes: VolumeCleanup {
                instance: engine.config().instance.clone(),
            },
            engine,
            sandboxes,
            preview_port,
            _cleanup: cleanup,
        }
    }

    /// CodeFlux stopped and started again on the same data and ports.
    pub async fn restart(self) -> Self {
        let Self {
            server,
            engine,
            sandboxes,
            preview_port,
            _cleanup,
            _volumes,
        } = self;
        let (fake, data_dir, _) = server.stop().await;
        let preview_listener = tokio::net::TcpListener::bind(("127.0.0.1", preview_port))
            .await
            .unwrap();
        let server = Harness::restart_with_provider(
            fake,
            data_dir,
            sandboxes.clone(),
            preview_listener,
            publishing(engine.clone(), preview_port),
        )
        .await;
        Self {
            server,
            engine,
            sandboxes,
            preview_port,
            _cleanup,
            _volumes,
        }
    }

    pub fn todos(&self) -> Todos<'_> {
        Todos {
            server: &self.server,
            preview_port: self.preview_port,
        }
    }

    pub fn app_host(&self, name: &str) -> String {
        format!("{name}.apps.localhost:{}", self.preview_port)
    }

    /// The preview listener; requests name the app by `Host` (see [`Self::app_host`]).
    pub fn app_url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.preview_port)
    }

    /// Publishes `version` and waits until the publish has ended; returns the record.
    pub async fn publish(&self, project: &str, version: u32) -> Value {
        self.publish_with(project, json!({ "version": version }))
            .await
    }

    /// `POST /api/projects/{id}/publish` with `body`, then waits until the publish ended.
    pub async fn publish_with(&self, project: &str, body: Value) -> Value {
        let (status, answer) = self
            .server
            .post(&format!("/api/projects/{project}/publish"), body)
            .await;
        assert_eq!(status, 202, "{answer}");
        assert_eq!(answer["status"], "building", "{answer}");
        self.publish_ended(project).await
    }

    pub async fn publish_ended(&self, project: &str) -> Value {
        let deadline = tokio::time::Instant::now() + PUBLISH_LIMIT;
        let mut last = Value::Null;
        while tokio::time::Instant::now() < deadline {
            let (_, detail) = self.server.get(&format!("/api/projects/{project}")).await;
            last = detail["published"].clone();
            if last["status"] != "building" {
                return last;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        panic!("the publish did not end within {PUBLISH_LIMIT:?}; the record: {last:#}");
    }

    /// Waits until the app called `name` answers with a page that has `text`.
    pub async fn app_page_shows(&self, name: &str, text: &str) -> String {
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        wait_for_text(&client, &self.app_url(), Some(&self.app_host(name)), text).await
    }

    /// The status of a GET of the app called `name`.
    pub async fn app_status(&self, name: &str) -> u16 {
        reqwest::Client::builder()
            .no_proxy()
            .build()
            .unwrap()
            .get(self.app_url())
            .header("host", self.app_host(name))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    /// Builds a follow-up version whose page is `page_source`.
    pub async fn new_version(&self, project: &str, page_source: &str) {
        self.follow_up(
            project,
            "change the heading",
            vec![
                Reply::write("app/page.tsx", page_source),
                Reply::summary("Changed the page."),
                Reply::summary("Changed the page, checked."),
            ],
        )
        .await;
    }

    /// A follow-up the scripted model answers with `replies`; it must end with a version.
    pub async fn follow_up(&self, project: &str, prompt: &str, replies: Vec<Reply>) {
        self.server.fake.clear();
        self.server.fake.push_all(replies);
        self.server.follow_up(project, prompt).await;
        let answer = self.server.last_message(project).await;
        assert_eq!(answer["type"], "result", "{answer}");
    }

    /// `GET /api/projects/{id}/data/{table}?of=published`: the published app's rows.
    pub async fn published_rows(&self, project: &str, table: &str) -> Value {
        let (status, rows) = self
            .server
            .get(&format!(
                "/api/projects/{project}/data/{table}?of=published"
            ))
            .await;
        assert_eq!(status, 200, "{rows}");
        rows
    }
}

/// The containers (running or not) of `project`'s published app.
pub fn app_containers(project: &str) -> Vec<String> {
    docker_cli(&[
        "ps",
        "-aq",
        "--filter",
        &format!("label=codeflux.app={project}"),
    ])
    .split_whitespace()
    .map(str::to_string)
    .collect()
}

/// The titles in a page of rows from the data API.
pub fn titles(rows: &Value) -> Vec<String> {
    rows["rows"]
        .as_array()
        .unwrap_or_else(|| panic!("no rows: {rows}"))
        .iter()
        .filter_map(|row| row["title"].as_str().map(str::to_string))
        .collect()
}
