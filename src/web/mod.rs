//! The HTTP surface: the JSON API, the pages, the progress WebSocket and static assets.

pub mod api;
pub mod assets;
mod auth;
mod data;
mod download;
mod edits;
mod error;
mod extract;
mod git;
mod guard;
mod import;
mod pages;
mod publish;
mod remote;
mod rows;
mod screenshots;
pub mod selection;
pub mod upload;
mod versions;
mod ws;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::routing::{any, get, patch, post, put};
use tower_http::trace::TraceLayer;
use uuid::Uuid;

pub use crate::ui::Setup;
pub use error::AppError;
pub use guard::Guard;
pub use remote::push_after_versions;

use crate::events::EventHub;
use crate::jobs::{JobQueue, PreviewAddress};
use crate::store::Store;

/// Largest request body accepted (JSON and forms); larger ones get 413.
pub const MAX_BODY_BYTES: usize = 1 << 20;

#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub events: EventHub,
    pub jobs: JobQueue,
    pub preview: PreviewAddress,
    pub setup: Arc<Setup>,
    /// Cancelled when the server shuts down; long-lived connections (WebSockets) end then.
    pub shutdown: tokio_util::sync::CancellationToken,
    pub auth: crate::auth::Auth,
    pub metrics: Arc<crate::metrics::Metrics>,
    pub publisher: Arc<crate::publish::Publisher>,
    /// Each project's versions as a git repository, for `git clone`.
    pub git: Arc<crate::git::Repositories>,
}

impl AppState {
    pub fn preview_url(&self, project_id: Uuid) -> String {
        self.preview.url_for(project_id)
    }

    /// A link that opens the preview in a browser, signed when a token is required.
    pub fn preview_link(&self, project_id: Uuid) -> String {
        let url = self.preview_url(project_id);
        if !self.auth.enabled() {
            return url;
        }
        format!(
            "{}{}?{}",
            url.trim_end_matches('/'),
            crate::auth::PREVIEW_AUTH_PATH,
            self.auth.preview_link_query(project_id)
        )
    }
}

