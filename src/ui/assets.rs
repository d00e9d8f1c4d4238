//! Static assets (htmx, the stylesheet, a little script) embedded in the binary, named by
//! content hash so browsers may cache them forever. `web` serves them.

use std::collections::HashMap;
use std::sync::OnceLock;

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

/// An asset's bytes, and whether `hash` is its current content hash.
pub fn file(path: &str, hash: &str) -> Option<(Vec<u8>, bool)> {
    let file = Assets::get(path)?;
    Some((
        file.data.into_owned(),
        hashes().get(path).is_some_and(|current| current == hash),
    ))
}
