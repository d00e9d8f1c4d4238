//! The Code tab's git remote: where the project is pushed, and its Push and Pull buttons.

use maud::{Markup, html};
use uuid::Uuid;

use crate::git::remote::{Outcome, RemoteView};

/// What the last action said: `(it worked, the words)`.
pub type Notice<'a> = Option<(bool, &'a str)>;

pub fn panel(project_id: Uuid, remote: Option<&RemoteView>, notice: Notice) -> Markup {
    let base = format!("/projects/{project_id}");
    html! {
        div #remote-panel .remote-panel aria-label="Git remote" {
            @if let Some((ok, words)) = notice {
                @if ok { p.notice role="status" { (words) } }
                @else { p.error role="alert" { (words) } }
            }
            form.remote-form hx-post={ (base) "/remote" } hx-target="#remote-panel" hx-swap="outerHTML" {
                label { "Remote "
                    input type="url" name="url" required placeholder="https://github.com/you/app.git"
                        value=[remote.map(|remote| remote.url.as_str())];
                }
                label { "Token "
                    input type="password" name="token" autocomplete="off"
                        placeholder=(if remote.is_some_and(|remote| remote.has_token) {
                            "stored; leave empty to keep it"
                        } else {
                            "one that may push (kept here, never shown again)"
                        });
                }
                label { input type="checkbox" name="push_after_version" value="true"
                        checked[remote.is_some_and(|remote| remote.push_after_version)];
                    " Push after every version" }
                button type="submit" { "Save remote" }
            }
            @if let Some(remote) = remote {
                div.remote-actions {
                    button hx-post={ (base) "/push" } hx-target="#remote-panel" hx-swap="outerHTML"
                        hx-disabled-elt="this" { "Push" }
                    button hx-post={ (base) "/pull" } hx-target="#remote-panel" hx-swap="outerHTML"
                        hx-disabled-elt="this" title="Makes a new version from the remote's main when it changed" { "Pull" }
                    button.link hx-post={ (base) "/remote/forget" } hx-target="#remote-panel" hx-swap="outerHTML"
                        hx-confirm="Forget this remote and its token? Nothing is changed on the remote." { "Forget" }
                }
                (outcome("Last push", remote.last_push.as_ref()))
                (outcome("Last pull", remote.last_pull.as_ref()))
            }
        }
    }
}

fn outcome(what: &str, outcome: Option<&Outcome>) -> Markup {
    html! {
        @if let Some(outcome) = outcome {
            p.hint.remote-outcome.failed[!outcome.ok] {
                (what) " (" time datetime=(outcome.at.to_rfc3339()) { (outcome.at.format("%Y-%m-%d %H:%M UTC")) } "): "
                (outcome.message)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_panel_never_shows_the_token_and_offers_push_and_pull_once_set() {
        let project = Uuid::now_v7();
        let empty = panel(project, None, None).into_string();
        assert!(empty.contains("Save remote") && !empty.contains("Push</button>"));
        let view = RemoteView {
            url: "https://example.com/app.git".into(),
            has_token: true,
            push_after_version: true,
            last_push: Some(Outcome::now(
                false,
                "the remote has commits this project does not have",
            )),
            last_pull: None,
        };
        let set = panel(project, Some(&view), Some((true, "Saved."))).into_string();
        assert!(set.contains("Push</button>") && set.contains("Pull</button>"));
        assert!(set.contains("stored; leave empty to keep it"));
        assert!(set.contains("checked") && set.contains("Last push"));
        assert!(set.contains("Saved."));
    }
}
