//! The E2B backend: cloud sandboxes from the `codeflux-nextjs` template, driven over E2B's
//! REST control API and each sandbox's envd. No Rust SDK exists, so this speaks the
//! protocol directly; tests prove it against a fake that the official SDK accepts.

mod api;
mod config;
mod envd;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use uuid::Uuid;

pub use api::{ControlApi, PROJECT_METADATA, SandboxHandle};
pub use config::{DEFAULT_TEMPLATE, E2bConfig, ENVD_PORT};

use super::{
    Acquired, CommandOutput, FileWrite, PREVIEW_PORT, PreviewUpstream, Sandbox, SandboxError,
    SandboxProvider, WorkspacePath,
};

/// E2B's `{"message": …}` error text, or the start of whatever else came back.
fn error_message(text: &str) -> String {
    serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|body| {
            body.get("message")
                .and_then(|message| message.as_str())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| text.chars().take(300).collect())
}

/// How long a sandbox we just talked to counts as alive without asking E2B again.
const ALIVE_FOR: Duration = Duration::from_secs(30);

pub struct E2bSandbox {
    id: String,
    domain: Option<String>,
    traffic_token: Option<String>,
    config: E2bConfig,
    api: ControlApi,
    envd: envd::Envd,
}

#[async_trait]
impl Sandbox for E2bSandbox {
    fn id(&self) -> &str {
        &self.id
    }

    async fn run(&self, command: &str, timeout: Duration) -> Result<CommandOutput, SandboxError> {
        self.envd.run(command, timeout).await
    }

    async fn write_files(&self, files: &[FileWrite]) -> Result<(), SandboxError> {
        let real = self
            .envd
            .confine(&files.iter().map(|file| &file.path).collect::<Vec<_>>())
            .await?;
        for (file, path) in files.iter().zip(real) {
            self.envd.write(&path, file.content.clone()).await?;
        }
        Ok(())
    }

    async fn read_file(&self, path: &WorkspacePath) -> Result<Vec<u8>, SandboxError> {
        let real = self.envd.confine(&[path]).await?;
        self.envd.read(&real[0]).await
    }

    fn native_url(&self, port: u16) -> String {
        self.config.host_url(&self.id, self.domain.as_deref(), port)
    }

    async fn extend(&self, lifetime: Duration) -> Result<(), SandboxError> {
        self.api
            .set_timeout(&self.id, lifetime.max(self.config.lifetime))
            .await
    }

    async fn kill(&self) -> Result<(), SandboxError> {
        self.api.kill(&self.id).await
    }
}

impl E2bSandbox {
    /// How the preview reaches `port`: at its E2B address, or through the configured edge
    /// with that address's name as `Host`; with the traffic token of a private sandbox.
    fn upstream(&self, port: u16) -> PreviewUpstream {
        let mut headers: Vec<(String, String)> = self
            .traffic_token
            .iter()
            .map(|token| ("e2b-traffic-access-token".to_string(), token.clone()))
            .collect();
        let base_url = match &self.config.edge_url {
            Some(edge) => {
                let name = self
                    .config
                    .host_name(&self.id, self.domain.as_deref(), port);
                headers.push(("host".to_string(), name));
                edge.clone()
            }
            None => self.native_url(port),
        };
        PreviewUpstream { base_url, headers }
    }
}

struct Live {
    sandbox: Arc<E2bSandbox>,
    checked: Instant,
}

pub struct E2bProvider {
    config: E2bConfig,
    api: ControlApi,
    http: reqwest::Client,
    /// project id → sandbox id, kept so a restarted CodeFlux reconnects instead of creating.
    ids: sled::Tree,
    live: tokio::sync::Mutex<HashMap<Uuid, Live>>,
    locks: Mutex<HashMap<Uuid, Arc<tokio::sync::Mutex<()>>>>,
}

impl E2bProvider {
    /// One authenticated call to the control API (listing sandboxes), for `codeflux doctor`.
    pub async fn check(&self) -> Result<(), SandboxError> {
        self.api
            .list_for_project("codeflux-doctor")
            .await
            .map(|_| ())
    }

