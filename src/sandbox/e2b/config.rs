//! Settings of the E2B backend, read from the same variables the official SDKs use.

use std::time::Duration;

use crate::sandbox::SandboxError;

pub const DEFAULT_TEMPLATE: &str = "codeflux-nextjs";
/// envd, E2B's agent inside every sandbox, listens here.
pub const ENVD_PORT: u16 = 49983;

#[derive(Clone)]
pub struct E2bConfig {
    pub api_key: String,
    /// `E2B_DOMAIN`, default `e2b.app`.
    pub domain: String,
    /// `E2B_API_URL`, default `https://api.<domain>` (`http://localhost:3000` in debug mode).
    pub api_url: String,
    /// `E2B_SANDBOX_URL`: one envd address for every sandbox (self-hosted E2B, debugging).
    pub sandbox_url: Option<String>,
    /// `CODEFLUX_E2B_EDGE_URL`: one address for every sandbox port, reached with the port's
    /// E2B host name as `Host` (a self-hosted E2B whose proxy has no wildcard DNS name).
    pub edge_url: Option<String>,
    /// `CODEFLUX_E2B_TEMPLATE`, default `codeflux-nextjs`.
    pub template: String,
    /// How long a sandbox lives without activity (`CODEFLUX_E2B_TIMEOUT_SECS`, default 1800).
    pub lifetime: Duration,
    /// Tries per control-API call when rate limited.
    pub max_attempts: u32,
}

/// The key is never printed, so settings can be logged.
impl std::fmt::Debug for E2bConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("E2bConfig")
            .field("api_key", &"<redacted>")
            .field("api_url", &self.api_url)
            .field("sandbox_url", &self.sandbox_url)
            .field("edge_url", &self.edge_url)
            .field("template", &self.template)
            .finish()
    }
}

impl E2bConfig {
    /// Reads `E2B_API_KEY`, `E2B_DOMAIN`, `E2B_API_URL`, `E2B_SANDBOX_URL`, `E2B_DEBUG`,
    /// `CODEFLUX_E2B_EDGE_URL`, `CODEFLUX_E2B_TEMPLATE` and `CODEFLUX_E2B_TIMEOUT_SECS`.
    pub fn from_env() -> Result<Self, SandboxError> {
        let var = |name: &str| {
            std::env::var(name)
                .ok()
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let api_key = var("E2B_API_KEY").ok_or_else(|| {
            SandboxError::NotConfigured("E2B_API_KEY is not set (get one at e2b.dev)".into())
        })?;
        let debug = var("E2B_DEBUG").is_some_and(|value| value.eq_ignore_ascii_case("true"));
        let domain = var("E2B_DOMAIN").unwrap_or_else(|| "e2b.app".to_string());
        let api_url = var("E2B_API_URL").unwrap_or_else(|| {
            if debug {
                "http://localhost:3000".to_string()
            } else {
                format!("https://api.{domain}")
            }
        });
        let sandbox_url = var("E2B_SANDBOX_URL")
            .or_else(|| debug.then(|| format!("http://localhost:{ENVD_PORT}")));
        let lifetime = match var("CODEFLUX_E2B_TIMEOUT_SECS") {
            Some(value) => Duration::from_secs(value.parse().map_err(|_| {
                SandboxError::NotConfigured(format!(
                    "CODEFLUX_E2B_TIMEOUT_SECS must be whole seconds, not {value:?}"
                ))
            })?),
            None => Duration::from_secs(1800),
        };
        Ok(Self {
            api_key,
            domain,
            api_url: api_url.trim_end_matches('/').to_string(),
            sandbox_url: sandbox_url.map(|url| url.trim_end_matches('/').to_string()),
            edge_url: var("CODEFLUX_E2B_EDGE_URL").map(|url| url.trim_end_matches('/').to_string()),
            template: var("CODEFLUX_E2B_TEMPLATE").unwrap_or_else(|| DEFAULT_TEMPLATE.to_string()),
            lifetime,
            max_attempts: 4,
        })
    }

    /// `https://<port>-<sandbox>.<domain>`: how E2B exposes a sandbox's port.
    pub fn host_url(&self, sandbox_id: &str, domain: Option<&str>, port: u16) -> String {
        format!("https://{}", self.host_name(sandbox_id, domain, port))
    }

    /// `<port>-<sandbox>.<domain>`: the name E2B's proxy routes a sandbox's port by.
    pub fn host_name(&self, sandbox_id: &str, domain: Option<&str>, port: u16) -> String {
        format!("{port}-{sandbox_id}.{}", domain.unwrap_or(&self.domain))
    }

    /// Where envd of a sandbox answers.
    pub fn envd_url(&self, sandbox_id: &str, domain: Option<&str>) -> String {
        match &self.sandbox_url {
            Some(url) => url.clone(),
            None => self.host_url(sandbox_id, domain, ENVD_PORT),
        }
    }
}
