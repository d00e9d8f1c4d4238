//! The page shell: head, top bar, configuration banners.

use maud::{DOCTYPE, Markup, html};

use super::{Setup, assets};
use crate::sandbox::readiness::Readiness;

/// The configuration problems a user must fix before anything can be built.
pub fn banners(setup: &Setup) -> Markup {
    html! {
        @if setup.demo {
            div.banner.notice role="note" {
                strong { "Demo: a recorded replay, not a live model. " }
                "Whatever you ask, the answers replay one recorded build of a habit tracker; the files, the checks and the preview are real. Restart without "
                code { "--demo" } " and with a model to build your own."
            }
        }
        @if let Some(problem) = &setup.model_problem {
            div.banner role="alert" { strong { "No model configured. " } (problem) }
        }
        @if let Some(problem) = &setup.sandbox_problem {
            div.banner role="alert" { strong { "No sandbox backend. " } (problem) }
        }
        @if let Some(readiness) = &setup.sandbox_readiness {
            (sandbox_banner(&readiness.get()))
        }
    }
}

/// The sandbox image's state while it is not ready; polls itself until it is, then goes.
pub fn sandbox_banner(readiness: &Readiness) -> Markup {
    html! {
        @match readiness {
            Readiness::Ready => {}
            Readiness::Preparing { step } => {
                div.banner.notice #sandbox-readiness role="status"
                    hx-get="/setup/sandbox" hx-trigger="every 2s" hx-swap="outerHTML" {
                    strong { "Preparing the sandbox image. " }
                    "The first start builds it once, which takes a few minutes; prompts wait in the queue until it is ready."
                    code.step { (step) }
                }
            }
            Readiness::Failed { error } => {
                div.banner #sandbox-readiness role="alert"
                    hx-get="/setup/sandbox" hx-trigger="every 10s" hx-swap="outerHTML" {
                    strong { "The sandbox image could not be built. " }
                    (error)
                    " Run " code { "codeflux doctor" } " for a check of the whole setup."
                }
            }
        }
    }
}

pub fn page(title: &str, setup: &Setup, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="color-scheme" content="light dark";
                // Let 422 validation answers swap in like successes, so errors show inline.
                meta name="htmx-config" content=r#"{"responseHandling":[{"code":"204","swap":false},{"code":"[23]..","swap":true},{"code":"422","swap":true},{"code":"[45]..","swap":false,"error":true}]}"#;
                title { (title) " · CodeFlux" }
                link rel="stylesheet" href=(assets::url("app.css"));
                script src=(assets::url("vendor/htmx-2.0.11.min.js")) defer {}
                script src=(assets::url("vendor/htmx-ext-ws-2.0.4.min.js")) defer {}
                script src=(assets::url("app.js")) defer {}
            }
            body {
                a.skip href="#main" { "Skip to content" }
                nav.topbar aria-label="Main" {
                    a.brand href="/" { span.logo aria-hidden="true" {} "CodeFlux" }
                    span.spacer {}
                    span.meta {
                        "model " code { (setup.model) }
                        @if let Some(backend) = &setup.sandbox_backend { " · sandbox " code { (backend) } }
                    }
                    @if setup.auth_enabled {
                        form.signout method="post" action="/logout" { button type="submit" { "Sign out" } }
                    }
                }
                (banners(setup))
                main #main { (body) }
            }
        }
    }
}
