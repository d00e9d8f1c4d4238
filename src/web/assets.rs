//! Static assets (htmx, the stylesheet, a little script) embedded in the binary and served
//! under content-hashed URLs, so browsers may cache them forever.

use std::collections::HashMap;
use std::sync::OnceLock;

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use rust_embed::RustEmbed;
use sha2::{Digest, Sha256};

#[derive(RustEmbed)]
#[folder = "web/"]
struct Assets;

fn hashes() -> &'static HashMap<String, String> {
    static HASHES: OnceLock<HashMap<String, String>> = OnceLock::new();
    HASHES.get_or_init(|| {
        Assets::iter()
            .filter_map(|name| {
                let file = Assets::get(&name)?;
                let digest = hex::encode(Sha256::digest(&file.data));
                Some((name.into_owned(), digest[..10].to_string()))
            })
            .collect()
    })
}

/// The cache-busting URL of an embedded asset, e.g. `/assets/3f2a9c01de/app.css`.
pub fn url(path: &str) -> String {
    let hash = hashes().get(path).map_or("missing", String::as_str);
    format!("/assets/{hash}/{path}")
}

/// Serves `/assets/{hash}/{path}`; a stale hash still gets the file, just not cached.
pub async fn serve(Path((hash, path)): Path<(String, String)>) -> Response {
    let Some(file) = Assets::get(&path) else {
        return (StatusCode::NOT_FOUND, "no such asset").into_response();
    };
    let content_type = mime_guess::from_path(&path).first_or_octet_stream();
    let cache = if hashes().get(&path) == Some(&hash) {
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
        file.data.into_owned(),
    )
        .into_response()
}
