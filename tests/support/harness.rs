//! Runs a real CodeFlux server (store on disk, job queue, HTTP API) in-process against the
//! fake model and the host sandbox, and talks to it over HTTP like a client would.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use codeflux::agent::AgentSettings;
use codeflux::llm::LlmConfig;
use codeflux::sandbox::SandboxProvider;
use codeflux::server::{Services, Settings};
use codeflux::web::Setup;
use serde_json::{Value, json};
use tokio::sync::oneshot;

use super::fake_llm::FakeLlm;
use super::host_sandbox::HostSandboxes;

pub const PREVIEW_TEMPLATE: &str = "http://{project}.preview.test";

/// How long a job may take in tests before it counts as stuck: minutes, because a job may
/// include a first sandbox start (image build, container, dev server) on a cold machine.
pub const SETTLE_LIMIT: Duration = Duration::from_secs(300);

pub struct Harness {
    pub base: String,
    pub http: reqwest::Client,
    pub fake: FakeLlm,
    pub sandboxes: Arc<HostSandboxes>,
    pub data_dir: Arc<tempfile::TempDir>,
    stop: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

pub fn settings(data_dir: &Path, llm_base_url: &str, max_iterations: u32) -> Settings {
    Settings {
        data_dir: Some(data_dir.to_path_buf()),
        max_jobs: 2,
        published_backup: None,
        prices: None,
        agent: AgentSettings {
            max_iterations,
            command_timeout: Duration::from_secs(20),
            // The host test sandbox has no dev server to check; tests on Docker turn it on.
            verify: false,
            ..AgentSettings::default()
        },
        preview_url_template: PREVIEW_TEMPLATE.to_string(),
        llm: LlmConfig {
            base_url: llm_base_url.to_string(),
            api_key: None,
            model: "fake-model".into(),
            request_timeout: Duration::from_secs(10),
            max_attempts: 3,
            initial_backoff: Duration::from_millis(20),
        },
        auth: Default::default(),
        preview_extra_ca: None,
        public_origin: None,
        allowed_hosts: Vec::new(),
        data_limits: Default::default(),
        apps_url: None,
        publish_engine: Default::default(),
    }
}

impl Harness {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Starts a server; `adjust` may change the settings first.
    pub async fn start_with(adjust: impl FnOnce(&mut Settings)) -> Self {
        let fake = FakeLlm::start().await;
        let data_dir = Arc::new(tempfile::tempdir().unwrap());
        Self::start_on(fake, data_dir, HostSandboxes::new(), adjust).await
    }

    pub async fn start_on(
        fake: FakeLlm,
        data_dir: Arc<tempfile::TempDir>,
        sandboxes: Arc<HostSandboxes>,
        adjust: impl FnOnce(&mut Settings),
    ) -> Self {
        let provider: Arc<dyn SandboxProvider> = sandboxes.clone();
        Self::launch(fake, data_dir, sandboxes, provider, None, adjust).await
    }

    /// A server on a real sandbox backend, with its preview proxy on `preview_listener`
    /// (the preview URL template must point there).
    pub async fn start_with_provider(
        fake: FakeLlm,
        provider: Arc<dyn SandboxProvider>,
        preview_listener: tokio::net::TcpListener,
        adjust: impl FnOnce(&mut Settings),
    ) -> Self {
        let data_dir = Arc::new(tempfile::tempdir().unwrap());
        Self::launch(
            fake,
            data_dir,
            HostSandboxes::new(),
            provider,
            Some(preview_listener),
            adjust,
        )
        .await
    }

    /// A server on a real sandbox backend and an existing data directory: CodeFlux started
    /// again after [`Harness::stop`].
    pub async fn restart_with_provider(
        fake: FakeLlm,
        data_dir: Arc<tempfile::TempDir>,
        provider: Arc<dyn SandboxProvider>,
        preview_listener: tokio::net::TcpListener,
        adjust: impl FnOnce(&mut Settings),
    ) -> Self {
        Self::launch(
            fake,
            data_dir,
            HostSandboxes::new(),
            provider,
            Some(preview_listener),
            adjust,
        )
        .await
    }

