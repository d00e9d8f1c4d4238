//! The preview reverse proxy: a second listener that serves each project's dev server at
//! `http://<project-id>.localhost:<port>/`, an origin apart from the UI's. The URL stays the
//! same when the sandbox behind it is replaced; a stopped sandbox is woken on first visit.

mod access;
mod apps;
mod forward;
mod pages;
mod picker;

use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::header::{ACCEPT_ENCODING, CONTENT_TYPE};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use tokio::net::TcpListener;
use uuid::Uuid;

use crate::auth::Auth;
pub use crate::hosts::PreviewHosts;
use crate::sandbox::PreviewUpstream;
pub use apps::{AppTarget, PublishedApps};

/// What happened when a visit asked for a stopped sandbox to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wake {
    /// The sandbox is starting (now or already); the page will refresh.
    Starting,
    /// No such project.
    UnknownProject,
    /// It cannot start; the reason is shown.
    Unavailable(String),
}

/// Where previews come from: the running sandbox of a project, and a way to start one.
#[async_trait]
pub trait PreviewTargets: Send + Sync {
    /// The dev server of the project's running sandbox, if it is running.
    async fn upstream(&self, project_id: Uuid) -> Result<Option<PreviewUpstream>, String>;

    /// Starts the project's sandbox in the background (restoring its files).
    async fn wake(&self, project_id: Uuid) -> Wake;

    /// A request that may have changed the app's data went through (anything but GET, HEAD
    /// and OPTIONS: server actions are POSTs), so its data is worth saving again.
    fn data_may_have_changed(&self, _project_id: Uuid) {}
}

/// Previews of running sandboxes only: a stopped one is reported, not started. For tools
/// and tests that drive a provider directly; `serve` uses the reviving targets of `jobs`.
pub struct RunningOnly(pub Arc<dyn crate::sandbox::SandboxProvider>);

#[async_trait]
impl PreviewTargets for RunningOnly {
    async fn upstream(&self, project_id: Uuid) -> Result<Option<PreviewUpstream>, String> {
        self.0
            .preview_upstream(project_id)
            .await
            .map_err(|error| error.to_string())
    }

    async fn wake(&self, _project_id: Uuid) -> Wake {
        Wake::Unavailable("The sandbox is not running.".into())
    }
}

#[derive(Clone)]
struct Proxy {
    targets: Arc<dyn PreviewTargets>,
    forwarder: forward::Forwarder,
    auth: Auth,
    /// The picker's `<script>` tag for pages, when the UI's origins are known.
    picker_tag: Option<bytes::Bytes>,
    /// The names previews are served at; other `Host`s are refused.
    hosts: PreviewHosts,
    /// Published apps, served at their own names on this listener.
    apps: Option<Arc<dyn PublishedApps>>,
}

/// How the proxy treats visitors and dev servers.
#[derive(Clone, Default)]
pub struct PreviewOptions {
    /// With a token configured, a preview is shown only to browsers that opened a signed
    /// link to it.
    pub auth: Auth,
    /// A PEM bundle trusted besides the system's roots for `https` dev servers (a
    /// self-hosted E2B with its own CA): `CODEFLUX_PREVIEW_CA_CERT`.
    pub extra_ca: Option<Vec<u8>>,
    /// Origins the UI is opened at (`http://localhost:3000`, `CODEFLUX_PUBLIC_URL`): the
    /// element picker added to preview pages talks to these only. Empty: no picker.
    pub ui_origins: Vec<String>,
    /// The names previews answer to (`<project id>.localhost` unless configured).
    pub hosts: PreviewHosts,
    /// Published apps, when publishing is set up.
    pub apps: Option<Arc<dyn PublishedApps>>,
}

pub use forward::ForwardError;

/// The preview router; every request is routed by its `Host`.
pub fn router(
    targets: Arc<dyn PreviewTargets>,
    options: PreviewOptions,
) -> Result<Router, ForwardError> {
    let proxy = Proxy {
        targets,
        forwarder: forward::Forwarder::new(options.extra_ca.as_deref())?,
        auth: options.auth,
        picker_tag: (!options.ui_origins.is_empty())
            .then(|| picker::script_tag(&options.ui_origins)),
        hosts: options.hosts,
        apps: options.apps,
    };
    Ok(Router::new().fallback(handle).with_state(proxy))
}

/// Serves previews on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

async fn handle(State(proxy): State<Proxy>, mut request: Request) -> Response {
    // Checked before anything else, upgrades (hot reload) included: a name that is not a
    // preview address is a rebinding page or a misconfiguration, and wakes nothing.
    let host = crate::hosts::request_authority(&request);
    if let Some(name) = proxy.apps.as_ref().and_then(|apps| apps.app_name(&host)) {
        return apps::serve(&proxy, &name, &host, request).await;
    }
    let Some(project_id) = proxy.hosts.project(&host) else {
        tracing::warn!(%host, "refused a preview request for a host that is not a preview address");
        return (
            StatusCode::MISDIRECTED_REQUEST,
            [(CONTENT_TYPE, "text/plain; charset=utf-8")],
            proxy.hosts.refusal(&host),
        )
            .into_response();
    };
    if let Some(refusal) = access::check(&proxy.auth, project_id, &request) {
        return refusal;
    }
    // The preview session is CodeFlux's, not the app's: the app never sees it.
    access::strip_session(request.headers_mut());
    if request.uri().path() == picker::SCRIPT_PATH && proxy.picker_tag.is_some() {
        return picker::script();
    }
    // Pages get the picker's tag, so they are asked for uncompressed.
    let tag = proxy
        .picker_tag
        .clone()
        .filter(|_| picker::wants_page(request.method(), request.headers()));
    if tag.is_some() {
        request.headers_mut().remove(ACCEPT_ENCODING);
    }
    let may_write = !matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    match proxy.targets.upstream(project_id).await {
        Ok(Some(upstream)) => match proxy.forwarder.forward(&upstream, request).await {
            Ok(response) => match tag {
                _ if may_write => {
                    proxy.targets.data_may_have_changed(project_id);
                    response
                }
                Some(tag) => picker::inject(response, tag),
                None => response,
            },
            // Running, but the dev server does not answer yet: it is still starting.
            Err(forward::ForwardError::Connect(_)) => pages::starting(),
            Err(error) => pages::bad_gateway(&error.to_string()),
        },
        Ok(None) => match proxy.targets.wake(project_id).await {
            Wake::Starting => pages::starting(),
            Wake::UnknownProject => pages::not_found(&host),
            Wake::Unavailable(reason) => pages::unavailable(&reason),
        },
        Err(reason) => pages::bad_gateway(&reason),
    }
}
