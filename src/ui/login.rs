//! The sign-in page, shown when CodeFlux requires a token.

use maud::{Markup, html};

pub fn login_form(next: &str, error: Option<&str>) -> Markup {
    html! {
        section.login {
            h1 { "Sign in to CodeFlux" }
            p { "This CodeFlux requires its access token (" code { "CODEFLUX_AUTH_TOKEN" } ")." }
            form method="post" action="/login" {
                input type="hidden" name="next" value=(next);
                label for="token" { "Access token" }
                input #token type="password" name="token" autocomplete="current-password" required autofocus
                    aria-invalid=[error.map(|_| "true")] aria-describedby=[error.map(|_| "token-error")];
                @if let Some(error) = error {
                    p #token-error .field-error role="alert" { (error) }
                }
                button.primary type="submit" { "Sign in" }
            }
        }
    }
}