    async fn launch(
        fake: FakeLlm,
        data_dir: Arc<tempfile::TempDir>,
        sandboxes: Arc<HostSandboxes>,
        provider: Arc<dyn SandboxProvider>,
        preview_listener: Option<tokio::net::TcpListener>,
        adjust: impl FnOnce(&mut Settings),
    ) -> Self {
        let mut settings = settings(data_dir.path(), &fake.base_url, 30);
        adjust(&mut settings);
        let services = Services::build(&settings, Some(provider), Setup::default())
            .await
            .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            services
                .serve(listener, preview_listener, async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        Self {
            base,
            http: reqwest::Client::new(),
            fake,
            sandboxes,
            data_dir,
            stop: Some(stop),
            server: Some(server),
        }
    }

    /// Stops the server and waits until its storage is closed, so it can be reopened.
    pub async fn stop(mut self) -> (FakeLlm, Arc<tempfile::TempDir>, Arc<HostSandboxes>) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.unwrap();
        }
        (
            self.fake.clone(),
            self.data_dir.clone(),
            self.sandboxes.clone(),
        )
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// A JSON request of any method (`PUT`, `DELETE`, …); `Value::Null` sends no body.
    pub async fn send(&self, method: reqwest::Method, path: &str, body: Value) -> (u16, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if !body.is_null() {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// The body of a GET of `path` (a page, a panel, a CSV), whatever its status.
    pub async fn page(&self, path: &str) -> String {
        self.http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Posts to a page route as htmx does (same origin, `HX-Request`): a form when `form`
    /// is `Ok`, a multipart body when it is `Err`. Returns the status and the HTML.
    pub async fn htmx_post(
        &self,
        path: &str,
        form: Result<&[(&str, &str)], reqwest::multipart::Form>,
    ) -> (u16, String) {
        let request = self
            .http
            .post(format!("{}{path}", self.base))
            .header("origin", &self.base)
            .header("hx-request", "true");
        let request = match form {
            Ok(fields) => request.form(fields),
            Err(multipart) => request.multipart(multipart),
        };
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.text().await.unwrap())
    }

    /// Creates a project and returns its id.
    pub async fn create(&self, prompt: &str) -> String {
        let (status, body) = self
            .post("/api/projects", json!({ "prompt": prompt }))
            .await;
        assert_eq!(status, 201, "{body}");
        body["id"].as_str().unwrap().to_string()
    }

    pub async fn follow_up(&self, project: &str, prompt: &str) {
        let (status, body) = self
            .post(
                &format!("/api/projects/{project}/messages"),
                json!({ "prompt": prompt }),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }

    /// Waits (bounded, but generously: the first sandbox start on a fresh machine is slow)
    /// until the project has no queued or running job, and returns it. A timeout fails with
    /// the job's progress events.
    pub async fn settled(&self, project: &str) -> Value {
        self.settled_within(project, SETTLE_LIMIT).await
    }

    pub async fn settled_within(&self, project: &str, limit: Duration) -> Value {
        let deadline = tokio::time::Instant::now() + limit;
        while tokio::time::Instant::now() < deadline {
            let (status, body) = self.get(&format!("/api/projects/{project}")).await;
            assert_eq!(status, 200, "{body}");
            if body["status"] == "idle" {
                return body;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let (_, events) = self.get(&format!("/api/projects/{project}/events")).await;
        panic!(
            "project {project} did not finish its job within {limit:?}; its progress events:\n{}",
            serde_json::to_string_pretty(&events).unwrap_or_default()
        );
    }

    /// The project's last message, once its jobs are done.
    pub async fn last_message(&self, project: &str) -> Value {
        let project = self.settled(project).await;
        project["messages"]
            .as_array()
            .unwrap()
            .last()
            .unwrap()
            .clone()
    }
}
