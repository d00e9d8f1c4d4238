//! A project's versions as the commits that stand for them.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::store::{Role, Store, StoreResult};

/// One version as a commit: its number (the tag), when it was made, what it says, its files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCommit {
    pub version: u32,
    pub time: DateTime<Utc>,
    pub message: String,
    pub files: BTreeMap<String, Vec<u8>>,
    /// The remote commit a pulled version holds: its second parent (its first when the
    /// version is the project's first).
    pub merge: Option<String>,
}

/// Every version of the project, oldest first. A commit's message is the first line of the
/// request that made it, then the answer; versions made without a request (a restore, a
/// quick edit) take the answer's first line as their subject. `pulled` names the remote
/// commit of each version a pull made.
pub fn commits_of(
    store: &Store,
    project_id: Uuid,
    pulled: &BTreeMap<u32, String>,
) -> StoreResult<Vec<NewCommit>> {
    let messages = store.messages(project_id)?;
    let mut commits = Vec::new();
    for (version, fragment) in store.versions(project_id)? {
        let answer_at = messages
            .iter()
            .position(|message| message.id == fragment.message_id);
        let answer = answer_at
            .map(|at| messages[at].content.trim().to_string())
            .unwrap_or_default();
        let request = answer_at
            .and_then(|at| at.checked_sub(1))
            .map(|before| &messages[before])
            .filter(|message| message.role == Role::User)
            .map(|message| first_line(&message.content));
        let message = match request {
            Some(subject) if !subject.is_empty() => format!("{subject}\n\n{answer}\n"),
            _ => {
                let subject = first_line(&answer);
                let subject = if subject.is_empty() {
                    format!("Version {}", version.version)
                } else {
                    subject
                };
                format!("{subject}\n\n{answer}\n")
            }
        };
        commits.push(NewCommit {
            version: version.version,
            time: fragment.created_at,
            message,
            files: fragment
                .files
                .into_iter()
                .map(|(path, content)| (path, content.into_bytes()))
                .collect(),
            merge: pulled.get(&version.version).cloned(),
        });
    }
    Ok(commits)
}

/// The first line, cut to a subject's length.
fn first_line(text: &str) -> String {
    let line = text.lines().map(str::trim).find(|line| !line.is_empty());
    let line = line.unwrap_or_default();
    if line.chars().count() > 72 {
        let cut: String = line.chars().take(71).collect();
        format!("{cut}…")
    } else {
        line.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subject_is_the_first_non_empty_line_cut_to_72_characters() {
        assert_eq!(
            first_line("\n  build me a habit tracker\nwith streaks"),
            "build me a habit tracker"
        );
        let long = "x".repeat(100);
        assert_eq!(first_line(&long).chars().count(), 72);
        assert_eq!(first_line(""), "");
    }
}
