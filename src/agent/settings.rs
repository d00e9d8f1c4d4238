//! How an agent run is bounded and what it checks: steps, time, fixes, tokens.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct AgentSettings {
    pub max_iterations: u32,
    pub command_timeout: Duration,
    /// How long the sandbox should stay alive after each tool call.
    pub sandbox_lifetime: Duration,
    /// Wall-clock limit of a whole job, so no job runs forever.
    pub job_timeout: Duration,
    /// Check the app after the agent's summary (type check, dev server, pages). Needs the
    /// Next.js template's dev server in the sandbox.
    pub verify: bool,
    /// Rounds of "here is what fails, fix it" after a failed check.
    pub fix_attempts: u32,
    /// The sandbox has no network (`CODEFLUX_SANDBOX_NETWORK=none`): nothing can be installed.
    pub offline: bool,
    /// Open each page in the sandbox's headless Chromium as the last check.
    pub browser_check: bool,
    /// The model reads images: the browser check's screenshot of `/` goes to it once, to
    /// judge whether the app looks like what was asked.
    pub model_sees_images: bool,
    /// Most tokens (prompt and completion, every call: agent, fixes, title, reply) one
    /// request may spend (`CODEFLUX_REQUEST_TOKEN_BUDGET`); `None`: no limit.
    pub token_budget: Option<u64>,
}

impl Default for AgentSettings {
    fn default() -> Self {
        Self {
            max_iterations: 30,
            command_timeout: Duration::from_secs(300),
            sandbox_lifetime: Duration::from_secs(1800),
            job_timeout: Duration::from_secs(1800),
            verify: true,
            fix_attempts: 3,
            offline: false,
            browser_check: true,
            model_sees_images: false,
            token_budget: None,
        }
    }
}
