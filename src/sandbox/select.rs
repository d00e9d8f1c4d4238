//! Chooses the sandbox backend from the environment: `CODEFLUX_SANDBOX=docker|e2b|auto`
//! (default `auto`: Docker when an engine answers, else E2B when `E2B_API_KEY` is set).

use std::sync::Arc;

use super::SandboxProvider;
use super::docker::{DockerConfig, DockerProvider};
use super::e2b::{E2bConfig, E2bProvider};

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

    pub fn e2b(provider: E2bProvider) -> Self {
        Self {
            provider: Some(Arc::new(provider)),
            docker: None,
            problem: None,
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

/// `instance` names this installation on a shared Docker engine; `e2b_ids` is where the
/// E2B backend remembers each project's sandbox.
pub async fn from_env(
    instance: &str,
    data_dir: Option<&std::path::Path>,
    e2b_ids: sled::Tree,
) -> Selected {
    let choice = std::env::var("CODEFLUX_SANDBOX")
        .unwrap_or_default()
        .trim()
        .to_lowercase();
    match choice.as_str() {
        "e2b" => match e2b(e2b_ids) {
            Ok(provider) => Selected::e2b(provider),
            Err(problem) => Selected::none(format!("CODEFLUX_SANDBOX=e2b, but {problem}")),
        },
        "docker" => match docker(instance, data_dir).await {
            Ok(provider) => Selected::docker(provider),
            Err(problem) => Selected::none(format!("CODEFLUX_SANDBOX=docker, but {problem}")),
        },
        "" | "auto" => match docker(instance, data_dir).await {
            Ok(provider) => Selected::docker(provider),
            Err(docker_problem) if std::env::var_os("E2B_API_KEY").is_some() => {
                match e2b(e2b_ids) {
                    Ok(provider) => {
                        tracing::info!("Docker is not available ({docker_problem}); using E2B");
                        Selected::e2b(provider)
                    }
                    Err(problem) => Selected::none(problem),
                }
            }
            Err(problem) => Selected::none(format!(
                "No sandbox backend: {problem}. Start Docker (or set DOCKER_HOST), or set E2B_API_KEY to use E2B."
            )),
        },
        other => Selected::none(format!(
            "CODEFLUX_SANDBOX must be `docker`, `e2b` or `auto`, not {other:?}"
        )),
    }
}

/// The engine published apps run on: the sandboxes' own when they are on Docker, else the
/// local engine if one answers (E2B sandboxes cannot serve production apps).
pub async fn publish_engine(
    selected: &Selected,
    instance: &str,
    data_dir: Option<&std::path::Path>,
) -> Result<Arc<DockerProvider>, String> {
    if let Some(docker) = &selected.docker {
        return Ok(docker.clone());
    }
    let mut config = DockerConfig::from_env().map_err(|error| needs_docker(&error))?;
    config.instance = instance.to_string();
    config.data_dir = data_dir.map(std::path::Path::to_path_buf);
    publish_engine_on(selected, config).await
}

/// [`publish_engine`] with the engine's settings given rather than read from the
/// environment.
pub async fn publish_engine_on(
    selected: &Selected,
    config: DockerConfig,
) -> Result<Arc<DockerProvider>, String> {
    if let Some(docker) = &selected.docker {
        return Ok(docker.clone());
    }
    DockerProvider::connect(config)
        .await
        .map(Arc::new)
        .map_err(|problem| needs_docker(&problem))
}

fn needs_docker(problem: &dyn std::fmt::Display) -> String {
    format!("{problem}. Published apps run on Docker, also when sandboxes are on E2B")
}

fn e2b(ids: sled::Tree) -> Result<E2bProvider, String> {
    let config = E2bConfig::from_env().map_err(|error| error.to_string())?;
    E2bProvider::new(config, ids).map_err(|error| error.to_string())
}

async fn docker(
    instance: &str,
    data_dir: Option<&std::path::Path>,
) -> Result<DockerProvider, String> {
    let mut config = DockerConfig::from_env().map_err(|error| needs_docker(&error))?;
    config.instance = instance.to_string();
    config.data_dir = data_dir.map(std::path::Path::to_path_buf);
    DockerProvider::connect(config)
        .await
        .map_err(|error| error.to_string())
}
