//! What CodeFlux remembers of each published app, one record per project in the store.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::PublishError;

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PublishStatus {
    /// A version is being built or swapped in (an older one may still be serving).
    Building,
    Running,
    /// The last publish failed; an older version may still be serving (`version`).
    Failed,
}

/// What a published app's database starts from at its first publish.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DataStart {
    /// A copy of the published version's data snapshot.
    #[default]
    Copy,
    /// Only what the app's migrations create.
    Empty,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Published {
    pub project_id: Uuid,
    /// The app's name in its address (`<name>.apps.localhost`).
    pub name: String,
    /// The version serving now, if any.
    pub version: Option<u32>,
    pub status: PublishStatus,
    /// The version being built while `status` is `building`.
    pub building: Option<u32>,
    /// Private apps need the CodeFlux sign-in, like previews.
    pub private: bool,
    pub data: DataStart,
    /// The container and image serving `version`.
    pub container: Option<String>,
    pub image: Option<String>,
    pub started_at: Option<DateTime<Utc>>,
    /// What the current build is doing.
    pub step: Option<String>,
    /// Why the last publish failed, and the end of its log.
    pub error: Option<String>,
    pub log: Option<String>,
    /// What the last publish would have dropped of the published data, when that refused it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_loss: Option<super::data_loss::Refusal>,
    pub updated_at: DateTime<Utc>,
}

/// Longest app name: one DNS label.
const NAME_MAX: usize = 63;

/// An app name must be one lowercase DNS label: it becomes a host name.
pub fn check_name(name: &str) -> Result<(), PublishError> {
    let valid = !name.is_empty()
        && name.len() <= NAME_MAX
        && name
            .bytes()
            .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if valid {
        Ok(())
    } else {
        Err(PublishError::Invalid(format!(
            "{name:?} cannot be an app name: use 1 to {NAME_MAX} lowercase letters, digits and dashes, not starting or ending with a dash"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_names_are_dns_labels() {
        for good in ["brave-otter", "a", "shop2", &"x".repeat(63)] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "-a",
            "a-",
            "Brave",
            "a.b",
            "a_b",
            "évé",
            &"x".repeat(64),
        ] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }
}
