//! Chooses the sandbox backend from the environment (`CODEFLUX_SANDBOX`).

use std::sync::Arc;

use super::SandboxProvider;

/// The chosen backend, or why there is none.
pub struct Selected {
    pub provider: Option<Arc<dyn SandboxProvider>>,
    pub problem: Option<String>,
}

pub async fn from_env() -> Selected {
    Selected {
        provider: None,
        problem: Some("No sandbox backend is available yet in this build.".into()),
    }
}
