//! E2B's control API: create, connect, set timeout, kill and list sandboxes.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use super::config::E2bConfig;
use crate::sandbox::SandboxError;

/// Metadata key that ties a sandbox to its CodeFlux project.
pub const PROJECT_METADATA: &str = "codeflux_project";

/// What create and connect answer.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SandboxHandle {
    #[serde(rename = "sandboxID")]
    pub sandbox_id: String,
    pub envd_version: String,
    #[serde(default)]
    pub envd_access_token: Option<String>,
    #[serde(default)]
    pub domain: Option<String>,
    #[serde(default)]
    pub traffic_access_token: Option<String>,
}

#[derive(Deserialize)]
struct Listed {
    #[serde(rename = "sandboxID")]
    sandbox_id: String,
}

#[derive(Clone)]
pub struct ControlApi {
    http: reqwest::Client,
    config: E2bConfig,
}

impl ControlApi {
    pub fn new(config: E2bConfig, http: reqwest::Client) -> Self {
        Self { http, config }
    }

    /// Sends one call, retrying rate limits (honouring `Retry-After`) and brief 5xx blips.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(StatusCode, String), SandboxError> {
        let url = format!("{}{path}", self.config.api_url);
        let mut backoff = Duration::from_millis(500);
        let mut attempt = 1;
        loop {
            let mut request = self
                .http
                .request(method.clone(), &url)
                .header("X-API-KEY", &self.config.api_key);
            if let Some(body) = &body {
                request = request.json(body);
            }
            let response = request.send().await.map_err(|error| {
                SandboxError::Backend(format!(
                    "cannot reach E2B at {}: {error}",
                    self.config.api_url
                ))
            })?;
            let status = response.status();
            let wait = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.parse::<f64>().ok())
                .map(|secs| Duration::from_secs_f64(secs.clamp(0.0, 30.0)));
            let text = response.text().await.unwrap_or_default();
            let retryable = status == StatusCode::TOO_MANY_REQUESTS
                || status == StatusCode::SERVICE_UNAVAILABLE;
            if retryable && attempt < self.config.max_attempts {
                tracing::warn!(%status, attempt, "E2B asked us to slow down; retrying");
                tokio::time::sleep(wait.unwrap_or(backoff)).await;
                backoff *= 2;
                attempt += 1;
                continue;
            }
            return Ok((status, text));
        }
    }

    fn failure(status: StatusCode, text: &str, what: &str) -> SandboxError {
        let message = super::error_message(text);
        match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => SandboxError::Unauthorized(
                format!("E2B refused the API key ({message}); check E2B_API_KEY"),
            ),
            StatusCode::NOT_FOUND => SandboxError::Gone(format!("{what}: {message}")),
            StatusCode::TOO_MANY_REQUESTS => SandboxError::Backend(format!(
                "E2B is rate limiting this account and still was after several tries: {message}"
            )),
            _ => SandboxError::Backend(format!("E2B could not {what} (HTTP {status}): {message}")),
        }
    }

    fn parse_handle(text: &str) -> Result<SandboxHandle, SandboxError> {
        serde_json::from_str(text).map_err(|error| {
            SandboxError::Backend(format!("E2B answered something unexpected: {error}"))
        })
    }

    pub async fn create(&self, project_id: &str) -> Result<SandboxHandle, SandboxError> {
        let body = json!({
            "templateID": self.config.template,
            "timeout": self.config.lifetime.as_secs(),
            "secure": true,
            "metadata": { PROJECT_METADATA: project_id },
            // The app is reached only through CodeFlux's proxy, which holds the traffic
            // token; its sandbox URL alone opens nothing.
            "network": { "allowPublicTraffic": false },
        });
        let (status, text) = self.call(Method::POST, "/sandboxes", Some(body)).await?;
        if status == StatusCode::CREATED || status == StatusCode::OK {
            return Self::parse_handle(&text);
        }
        if status == StatusCode::NOT_FOUND {
            return Err(SandboxError::NotConfigured(format!(
                "E2B has no template {:?}: build it with `e2b template build` in sandbox-templates/nextjs (see its README) or set CODEFLUX_E2B_TEMPLATE",
                self.config.template
            )));
        }
        Err(Self::failure(status, &text, "create a sandbox"))
    }

    /// Reconnects to a running (or paused) sandbox; this is also how a restarted CodeFlux
    /// gets the envd access token back.
    pub async fn connect(&self, sandbox_id: &str) -> Result<SandboxHandle, SandboxError> {
        let body = json!({ "timeout": self.config.lifetime.as_secs() });
        let (status, text) = self
            .call(
                Method::POST,
                &format!("/sandboxes/{sandbox_id}/connect"),
                Some(body),
            )
            .await?;
        if status.is_success() {
            return Self::parse_handle(&text);
        }
        Err(Self::failure(status, &text, "connect to the sandbox"))
    }

    pub async fn set_timeout(
        &self,
        sandbox_id: &str,
        lifetime: Duration,
    ) -> Result<(), SandboxError> {
        let body = json!({ "timeout": lifetime.as_secs().max(1) });
        let (status, text) = self
            .call(
                Method::POST,
                &format!("/sandboxes/{sandbox_id}/timeout"),
                Some(body),
            )
            .await?;
        if status.is_success() {
            Ok(())
        } else {
            Err(Self::failure(status, &text, "extend the sandbox"))
        }
    }

    /// Kills a sandbox; one that is already gone counts as killed.
    pub async fn kill(&self, sandbox_id: &str) -> Result<(), SandboxError> {
        let (status, text) = self
            .call(Method::DELETE, &format!("/sandboxes/{sandbox_id}"), None)
            .await?;
        if status.is_success() || status == StatusCode::NOT_FOUND {
            Ok(())
        } else {
            Err(Self::failure(status, &text, "kill the sandbox"))
        }
    }

    /// Running sandboxes of a project (normally one), found by metadata.
    pub async fn list_for_project(&self, project_id: &str) -> Result<Vec<String>, SandboxError> {
        let filter = format!("{PROJECT_METADATA}={project_id}");
        let url = reqwest::Url::parse_with_params(
            &format!("{}/v2/sandboxes", self.config.api_url),
            [
                ("metadata", filter.as_str()),
                ("state", "running"),
                ("limit", "100"),
            ],
        )
        .map_err(|error| SandboxError::Backend(error.to_string()))?;
        let path = &url.as_str()[self.config.api_url.len()..];
        let (status, text) = self.call(Method::GET, path, None).await?;
        if !status.is_success() {
            return Err(Self::failure(status, &text, "list sandboxes"));
        }
        let listed: Vec<Listed> = serde_json::from_str(&text).map_err(|error| {
            SandboxError::Backend(format!("E2B answered something unexpected: {error}"))
        })?;
        Ok(listed
            .into_iter()
            .map(|sandbox| sandbox.sandbox_id)
            .collect())
    }
}
