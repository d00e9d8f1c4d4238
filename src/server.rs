//! Wiring: builds the long-lived parts from configuration and serves them.

use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::agent::AgentSettings;
use crate::events::EventHub;
use crate::hosts::{PreviewHosts, UiHosts};
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
    /// Access control; open unless `CODEFLUX_AUTH_TOKEN` is set.
    pub auth: crate::auth::Auth,
    /// Extra CA (PEM) the preview proxy trusts for `https` dev servers.
    pub preview_extra_ca: Option<Vec<u8>>,
    /// The origin people open the UI at, when it is not the listen address
    /// (`CODEFLUX_PUBLIC_URL`); the element picker in previews talks to it.
    pub public_origin: Option<String>,
    /// More names the UI and previews answer to (`CODEFLUX_ALLOWED_HOSTS`).
    pub allowed_hosts: Vec<String>,
    /// How many snapshots of each app's data are kept, and in how many bytes.
    pub data_limits: crate::store::snapshots::SnapshotLimits,
    /// Where published apps answer (`CODEFLUX_APPS_URL`); `<name>.apps.localhost` on the
    /// preview port when `None`.
    pub apps_url: Option<String>,
    /// The Docker engine published apps run on.
    pub publish_engine: PublishEngine,
    /// How often each running published app's data is backed up when it changed
    /// (`CODEFLUX_PUBLISHED_BACKUP_SECS`); `None`: only at republish, unpublish and on request.
    pub published_backup: Option<std::time::Duration>,
    /// Token prices for cost figures when the server reports none.
    pub prices: Option<crate::llm::Prices>,
}

/// The engine for published apps, or why there is none.
#[derive(Clone)]
pub struct PublishEngine(pub Result<Arc<crate::sandbox::docker::DockerProvider>, String>);

impl Default for PublishEngine {
    fn default() -> Self {
        Self(Err("no Docker engine is set up".into()))
    }
}

