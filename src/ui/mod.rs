//! Server-rendered views (maud). Every function is pure: it takes borrowed view data and
//! returns markup, so the full page and the htmx fragments render the same code.

pub mod assets;
pub mod code;
pub mod data;
pub mod diff;
pub mod errors;
pub mod home;
pub mod layout;
pub mod login;
pub mod progress;
pub mod project;
pub mod publish;
pub mod quick_edit;
pub mod remote;

use chrono::{DateTime, Utc};

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
    /// Whether signing in is required (shows the sign-out button).
    pub auth_enabled: bool,
    /// `serve --demo`: the model's answers are a recorded transcript (the UI says so).
    pub demo: bool,
    /// The sandbox image's state (Docker), shown while it is built or when it failed.
    pub sandbox_readiness: Option<crate::sandbox::readiness::ReadinessCell>,
}

/// "just now", "5 min ago", "3 h ago", "2 days ago".
pub fn age(at: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let seconds = (now - at).num_seconds().max(0);
    match seconds {
        0..=44 => "just now".to_string(),
        45..=3599 => format!("{} min ago", (seconds + 30) / 60),
        3600..=86_399 => format!("{} h ago", seconds / 3600),
        _ => {
            let days = seconds / 86_400;
            format!("{days} day{} ago", if days == 1 { "" } else { "s" })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_naturally() {
        let now = Utc::now();
        assert_eq!(age(now, now), "just now");
        assert_eq!(age(now - chrono::Duration::minutes(5), now), "5 min ago");
        assert_eq!(age(now - chrono::Duration::hours(3), now), "3 h ago");
        assert_eq!(age(now - chrono::Duration::days(1), now), "1 day ago");
        assert_eq!(age(now - chrono::Duration::days(4), now), "4 days ago");
    }
}