/// The whole router; `serve` and the tests use the same one. `guard` says which names and
/// origins it answers to.
pub fn app(state: AppState, guard: Arc<Guard>) -> Router {
    let api = Router::new()
        .route(
            "/projects",
            get(api::list_projects)
                .post(api::create_project)
                .layer(DefaultBodyLimit::max(upload::MAX_UPLOAD_BYTES)),
        )
        .route(
            "/projects/import",
            post(import::api_import).layer(DefaultBodyLimit::max(import::MAX_ZIP_BYTES)),
        )
        .route(
            "/projects/{id}",
            get(api::get_project).delete(api::delete_project),
        )
        .route(
            "/projects/{id}/messages",
            axum::routing::post(api::add_message)
                .layer(DefaultBodyLimit::max(upload::MAX_UPLOAD_BYTES)),
        )
        .route("/projects/{id}/events", get(api::project_events))
        .route("/projects/{id}/cancel", post(api::cancel))
        .route("/projects/{id}/versions", get(api::list_versions))
        .route("/projects/{id}/edits", post(edits::api_edit))
        .route("/projects/{id}/data", get(data::api_tables))
        .route(
            "/projects/{id}/snapshots/{snapshot_id}/restore",
            post(data::api_restore),
        )
        .route("/projects/{id}/data/{table}", get(data::api_rows))
        .route(
            "/projects/{id}/data/{table}/rows",
            patch(rows::api_update).delete(rows::api_delete),
        )
        .route(
            "/projects/{id}/versions/{version_id}/restore",
            post(api::restore_version),
        )
        .route(
            "/projects/{id}/versions/{version_id}/diff",
            get(versions::api_diff),
        )
        .route(
            "/projects/{id}/versions/{version_id}/check",
            get(screenshots::api_check),
        )
        .route(
            "/projects/{id}/versions/{version_id}/screenshots/{index}",
            get(screenshots::screenshot),
        )
        .route(
            "/projects/{id}/publish",
            post(publish::api_publish)
                .patch(publish::api_change)
                .delete(publish::api_unpublish),
        )
        .route("/projects/{id}/publish/backup", post(publish::api_back_up))
        .route("/projects/{id}/export", post(publish::api_export))
        .route("/apps", get(publish::api_apps))
        .route(
            "/projects/{id}/remote",
            put(remote::api_set).delete(remote::api_forget),
        )
        .route("/projects/{id}/push", post(remote::api_push))
        .route("/projects/{id}/pull", post(remote::api_pull))
        .fallback(|| async { AppError::NotFound("API route") });
    let pages = Router::new()
        .route("/", get(pages::home_page))
        .route("/setup/sandbox", get(pages::sandbox_banner))
        .route(
            "/projects",
            get(pages::more_projects)
                .post(pages::create_project)
                .layer(DefaultBodyLimit::max(upload::MAX_UPLOAD_BYTES)),
        )
        .route(
            "/projects/{id}",
            get(pages::project_page).delete(pages::delete_project),
        )
        .route(
            "/projects/{id}/messages",
            post(pages::add_message).layer(DefaultBodyLimit::max(upload::MAX_UPLOAD_BYTES)),
        )
        .route(
            "/projects/{id}/messages/{message_id}/images/{index}",
            get(pages::image),
        )
        .route(
            "/projects/{id}/versions/{version_id}/screenshots/{index}",
            get(screenshots::screenshot),
        )
        .route("/projects/{id}/cancel", post(pages::cancel))
        .route(
            "/projects/{id}/versions/{version_id}/restore",
            post(pages::restore_version),
        )
        .route("/projects/{id}/workspace", get(pages::workspace))
        .route("/projects/{id}/data-panel", get(data::panel))
        .route(
            "/projects/{id}/snapshots/{snapshot_id}/restore",
            post(data::restore_snapshot),
        )
        .route("/projects/{id}/data/{table}/csv", get(data::csv_download))
        .route("/projects/{id}/data/{table}/rows", post(rows::form))
        .route("/projects/{id}/edit", get(edits::panel).post(edits::apply))
        .route(
            "/projects/{id}/publish",
            get(publish::panel_page).post(publish::form_publish),
        )
        .route("/projects/{id}/unpublish", post(publish::form_unpublish))
        .route("/projects/{id}/publish/fix", post(publish::fix_build))
        .route(
            "/projects/{id}/messages/{message_id}/fix",
            post(import::fix_install),
        )
        .route("/projects/{id}/publish/backup", post(publish::form_back_up))
        .route("/projects/{id}/publish/name", post(publish::form_rename))
        .route(
            "/projects/{id}/fragments/{message_id}/download",
            get(download::download),
        )
        .route(
            "/projects/{id}/remote",
            get(remote::panel).post(remote::form_set),
        )
        .route("/projects/{id}/remote/forget", post(remote::form_forget))
        .route("/projects/{id}/push", post(remote::form_push))
        .route("/projects/{id}/pull", post(remote::form_pull))
        .route(
            "/projects/import",
            post(import::form_import).layer(DefaultBodyLimit::max(import::MAX_ZIP_BYTES)),
        )
        .route("/projects/{id}/ws", get(ws::progress_socket))
        .route("/login", get(auth::login_page).post(auth::login))
        .route("/logout", post(auth::logout))
        .fallback(|| async { AppError::NotFound("page") })
        .layer(middleware::map_response_with_state(
            state.clone(),
            pages::errors_as_html,
        ));
    Router::new()
        .merge(pages)
        .route("/assets/{hash}/{*path}", get(assets::serve))
        .nest("/api", api)
        .route("/healthz", get(|| async { "ok" }))
        .route("/git/{repository}/info/refs", get(git::refs))
        .route("/git/{repository}/git-upload-pack", post(git::upload_pack))
        .route("/git/{repository}/{*rest}", any(git::refused))
        .route("/metrics", get(api::metrics))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_login,
        ))
        .layer(middleware::from_fn_with_state(guard, guard::check))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}
