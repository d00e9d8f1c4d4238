//! Whether the sandbox backend can take a job right now, as the UI shows it: on a first run
//! the Docker image is built in the background, which takes minutes.

use std::sync::{Arc, RwLock};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    Ready,
    /// The sandbox image is being built; `step` is the build's latest output line.
    Preparing {
        step: String,
    },
    /// The image could not be built; jobs will fail with this until it is fixed.
    Failed {
        error: String,
    },
}

/// A shared, cheaply cloned view of the backend's readiness.
#[derive(Debug, Clone)]
pub struct ReadinessCell(Arc<RwLock<Readiness>>);

impl Default for ReadinessCell {
    fn default() -> Self {
        Self(Arc::new(RwLock::new(Readiness::Ready)))
    }
}

impl ReadinessCell {
    pub fn get(&self) -> Readiness {
        self.0
            .read()
            .unwrap_or_else(|poison| poison.into_inner())
            .clone()
    }

    pub fn set(&self, readiness: Readiness) {
        *self.0.write().unwrap_or_else(|poison| poison.into_inner()) = readiness;
    }
}
