//! Chooses the sandbox backend from the environment: `CODEFLUX_SANDBOX=docker|e2b|auto`
//! (default `auto`: Docker when an engine answers, else E2B when `E2B_API_KEY` is set).

use std::sync::Arc;

use super::SandboxProvider;
use super::docker::{DockerConfig, DockerProvider};

/// The chosen backend, or why there is none.
pub struct Selected {
    pub provider: Option<Arc<dyn SandboxProvider>>,
    /// Set when Docker was chosen, for its start-up chores (image, reaper, orphans).
    pub docker: Option<Arc<DockerProvider>>,
    pub problem: Option<String>,
}

impl Selected {
    fn none(problem: String) -> Self {
        Self {
            provider: None,
            docker: None,
            problem: Some(problem),
        }
    }

    fn docker(provider: DockerProvider) -> Self {
        let provider = Arc::new(provider);
        Self {
            provider: Some(provider.clone()),
            docker: Some(provider),
            problem: None,
        }
    }
}

/// `instance` names this installation on a shared Docker engine.
pub async fn from_env(instance: &str) -> Selected {
    let choice = std::env::var("CODEFLUX_SANDBOX")
        .unwrap_or_default()
        .trim()
        .to_lowercase();
    match choice.as_str() {
        "docker" => match docker(instance).await {
            Ok(provider) => Selected::docker(provider),
            Err(problem) => Selected::none(format!("CODEFLUX_SANDBOX=docker, but {problem}")),
        },
        "" | "auto" => match docker(instance).await {
            Ok(provider) => Selected::docker(provider),
            Err(problem) => Selected::none(format!(
                "No sandbox backend: {problem}. Start Docker (or set DOCKER_HOST), or set CODEFLUX_SANDBOX=e2b with E2B_API_KEY."
            )),
        },
        other => Selected::none(format!(
            "CODEFLUX_SANDBOX must be `docker`, `e2b` or `auto`, not {other:?}"
        )),
    }
}

async fn docker(instance: &str) -> Result<DockerProvider, String> {
    let mut config = DockerConfig::from_env().map_err(|error| error.to_string())?;
    config.instance = instance.to_string();
    DockerProvider::connect(config)
        .await
        .map_err(|error| error.to_string())
}