impl std::fmt::Debug for PublishEngine {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Ok(_) => formatter.write_str("PublishEngine(docker)"),
            Err(problem) => write!(formatter, "PublishEngine(none: {problem})"),
        }
    }
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
    #[error("cannot set up the preview proxy: {0}")]
    Preview(#[from] crate::preview::ForwardError),
    #[error(transparent)]
    Hosts(#[from] crate::hosts::HostsError),
}

/// `<name>.apps.localhost` on the preview listener's port, unless `CODEFLUX_APPS_URL`.
fn apps_url(settings: &Settings) -> Result<crate::hosts::AppsUrl, crate::hosts::HostsError> {
    match &settings.apps_url {
        Some(template) => crate::hosts::AppsUrl::new(template),
        None => {
            let port =
                reqwest::Url::parse(&settings.preview_url_template.replace("{project}", "p"))
                    .ok()
                    .and_then(|url| url.port_or_known_default())
                    .unwrap_or(3001);
            Ok(crate::hosts::AppsUrl::default_for(port))
        }
    }
}

/// The running parts, built once.
pub struct Services {
    pub state: AppState,
    pub jobs: JobQueue,
    preview_extra_ca: Option<Vec<u8>>,
    public_origin: Option<String>,
    allowed_hosts: Vec<String>,
    preview_url_template: String,
    published_backup: Option<std::time::Duration>,
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

    /// Like [`Services::build_with_llm`], on a store the caller already opened.
    pub async fn build_on(
        store: Store,
        settings: &Settings,
        llm: Arc<dyn Llm>,
        sandboxes: Option<Arc<dyn SandboxProvider>>,
        setup: Setup,
    ) -> Result<Self, ServerError> {
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
        let metrics = Arc::new(crate::metrics::Metrics::new());
        let llm: Arc<dyn Llm> = Arc::new(crate::metrics::MeteredLlm {
            inner: llm,
            metrics: metrics.clone(),
            prices: settings.prices,
        });
        let generation = Arc::new(Generation {
            metrics: metrics.clone(),
            store: store.clone(),
            journals: Default::default(),
            events: events.clone(),
            llm,
            sandboxes,
            settings: settings.agent.clone(),
            preview: preview.clone(),
            data_limits: settings.data_limits,
            data_saves: Default::default(),
            versions_made: tokio::sync::broadcast::channel(64).0,
        });
        let jobs = JobQueue::new(generation, settings.max_jobs);
        let publisher = crate::publish::Publisher::new(
            store.clone(),
            settings.publish_engine.0.clone(),
            apps_url(settings)?,
            settings.data_limits,
        )?;
        let recovery = jobs.recover().await?;
        if recovery != Default::default() {
            tracing::info!(?recovery, "recovered jobs interrupted by the last shutdown");
        }
        let git = Arc::new(crate::git::Repositories::new(
            match &settings.data_dir {
                Some(dir) => dir.join("git"),
                None => std::env::temp_dir().join(format!("codeflux-git-{}", uuid::Uuid::now_v7())),
            },
            &store,
        )?);
        let state = AppState {
            store,
            events,
            jobs: jobs.clone(),
            preview,
            setup: Arc::new(Setup {
                auth_enabled: settings.auth.enabled(),
                ..setup
            }),
            shutdown: CancellationToken::new(),
            auth: settings.auth.clone(),
            metrics,
            publisher,
            git,
        };
        Ok(Self {
            state,
            jobs,
            preview_extra_ca: settings.preview_extra_ca.clone(),
            public_origin: settings.public_origin.clone(),
            allowed_hosts: settings.allowed_hosts.clone(),
            preview_url_template: settings.preview_url_template.clone(),
            published_backup: settings.published_backup,
        })
    }

    /// Serves the UI and API on `listener`, and previews on `preview_listener`, until
    /// `shutdown` resolves. Then it stops within [`SHUTDOWN_LIMIT`]: no new connections,
    /// WebSockets closed, running jobs stopped and put back in the queue, sandboxes stopped
    /// (files kept), storage flushed.
    pub async fn serve(
        self,
        listener: TcpListener,
        preview_listener: Option<TcpListener>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let stop = self.state.shutdown.clone();
        tokio::spawn({
            let stop = stop.clone();
            async move {
                shutdown.await;
                stop.cancel();
            }
        });
        let address: SocketAddr = listener.local_addr()?;
        let ui_hosts = UiHosts::new(address, self.public_origin.as_deref(), &self.allowed_hosts)?;
        let preview_hosts = PreviewHosts::new(&self.preview_url_template, &self.allowed_hosts)?;
        let guard = Arc::new(crate::web::Guard::new(ui_hosts, &self.preview_url_template));
        let previews = match preview_listener {
            Some(preview_listener) => {
                let targets = Arc::new(Revival::new(self.jobs.generation().clone()));
                let metrics = self.state.metrics.clone();
                let router = crate::preview::router(
                    targets,
                    crate::preview::PreviewOptions {
                        auth: self.state.auth.clone(),
                        extra_ca: self.preview_extra_ca.clone(),
                        ui_origins: ui_origins(address, self.public_origin.as_deref()),
                        hosts: preview_hosts,
                        apps: Some(self.state.publisher.clone()),
                    },
                )?
                .layer(axum::middleware::map_response(
                    move |response: axum::response::Response| {
                        metrics.preview_answered(response.status().as_u16());
                        std::future::ready(response)
                    },
                ));
                if let Ok(address) = preview_listener.local_addr() {
                    tracing::info!(
                        "previews are served on http://<project>.localhost:{}",
                        address.port()
                    );
                }
                Some(tokio::spawn(crate::preview::serve(
                    preview_listener,
                    router,
                    stop.clone().cancelled_owned(),
                )))
            }
            None => None,
        };
        let dispatcher = self.jobs.start();
        tokio::spawn(crate::web::push_after_versions(
            self.state.clone(),
            self.jobs.generation().versions_made.subscribe(),
        ));
        if let Some(every) = self.published_backup {
            tokio::spawn(
                self.state
                    .publisher
                    .clone()
                    .back_up_on_schedule(every, stop.clone()),
            );
        }
        // Published apps answer again as soon as the listener is up.
        tokio::spawn({
            let publisher = self.state.publisher.clone();
            async move { publisher.resume().await }
        });
        tracing::info!("CodeFlux is listening on http://{address}");
        let mut server = tokio::spawn(
            axum::serve(listener, crate::web::app(self.state.clone(), guard))
                .with_graceful_shutdown(stop.clone().cancelled_owned())
                .into_future(),
        );
        // Set when the server task has ended here: a finished JoinHandle must not be awaited
        // again below. (Both branches can be ready at once: the stop also ends the server.)
        let mut server_ended = false;
        tokio::select! {
            _ = stop.cancelled() => {}
            result = &mut server => {
                server_ended = true;
                // Either the stop ended it, or the listener failed on its own; shut the rest
                // down the same way.
                stop.cancel();
                result.map_err(std::io::Error::other)??;
            }
        }
        let started = tokio::time::Instant::now();
        if tokio::time::timeout(JOBS_LIMIT, self.jobs.shutdown())
            .await
            .is_err()
        {
            tracing::warn!(
                "running jobs did not stop in time; they are recovered on the next start"
            );
        }
        if let Some(provider) = &self.jobs.generation().sandboxes {
            match tokio::time::timeout(SANDBOXES_LIMIT, provider.shutdown()).await {
                Ok(Ok(0)) => {}
                Ok(Ok(stopped)) => tracing::info!(stopped, "stopped the running sandboxes"),
                Ok(Err(error)) => tracing::warn!(%error, "could not stop the sandboxes"),
                Err(_) => tracing::warn!(
                    "stopping the sandboxes took too long; `codeflux sandboxes` lists them"
                ),
            }
        }
        let rest = SHUTDOWN_LIMIT.saturating_sub(started.elapsed());
        let _ = tokio::time::timeout(rest, async {
            if !server_ended {
                let _ = server.await;
            }
            if let Some(previews) = previews {
                let _ = previews.await;
            }
            let _ = dispatcher.await;
        })
        .await;
        tracing::info!(elapsed = ?started.elapsed(), "stopped");
        Ok(())
    }
}

/// How long shutting down may take in all: under the 10 s that `docker stop` and systemd
/// give a service before they kill it.
pub const SHUTDOWN_LIMIT: Duration = Duration::from_secs(9);
const JOBS_LIMIT: Duration = Duration::from_secs(3);
const SANDBOXES_LIMIT: Duration = Duration::from_secs(5);

/// The origins a browser may open the UI at: the public URL's, and the listen address's
/// (by `localhost` and loopback for a local or all-interfaces listener).
pub fn ui_origins(listen: SocketAddr, public_origin: Option<&str>) -> Vec<String> {
    let port = listen.port();
    let mut origins: Vec<String> = public_origin.map(str::to_string).into_iter().collect();
    let ip = listen.ip();
    if ip.is_loopback() || ip.is_unspecified() {
        origins.push(format!("http://localhost:{port}"));
        origins.push(format!("http://127.0.0.1:{port}"));
        origins.push(format!("http://[::1]:{port}"));
    } else {
        origins.push(format!("http://{listen}"));
    }
    origins.dedup();
    origins
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ui_origins_are_the_public_url_and_the_listen_address() {
        let local: SocketAddr = "127.0.0.1:3000".parse().unwrap();
        assert_eq!(
            ui_origins(local, None),
            [
                "http://localhost:3000",
                "http://127.0.0.1:3000",
                "http://[::1]:3000"
            ]
        );
        let everywhere: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        assert_eq!(
            ui_origins(everywhere, Some("https://codeflux.example.com"))[0],
            "https://codeflux.example.com"
        );
        let lan: SocketAddr = "192.168.1.20:3000".parse().unwrap();
        assert_eq!(ui_origins(lan, None), ["http://192.168.1.20:3000"]);
    }
}
