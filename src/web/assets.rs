//! Serves the UI's embedded assets under their content-hashed URLs (`ui::assets`).

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

pub use crate::ui::assets::url;

/// Serves `/assets/{hash}/{path}`; a stale hash still gets the file, just not cached.
pub async fn serve(Path((hash, path)): Path<(String, String)>) -> Response {
    let Some((data, current)) = crate::ui::assets::file(&path, &hash) else {
        return (StatusCode::NOT_FOUND, "no such asset").into_response();
    };
    let content_type = mime_guess::from_path(&path).first_or_octet_stream();
    let cache = if current {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    (
        [
            (header::CONTENT_TYPE, content_type.essence_str().to_string()),
            (header::CACHE_CONTROL, cache.to_string()),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_string()),
        ],
        data,
    )
        .into_response()
}
