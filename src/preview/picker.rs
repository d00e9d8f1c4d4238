//! The element picker: a script that runs on the preview origin, outlines the element under
//! the pointer with its source location (the `data-cf-loc` tags the template's dev server
//! adds) and tells the UI which one was clicked. The proxy serves it at [`SCRIPT_PATH`] and
//! adds a `<script>` for it to the dev server's HTML pages; the UI origin never runs it.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};

pub const SCRIPT_PATH: &str = "/__codeflux/picker.js";

const SCRIPT: &str = include_str!("picker.js");

/// How far into a page its `<head>` is looked for before the page is passed on untouched.
const HEAD_SEARCH_LIMIT: usize = 64 * 1024;

/// The picker script itself.
pub fn script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        SCRIPT,
    )
        .into_response()
}

/// The tag that loads the picker; `ui_origins` are the only origins it talks to.
pub fn script_tag(ui_origins: &[String]) -> Bytes {
    let origins = ui_origins.join(" ");
    let escaped = origins
        .replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;");
    Bytes::from(format!(
        r#"<script src="{SCRIPT_PATH}" data-ui-origins="{escaped}" async></script>"#
    ))
}

/// Whether a request is for a page (so the answer should come uncompressed, to be tagged).
pub fn wants_page(method: &Method, headers: &HeaderMap) -> bool {
    let header = |name| {
        headers
            .get(name)
            .and_then(|value: &HeaderValue| value.to_str().ok())
            .unwrap_or_default()
    };
    method == Method::GET
        && (matches!(header("sec-fetch-dest"), "document" | "iframe")
            || header("accept").contains("text/html"))
}

/// Adds the picker's tag right after `<head>` in an HTML answer; anything else (or an HTML
/// answer still compressed) passes untouched. The body stays streamed: only the bytes up
/// to `<head>` are held back.
pub fn inject(response: Response, tag: Bytes) -> Response {
    let headers = response.headers();
    let html = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("text/html"));
    let encoded = headers
        .get(header::CONTENT_ENCODING)
        .is_some_and(|value| value.as_bytes() != b"identity");
    if !html || encoded {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    let stream = with_tag(body.into_data_stream(), tag);
    Response::from_parts(parts, Body::from_stream(stream))
}

/// Where a tag goes in `html`: just after the `<head …>` opening tag, if it has arrived.
fn after_head(html: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(found) = find(&html[from..], b"<head") {
        let start = from + found;
        let next = *html.get(start + 5)?;
        // `<header>` is not `<head>`.
        if next == b'>' || next.is_ascii_whitespace() {
            return find(&html[start..], b">").map(|end| start + end + 1);
        }
        from = start + 5;
    }
    None
}

/// The first position of `needle` in `haystack`, ignoring ASCII case.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window.eq_ignore_ascii_case(needle))
}

struct Injecting<S> {
    inner: S,
    /// The tag, until it is placed (or given up on).
    tag: Option<Bytes>,
    held: BytesMut,
}

fn with_tag<S, E>(inner: S, tag: Bytes) -> impl Stream<Item = Result<Bytes, E>> + Send
where
    S: Stream<Item = Result<Bytes, E>> + Send + Unpin,
    E: Send,
{
    let state = Injecting {
        inner: inner.fuse(),
        tag: Some(tag),
        held: BytesMut::new(),
    };
    futures::stream::unfold(state, |mut state| async move {
        loop {
            if state.tag.is_none() {
                if !state.held.is_empty() {
                    let held = state.held.split().freeze();
                    return Some((Ok(held), state));
                }
                let item = state.inner.next().await?;
                return Some((item, state));
            }
            match state.inner.next().await {
                Some(Ok(chunk)) => {
                    state.held.extend_from_slice(&chunk);
                    if let Some(at) = after_head(&state.held) {
                        let rest = state.held.split_off(at);
                        state
                            .held
                            .extend_from_slice(&state.tag.take().unwrap_or_default());
                        state.held.extend_from_slice(&rest);
                    } else if state.held.len() > HEAD_SEARCH_LIMIT {
                        state.tag = None;
                    }
                }
                // The answer is broken anyway: the error ends it.
                Some(Err(error)) => return Some((Err(error), state)),
                // A page without `<head>`: passed on as it came.
                None => state.tag = None,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn injected(chunks: &[&str], content_type: &str) -> String {
        let chunks: Vec<Result<Bytes, std::io::Error>> = chunks
            .iter()
            .map(|chunk| Ok(Bytes::from(chunk.to_string())))
            .collect();
        let response = Response::builder()
            .header(header::CONTENT_TYPE, content_type)
            .header(header::CONTENT_LENGTH, "999")
            .body(Body::from_stream(futures::stream::iter(chunks)))
            .unwrap();
        let response = inject(response, Bytes::from_static(b"<TAG>"));
        if content_type.starts_with("text/html") {
            assert!(!response.headers().contains_key(header::CONTENT_LENGTH));
        }
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        String::from_utf8(body.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn the_tag_goes_right_after_head_even_when_it_is_split_across_chunks() {
        let page = injected(
            &[
                "<!DOCTYPE html><html lang=\"en\"><he",
                "ad><meta charSet=\"utf-8\"/>",
                "</head><body>hi</body></html>",
            ],
            "text/html; charset=utf-8",
        )
        .await;
        assert_eq!(
            page,
            "<!DOCTYPE html><html lang=\"en\"><head><TAG><meta charSet=\"utf-8\"/></head><body>hi</body></html>"
        );
        let page = injected(
            &["<HTML><HEAD class=\"x\">", "<title>t</title>"],
            "text/html",
        )
        .await;
        assert_eq!(page, "<HTML><HEAD class=\"x\"><TAG><title>t</title>");
    }

    #[tokio::test]
    async fn header_elements_pages_without_head_and_other_types_pass_untouched() {
        assert_eq!(
            injected(&["<header>x</header>", "<head><b>"], "text/html").await,
            "<header>x</header><head><TAG><b>"
        );
        assert_eq!(
            injected(&["<p>no head</p>"], "text/html").await,
            "<p>no head</p>"
        );
        assert_eq!(
            injected(&["<head>", "</head>"], "application/json").await,
            "<head></head>"
        );
    }

    #[tokio::test]
    async fn compressed_pages_pass_untouched() {
        let response = Response::builder()
            .header(header::CONTENT_TYPE, "text/html")
            .header(header::CONTENT_ENCODING, "gzip")
            .body(Body::from("<head></head>"))
            .unwrap();
        let body = axum::body::to_bytes(
            inject(response, Bytes::from_static(b"<TAG>")).into_body(),
            100,
        )
        .await
        .unwrap();
        assert_eq!(&body[..], b"<head></head>");
    }

    #[test]
    fn the_tag_names_the_ui_origins_escaped() {
        let tag = script_tag(&[
            "http://localhost:3000".into(),
            "https://a.example\"><x".into(),
        ]);
        assert_eq!(
            tag,
            Bytes::from(format!(
                "<script src=\"{SCRIPT_PATH}\" data-ui-origins=\"http://localhost:3000 https://a.example&quot;>&lt;x\" async></script>"
            ))
        );
    }

    #[test]
    fn pages_are_gets_for_documents_or_html() {
        let mut headers = HeaderMap::new();
        headers.insert("sec-fetch-dest", HeaderValue::from_static("iframe"));
        assert!(wants_page(&Method::GET, &headers));
        assert!(!wants_page(&Method::POST, &headers));
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, HeaderValue::from_static("text/html,*/*"));
        assert!(wants_page(&Method::GET, &headers));
        headers.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        assert!(!wants_page(&Method::GET, &headers));
    }
}
