//! The small pages the proxy answers with when there is no dev server to show.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};

fn page(status: StatusCode, title: &str, message: &str, refresh: bool) -> Response {
    let body: Markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                @if refresh { meta http-equiv="refresh" content="2"; }
                title { (title) " · CodeFlux preview" }
                style { "body{font:16px system-ui,sans-serif;display:grid;place-items:center;min-height:100vh;margin:0;color:#334;background:#f6f7f9}@media(prefers-color-scheme:dark){body{color:#dde;background:#15171c}}main{max-width:32rem;padding:2rem;text-align:center}h1{font-size:1.25rem}p{opacity:.8}" }
            }
            body {
                main role="status" aria-live="polite" {
                    h1 { (title) }
                    p { (message) }
                }
            }
        }
    };
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        "no-store".parse().expect("static header"),
    );
    if refresh {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, "2".parse().expect("static header"));
    }
    response
}

pub fn starting() -> Response {
    page(
        StatusCode::SERVICE_UNAVAILABLE,
        "Preview is starting…",
        "The sandbox and its dev server are starting up. This page reloads by itself.",
        true,
    )
}

pub fn not_found(host: &str) -> Response {
    page(
        StatusCode::NOT_FOUND,
        "No such preview",
        &format!("There is no CodeFlux project behind {host}."),
        false,
    )
}

pub fn unavailable(reason: &str) -> Response {
    page(
        StatusCode::SERVICE_UNAVAILABLE,
        "This preview is stopped",
        reason,
        false,
    )
}

pub fn bad_gateway(reason: &str) -> Response {
    page(
        StatusCode::BAD_GATEWAY,
        "The preview did not answer",
        reason,
        false,
    )
}

pub fn sign_in_needed() -> Response {
    page(
        StatusCode::UNAUTHORIZED,
        "Open this preview from CodeFlux",
        "This CodeFlux requires a token. Open the preview from its project page (the Preview tab or its Open button), which signs you in here.",
        false,
    )
}
