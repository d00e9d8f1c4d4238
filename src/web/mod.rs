//! The HTTP surface: the JSON API, the pages, the progress WebSocket and static assets.

pub mod api;
mod error;

use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use tower_http::trace::TraceLayer;
use uuid::Uuid;

pub use error::AppError;

use crate::events::EventHub;
use crate::jobs::{JobQueue, PreviewAddress};
use crate::store::Store;

/// What is (not) configured, so the UI can say exactly which variable to set.
#[derive(Debug, Clone, Default)]
pub struct Setup {
    /// e.g. "docker" or "e2b"; `None` when no backend answered.
    pub sandbox_backend: Option<String>,
    /// Why no backend is available, when none is.
    pub sandbox_problem: Option<String>,
    pub model: String,
    /// Set when the model API cannot work as configured (e.g. a hosted API without a key).
    pub model_problem: Option<String>,
}

#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub events: EventHub,
    pub jobs: JobQueue,
    pub preview: PreviewAddress,
    pub setup: Arc<Setup>,
}

impl AppState {
    pub fn preview_url(&self, project_id: Uuid) -> String {
        self.preview.url_for(project_id)
    }
}

/// The whole router; `serve` and the tests use the same one.
pub fn app(state: AppState) -> Router {
    let api = Router::new()
        .route(
            "/projects",
            get(api::list_projects).post(api::create_project),
        )
        .route(
            "/projects/{id}",
            get(api::get_project).delete(api::delete_project),
        )
        .route(
            "/projects/{id}/messages",
            axum::routing::post(api::add_message),
        )
        .route("/projects/{id}/events", get(api::project_events))
        .fallback(|| async { AppError::NotFound("API route") });
    Router::new()
        .nest("/api", api)
        .route("/healthz", get(|| async { "ok" }))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}
