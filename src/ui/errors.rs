//! The page shown when a page request fails (unknown project, malformed address, …).

use maud::{Markup, html};

pub fn error_page(status: u16, reason: &str, message: &str) -> Markup {
    html! {
        section.error-page role="alert" {
            h1 { (status) " · " (reason) }
            p { (message) }
            p { a href="/" { "Back to your projects" } }
        }
    }
}
