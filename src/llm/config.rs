//! Which model server to use, and how patiently: read from the environment.

use std::time::Duration;

pub const DEFAULT_BASE_URL: &str = "https://openrouter.ai/api/v1";
pub const DEFAULT_MODEL: &str = "openai/gpt-oss-120b:free";

#[derive(Clone)]
pub struct LlmConfig {
    pub base_url: String,
    pub api_key: Option<String>,
    pub model: String,
    /// Per-request limit; local models on a CPU can be slow.
    pub request_timeout: Duration,
    /// How many times one call is tried before giving up.
    pub max_attempts: u32,
    /// First back-off delay; doubles on each retry.
    pub initial_backoff: Duration,
}

/// What tokens cost, in US dollars per million, for a server that does not report costs
/// (`CODEFLUX_PRICE_INPUT`, `CODEFLUX_PRICE_OUTPUT`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prices {
    pub input_per_million: f64,
    pub output_per_million: f64,
}

impl Prices {
    pub fn cost(&self, usage: &crate::store::TokenUsage) -> f64 {
        (usage.prompt_tokens as f64 * self.input_per_million
            + usage.completion_tokens as f64 * self.output_per_million)
            / 1_000_000.0
    }
}

/// The key is never printed, so settings can be logged.
impl std::fmt::Debug for LlmConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlmConfig")
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("model", &self.model)
            .field("request_timeout", &self.request_timeout)
            .field("max_attempts", &self.max_attempts)
            .finish()
    }
}

impl LlmConfig {
    /// Reads `CODEFLUX_LLM_BASE_URL`, `CODEFLUX_LLM_API_KEY` (or `OPENROUTER_API_KEY`),
    /// `CODEFLUX_MODEL`, `CODEFLUX_LLM_TIMEOUT_SECS` and `CODEFLUX_LLM_MAX_ATTEMPTS`.
    pub fn from_env() -> Self {
        let var = |name: &str| {
            std::env::var(name)
                .ok()
                .filter(|value| !value.trim().is_empty())
        };
        Self {
            base_url: var("CODEFLUX_LLM_BASE_URL").unwrap_or_else(|| DEFAULT_BASE_URL.to_string()),
            api_key: var("CODEFLUX_LLM_API_KEY").or_else(|| var("OPENROUTER_API_KEY")),
            model: var("CODEFLUX_MODEL").unwrap_or_else(|| DEFAULT_MODEL.to_string()),
            request_timeout: Duration::from_secs(
                var("CODEFLUX_LLM_TIMEOUT_SECS")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(300),
            ),
            max_attempts: var("CODEFLUX_LLM_MAX_ATTEMPTS")
                .and_then(|v| v.parse().ok())
                .unwrap_or(5)
                .max(1),
            initial_backoff: Duration::from_secs(1),
        }
    }

    /// Local servers (Ollama, LM Studio, vLLM on this machine) need no key.
    pub fn is_local(&self) -> bool {
        reqwest::Url::parse(&self.base_url)
            .ok()
            .and_then(|url| url.host_str().map(str::to_owned))
            .is_some_and(|host| {
                host == "localhost"
                    || host.ends_with(".localhost")
                    || host == "host.docker.internal"
                    || host
                        .trim_matches(['[', ']'])
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback())
            })
    }

    /// True when a hosted API is configured without a key: every call would be refused.
    pub fn missing_key(&self) -> bool {
        self.api_key.is_none() && !self.is_local()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(base_url: &str, api_key: Option<&str>) -> LlmConfig {
        LlmConfig {
            base_url: base_url.into(),
            api_key: api_key.map(str::to_owned),
            model: "m".into(),
            request_timeout: Duration::from_secs(5),
            max_attempts: 1,
            initial_backoff: Duration::from_millis(1),
        }
    }

    #[test]
    fn local_servers_need_no_key() {
        assert!(!config("http://localhost:11434/v1", None).missing_key());
        assert!(!config("http://127.0.0.1:8000/v1", None).missing_key());
        assert!(!config("http://[::1]:8000/v1", None).missing_key());
        assert!(config("https://openrouter.ai/api/v1", None).missing_key());
        assert!(!config("https://openrouter.ai/api/v1", Some("k")).missing_key());
    }
}