    pub fn new(config: E2bConfig, ids: sled::Tree) -> Result<Self, SandboxError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(15))
            .build()
            .map_err(|error| SandboxError::Backend(error.to_string()))?;
        Ok(Self {
            api: ControlApi::new(config.clone(), http.clone()),
            config,
            http,
            ids,
            live: tokio::sync::Mutex::default(),
            locks: Mutex::default(),
        })
    }

    fn project_lock(&self, project_id: Uuid) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self
            .locks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        locks.entry(project_id).or_default().clone()
    }

    fn stored_id(&self, project_id: Uuid) -> Result<Option<String>, SandboxError> {
        let stored = self
            .ids
            .get(project_id.as_bytes())
            .map_err(|error| SandboxError::Backend(error.to_string()))?;
        Ok(stored.map(|bytes| String::from_utf8_lossy(&bytes).into_owned()))
    }

    fn remember(&self, project_id: Uuid, sandbox_id: &str) -> Result<(), SandboxError> {
        self.ids
            .insert(project_id.as_bytes(), sandbox_id.as_bytes())
            .map_err(|error| SandboxError::Backend(error.to_string()))?;
        Ok(())
    }

    fn open(&self, handle: SandboxHandle) -> E2bSandbox {
        let envd = envd::Envd {
            http: self.http.clone(),
            base_url: self
                .config
                .envd_url(&handle.sandbox_id, handle.domain.as_deref()),
            sandbox_id: handle.sandbox_id.clone(),
            access_token: handle.envd_access_token.clone(),
            version: envd::parse_version(&handle.envd_version),
        };
        E2bSandbox {
            id: handle.sandbox_id,
            domain: handle.domain,
            traffic_token: handle.traffic_access_token,
            config: self.config.clone(),
            api: self.api.clone(),
            envd,
        }
    }

    /// Reconnects to the project's sandbox if E2B still has it.
    async fn reconnect(&self, project_id: Uuid) -> Result<Option<SandboxHandle>, SandboxError> {
        let mut candidates: Vec<String> = self.stored_id(project_id)?.into_iter().collect();
        if candidates.is_empty() {
            // Lost our record (e.g. a new data dir): E2B's metadata still knows.
            candidates = self.api.list_for_project(&project_id.to_string()).await?;
        }
        for sandbox_id in candidates {
            match self.api.connect(&sandbox_id).await {
                Ok(handle) => return Ok(Some(handle)),
                Err(SandboxError::Gone(_)) => continue,
                Err(error) => return Err(error),
            }
        }
        Ok(None)
    }
}

#[async_trait]
impl SandboxProvider for E2bProvider {
    fn name(&self) -> &'static str {
        "e2b"
    }

    async fn acquire(&self, project_id: Uuid) -> Result<Acquired, SandboxError> {
        let lock = self.project_lock(project_id);
        let _guard = lock.lock().await;
        // Always ask E2B: the sandbox may have expired since we last used it, and connect
        // also pushes its expiry out.
        let (handle, created) = match self.reconnect(project_id).await? {
            Some(handle) => (handle, false),
            None => {
                tracing::info!(%project_id, "creating an E2B sandbox");
                (self.api.create(&project_id.to_string()).await?, true)
            }
        };
        self.remember(project_id, &handle.sandbox_id)?;
        let sandbox = Arc::new(self.open(handle));
        self.live.lock().await.insert(
            project_id,
            Live {
                sandbox: sandbox.clone(),
                checked: Instant::now(),
            },
        );
        Ok(Acquired { sandbox, created })
    }

    async fn preview_upstream(
        &self,
        project_id: Uuid,
    ) -> Result<Option<PreviewUpstream>, SandboxError> {
        let mut live = self.live.lock().await;
        let fresh = live
            .get(&project_id)
            .is_some_and(|entry| entry.checked.elapsed() < ALIVE_FOR);
        if !fresh {
            drop(live);
            let Some(handle) = self.reconnect(project_id).await? else {
                return Ok(None);
            };
            let sandbox = Arc::new(self.open(handle));
            live = self.live.lock().await;
            live.insert(
                project_id,
                Live {
                    sandbox,
                    checked: Instant::now(),
                },
            );
        }
        Ok(Some(live[&project_id].sandbox.upstream(PREVIEW_PORT)))
    }

    async fn release(&self, project_id: Uuid) -> Result<(), SandboxError> {
        let lock = self.project_lock(project_id);
        let _guard = lock.lock().await;
        self.live.lock().await.remove(&project_id);
        if let Some(sandbox_id) = self.stored_id(project_id)? {
            self.api.kill(&sandbox_id).await?;
        }
        self.ids
            .remove(project_id.as_bytes())
            .map_err(|error| SandboxError::Backend(error.to_string()))?;
        Ok(())
    }
}
