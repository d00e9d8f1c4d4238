//! Wiring: builds the long-lived parts from configuration and serves them.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::agent::AgentSettings;
use crate::events::EventHub;
use crate::jobs::{Generation, JobQueue, PreviewAddress, Revival};
use crate::llm::{Llm, LlmConfig, OpenAiClient};
use crate::sandbox::SandboxProvider;
use crate::store::Store;
use crate::web::{AppState, Setup};

/// Everything `serve` and `generate` need, resolved from flags and the environment.
#[derive(Debug, Clone)]
pub struct Settings {
    pub data_dir: Option<PathBuf>,
    pub max_jobs: usize,
    pub agent: AgentSettings,
    pub preview_url_template: String,
    pub llm: LlmConfig,
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot open the data directory {path}: {source}")]
    Store {
        path: String,
        source: crate::store::StoreError,
    },
    #[error(transparent)]
    StoreFailure(#[from] crate::store::StoreError),
    #[error("cannot set up the model client: {0}")]
    Llm(#[from] crate::llm::LlmError),
    #[error("server failed: {0}")]
    Io(#[from] std::io::Error),
}

/// The running parts, built once.
pub struct Services {
    pub state: AppState,
    pub jobs: JobQueue,
}

impl Services {
    /// Opens storage, recovers interrupted jobs and prepares (but does not start) the queue.
    pub async fn build(
        settings: &Settings,
        sandboxes: Option<Arc<dyn SandboxProvider>>,
        setup: Setup,
    ) -> Result<Self, ServerError> {
        let llm: Arc<dyn Llm> = Arc::new(OpenAiClient::new(settings.llm.clone())?);
        Self::build_with_llm(settings, llm, sandboxes, setup).await
    }

    /// Like [`Services::build`], on a store the caller already opened.
    pub async fn build_on(
        store: Store,
        settings: &Settings,
        sandboxes: Option<Arc<dyn SandboxProvider>>,
        setup: Setup,
    ) -> Result<Self, ServerError> {
        let llm: Arc<dyn Llm> = Arc::new(OpenAiClient::new(settings.llm.clone())?);
        Self::assemble(store, settings, llm, sandboxes, setup).await
    }

    pub async fn build_with_llm(
        settings: &Settings,
        llm: Arc<dyn Llm>,
        sandboxes: Option<Arc<dyn SandboxProvider>>,
        setup: Setup,
    ) -> Result<Self, ServerError> {
        let store = match &settings.data_dir {
            Some(path) => Store::open(path).map_err(|source| ServerError::Store {
                path: path.display().to_string(),
                source,
            })?,
            None => Store::temporary()?,
        };
        Self::assemble(store, settings, llm, sandboxes, setup).await
    }

    async fn assemble(
        store: Store,
        settings: &Settings,
        llm: Arc<dyn Llm>,
        sandboxes: Option<Arc<dyn SandboxProvider>>,
        setup: Setup,
    ) -> Result<Self, ServerError> {
        let events = EventHub::new(store.clone());
        let preview = PreviewAddress {
            template: settings.preview_url_template.clone(),
        };
        let generation = Arc::new(Generation {
            store: store.clone(),
            events: events.clone(),
            llm,
            sandboxes,
            settings: settings.agent.clone(),
            preview: preview.clone(),
        });
        let jobs = JobQueue::new(generation, settings.max_jobs);
        let recovery = jobs.recover().await?;
        if recovery != Default::default() {
            tracing::info!(?recovery, "recovered jobs interrupted by the last shutdown");
        }
        let state = AppState {
            store,
            events,
            jobs: jobs.clone(),
            preview,
            setup: Arc::new(setup),
        };
        Ok(Self { state, jobs })
    }

    /// Serves the UI and API on `listener`, and previews on `preview_listener`, until
    /// `shutdown` resolves.
    pub async fn serve(
        self,
        listener: TcpListener,
        preview_listener: Option<TcpListener>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let stop = CancellationToken::new();
        tokio::spawn({
            let stop = stop.clone();
            async move {
                shutdown.await;
                stop.cancel();
            }
        });
        let dispatcher = self.jobs.start();
        let previews = preview_listener.map(|preview_listener| {
            let targets = Arc::new(Revival::new(self.jobs.generation().clone()));
            let stop = stop.clone();
            if let Ok(address) = preview_listener.local_addr() {
                tracing::info!(
                    "previews are served on http://<project>.localhost:{}",
                    address.port()
                );
            }
            tokio::spawn(crate::preview::serve(
                preview_listener,
                targets,
                stop.cancelled_owned(),
            ))
        });
        let address: SocketAddr = listener.local_addr()?;
        tracing::info!("CodeFlux is listening on http://{address}");
        axum::serve(listener, crate::web::app(self.state))
            .with_graceful_shutdown(stop.clone().cancelled_owned())
            .await?;
        self.jobs.shutdown();
        if let Some(previews) = previews {
            let _ = tokio::time::timeout(Duration::from_secs(2), previews).await;
        }
        // Give the dispatcher a moment to notice; running jobs are recovered on next start.
        let _ = tokio::time::timeout(Duration::from_secs(1), dispatcher).await;
        Ok(())
    }
}
