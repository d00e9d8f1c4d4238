//! The real `codeflux serve` binary as a child process: for what only a process shows —
//! signals, `kill -9`, start-up checks, what ends up in its log.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::process::{Child, Command};

pub struct ServerProcess {
    child: Child,
    pub base: String,
    pub preview_port: u16,
    pub log: PathBuf,
    /// The access token the server requires, sent with every API call.
    token: Option<String>,
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The environment of a server on the test Docker engine and the scripted model.
pub fn docker_env(instance: &str, llm_base_url: &str) -> Vec<(String, String)> {
    let mut env = vec![
        ("CODEFLUX_SANDBOX".into(), "docker".into()),
        ("CODEFLUX_SANDBOX_INSTANCE".into(), instance.into()),
        (
            "CODEFLUX_SANDBOX_BASE_IMAGE".into(),
            std::env::var("CODEFLUX_TEST_BASE_IMAGE").expect(
                "CODEFLUX_TEST_BASE_IMAGE is not set: run ../shared/ci/docker-up.sh (see .ci/run)",
            ),
        ),
        ("CODEFLUX_LLM_BASE_URL".into(), llm_base_url.into()),
        ("CODEFLUX_MODEL".into(), "fake-model".into()),
        ("CODEFLUX_LLM_MAX_ATTEMPTS".into(), "2".into()),
        // Warm sandboxes are tested on their own; elsewhere they would only add load.
        ("CODEFLUX_SANDBOX_POOL".into(), "0".into()),
        ("RUST_LOG".into(), "info,sled=warn".into()),
    ];
    if let Ok(ca) = std::env::var("CODEFLUX_TEST_CA_CERT") {
        env.push(("CODEFLUX_SANDBOX_CA_CERT".into(), ca));
    }
    env
}

impl ServerProcess {
    /// Starts `codeflux serve` on free loopback ports with `data_dir`, and waits until it
    /// answers. Its log (stderr and stdout) goes to `<data_dir>.log`, appended across restarts.
    pub async fn start(data_dir: &Path, env: &[(String, String)]) -> Self {
        let (port, preview_port) = (free_port(), free_port());
        let log = data_dir.with_extension("log");
        let output = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_codeflux"))
            .arg("serve")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", std::env::var("HOME").unwrap_or_default())
            .env("CODEFLUX_LISTEN", format!("127.0.0.1:{port}"))
            .env(
                "CODEFLUX_PREVIEW_LISTEN",
                format!("127.0.0.1:{preview_port}"),
            )
            .env("CODEFLUX_DATA_DIR", data_dir)
            .envs(env.iter().map(|(key, value)| (key, value)))
            .stdout(Stdio::from(output.try_clone().unwrap()))
            .stderr(Stdio::from(output))
            .kill_on_drop(true)
            .spawn()
            .expect("the codeflux binary starts");
        let token = env
            .iter()
            .find(|(key, _)| key == "CODEFLUX_AUTH_TOKEN")
            .map(|(_, value)| value.clone());
        let server = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            preview_port,
            log,
            token,
        };
        server.wait_until_answering().await;
        server
    }

    async fn wait_until_answering(&self) {
        let http = reqwest::Client::new();
        for _ in 0..600 {
            if let Ok(response) = http.get(format!("{}/healthz", self.base)).send().await
                && response.status() == 200
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "codeflux serve did not answer; its log:\n{}",
            self.log_text()
        );
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> i32 {
        self.child.id().expect("the server is running") as i32
    }

    pub fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits (bounded) for the process to exit and returns how long that took.
    pub async fn wait_exit(&mut self, limit: Duration) -> (std::process::ExitStatus, Duration) {
        let started = tokio::time::Instant::now();
        match tokio::time::timeout(limit, self.child.wait()).await {
            Ok(status) => (status.unwrap(), started.elapsed()),
            Err(_) => panic!(
                "codeflux did not exit within {limit:?}; its log:\n{}",
                self.log_text()
            ),
        }
    }

    /// `kill -9`: no chance to clean up.
    pub async fn kill_hard(mut self) {
        self.signal("KILL");
        let _ = self.child.wait().await;
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.send(reqwest::Client::new().get(format!("{}{path}", self.base)))
            .await
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(
            reqwest::Client::new()
                .post(format!("{}{path}", self.base))
                .json(&body),
        )
        .await
    }

    async fn send(&self, mut request: reqwest::RequestBuilder) -> (u16, Value) {
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Waits (generously: it may include a first sandbox start) until the project is idle.
    pub async fn settled(&self, project: &str) -> Value {
        let deadline = tokio::time::Instant::now() + super::harness::SETTLE_LIMIT;
        while tokio::time::Instant::now() < deadline {
            let (_, body) = self.get(&format!("/api/projects/{project}")).await;
            if body["status"] == "idle" {
                return body;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let (_, events) = self.get(&format!("/api/projects/{project}/events")).await;
        panic!(
            "project {project} did not finish; events:\n{events:#}\nlog:\n{}",
            self.log_text()
        );
    }

    /// Scripts `fake` to write a page showing `text`, posts a prompt, and waits until it is
    /// answered with a result; returns the project. `context` adds to a failure's message.
    pub async fn generate_page(
        &self,
        fake: &super::fake_llm::FakeLlm,
        text: &str,
        context: impl Fn() -> String,
    ) -> String {
        use super::fake_llm::Reply;
        fake.push_all([
            Reply::write(
                "app/page.tsx",
                &format!("export default function Page() {{ return <main>{text}</main>; }}\n"),
            ),
            Reply::summary("done"),
        ]);
        let (status, created) = self
            .post("/api/projects", serde_json::json!({ "prompt": "a page" }))
            .await;
        assert_eq!(status, 201, "{created}");
        let project = created["id"].as_str().unwrap().to_string();
        let detail = self.settled(&project).await;
        assert_eq!(
            detail["messages"][1]["type"],
            "result",
            "{detail}\n{}\n{}",
            self.log_text(),
            context()
        );
        project
    }

    /// Waits (bounded, generously) until the project's preview shows `text`.
    pub async fn preview_shows(&self, project: &str, text: &str) {
        super::docker_env::wait_for_text(
            &reqwest::Client::builder().no_proxy().build().unwrap(),
            &format!("http://127.0.0.1:{}/", self.preview_port),
            Some(&format!("{project}.localhost:{}", self.preview_port)),
            text,
        )
        .await;
    }

    /// Waits (bounded) until the project's latest job has published an event that `matches`.
    pub async fn wait_for_event(
        &self,
        project: &str,
        what: &str,
        matches: impl Fn(&Value) -> bool,
    ) {
        let deadline = tokio::time::Instant::now() + super::harness::SETTLE_LIMIT;
        while tokio::time::Instant::now() < deadline {
            let (_, events) = self.get(&format!("/api/projects/{project}/events")).await;
            if events
                .as_array()
                .is_some_and(|events| events.iter().any(&matches))
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let (_, events) = self.get(&format!("/api/projects/{project}/events")).await;
        panic!(
            "no {what} event; events:\n{events:#}\nlog:\n{}",
            self.log_text()
        );
    }
}
