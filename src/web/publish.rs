//! Publishing over HTTP: the API (`/api/projects/{id}/publish`, `/api/apps`,
//! `/api/projects/{id}/export`) and the project page's publish panel.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use super::extract::{FormOf, JsonOf, PathOf};
use super::pages::html_response;
use super::{AppError, AppState};
use crate::publish::{AppView, DataStart, PublishError, PublishRequest};
use crate::store::MAX_PROMPT_CHARS;
use crate::ui::publish::{PanelView, panel};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishBody {
    version: Option<u32>,
    name: Option<String>,
    data: Option<DataStart>,
    private: Option<bool>,
    accept_data_loss: Option<bool>,
}

impl PublishBody {
    fn request(self) -> PublishRequest {
        PublishRequest {
            version: self.version,
            name: self.name.filter(|name| !name.trim().is_empty()),
            data: self.data,
            private: self.private,
            accept_data_loss: self.accept_data_loss.unwrap_or(false),
        }
    }
}

impl AppState {
    /// Removes the project's published app and its data (the project is being deleted).
    pub(crate) async fn unpublish_for_deletion(&self, project_id: Uuid) -> Result<(), AppError> {
        match self.publisher.unpublish(project_id, true).await {
            Ok(()) => Ok(()),
            // Nothing was ever published here: nothing to remove.
            Err(PublishError::NoEngine(_)) if self.publisher.get(project_id)?.is_none() => Ok(()),
            Err(error) => Err(error.into()),
        }
    }

    /// The link that opens a published app: signed when it is private and sign-in is on.
    fn open_link(&self, app: &AppView) -> String {
        if !(app.published.private && self.auth.enabled()) {
            return app.url.clone();
        }
        format!(
            "{}{}?{}",
            app.url.trim_end_matches('/'),
            crate::auth::PREVIEW_AUTH_PATH,
            self.auth.preview_link_query(app.published.project_id)
        )
    }

    fn publish_panel(&self, project_id: Uuid, problem: Option<&str>) -> Result<Response, AppError> {
        let status = if problem.is_some() {
            StatusCode::UNPROCESSABLE_ENTITY
        } else {
            StatusCode::OK
        };
        Ok(html_response(status, self.panel_with(project_id, problem)?))
    }

    /// The publish panel as the project page first shows it.
    pub(crate) fn publish_panel_markup(&self, project_id: Uuid) -> Result<maud::Markup, AppError> {
        self.panel_with(project_id, None)
    }

    fn panel_with(
        &self,
        project_id: Uuid,
        problem: Option<&str>,
    ) -> Result<maud::Markup, AppError> {
        let app = self
            .publisher
            .get(project_id)?
            .map(|published| self.publisher.view(published));
        let link = app.as_ref().map(|app| self.open_link(app));
        let newest = self
            .store
            .versions(project_id)?
            .last()
            .map(|(version, _)| version.version);
        Ok(panel(&PanelView {
            project_id,
            app: app.as_ref(),
            open_link: link.as_deref(),
            newest,
            engine_problem: self.publisher.engine_problem(),
            can_be_private: self.auth.enabled(),
            problem,
        }))
    }
}

/// `POST /api/projects/{id}/publish`: 202 with the app's address and status.
pub async fn api_publish(
    State(state): State<AppState>,
    PathOf(project_id): PathOf<Uuid>,
    JsonOf(body): JsonOf<PublishBody>,
) -> Result<(StatusCode, Json<AppView>), AppError> {
    let record = state.publisher.publish(project_id, body.request())?;
    Ok((StatusCode::ACCEPTED, Json(state.publisher.view(record))))
}

/// `DELETE /api/projects/{id}/publish`: stops and removes the app (its data is kept).
pub async fn api_unpublish(
    State(state): State<AppState>,
    PathOf(project_id): PathOf<Uuid>,
) -> Result<StatusCode, AppError> {
    state.store.project(project_id)?;
    state.publisher.unpublish(project_id, false).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/projects/{id}/publish/backup`: copies the published data into the
/// project's snapshots now; 201 with the snapshot.
pub async fn api_back_up(
    State(state): State<AppState>,
    PathOf(project_id): PathOf<Uuid>,
) -> Result<(StatusCode, Json<serde_json::Value>), AppError> {
    state.store.project(project_id)?;
    match state.publisher.back_up(project_id).await? {
        Some(snapshot) => Ok((StatusCode::CREATED, Json(json!({ "snapshot": snapshot })))),
        None => Err(AppError::Invalid(
            "the published app keeps no data yet: there is nothing to back up".into(),
        )),
    }
}

/// `POST /projects/{id}/publish/backup`: the published Data tab's "Back up now".
pub async fn form_back_up(
    State(state): State<AppState>,
    PathOf(project_id): PathOf<Uuid>,
) -> Result<Response, AppError> {
    state.store.project(project_id)?;
    let notice = match state.publisher.back_up(project_id).await? {
        Some(snapshot) => format!(
            "Backed up the published data: {} row{} in {} table{}.",
            snapshot.rows,
            if snapshot.rows == 1 { "" } else { "s" },
            snapshot.tables,
            if snapshot.tables == 1 { "" } else { "s" },
        ),
        None => "The published app keeps no data yet: there is nothing to back up.".into(),
    };
    let query = super::data::PanelQuery {
        table: None,
        page: None,
        edit: None,
        of: super::data::Of::Published,
    };
    super::data::render_panel(&state, project_id, query, Some(&notice)).await
}

/// `GET /api/apps`: every published app with its address, version, memory and uptime.
pub async fn api_apps(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(json!({ "apps": state.publisher.listing().await }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportBody {
    version: Option<u32>,
    image: String,
    data: Option<DataStart>,
}

/// `POST /api/projects/{id}/export`: builds the version's production image on the engine
/// (minutes); 201 once it is there.
pub async fn api_export(
    State(state): State<AppState>,
    PathOf(project_id): PathOf<Uuid>,
    JsonOf(body): JsonOf<ExportBody>,
) -> Result<(StatusCode, Json<serde_json::Value>), AppError> {
    let image = body.image.trim();
    if !valid_image_name(image) {
        return Err(AppError::Invalid(format!(
            "{image:?} is not an image name: use lowercase letters, digits, '.', '_', '-' and '/', with an optional :tag"
        )));
    }
    let mut lines = Vec::new();
    let version = state
        .publisher
        .export_image(
            project_id,
            body.version,
            image,
            body.data.unwrap_or_default(),
            &mut |line| lines.push(line.to_string()),
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "image": image, "version": version })),
    ))
}

/// Docker's reference grammar, without a registry port or digest: `name[:tag]`.
fn valid_image_name(reference: &str) -> bool {
    let (name, tag) = reference.split_once(':').unwrap_or((reference, "latest"));
    let name_ok = !name.is_empty()
        && name.split('/').all(|part| {
            !part.is_empty()
                && part.bytes().all(|byte| {
                    byte.is_ascii_lowercase() || byte.is_ascii_digit() || b"._-".contains(&byte)
                })
                && part.as_bytes()[0].is_ascii_alphanumeric()
        });
    let tag_ok = !tag.is_empty()
        && tag.len() <= 128
        && tag
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b"._-".contains(&byte));
    name_ok && tag_ok
}

/// `GET /projects/{id}/publish`: the panel (polled while a publish runs).
pub async fn panel_page(
    State(state): State<AppState>,
    PathOf(project_id): PathOf<Uuid>,
) -> Result<Response, AppError> {
    state.store.project(project_id)?;
    state.publish_panel(project_id, None)
}

/// `POST /projects/{id}/publish`: the panel's and the version bar's Publish buttons.
pub async fn form_publish(
    State(state): State<AppState>,
    PathOf(project_id): PathOf<Uuid>,
    FormOf(form): FormOf<PublishBody>,
) -> Result<Response, AppError> {
    state.store.project(project_id)?;
    match state.publisher.publish(project_id, form.request()) {
        Ok(_) => state.publish_panel(project_id, None),
        Err(
            error @ (PublishError::Invalid(_)
            | PublishError::Conflict(_)
            | PublishError::NoEngine(_)),
        ) => state.publish_panel(project_id, Some(&error.to_string())),
        Err(error) => Err(error.into()),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeBody {
    name: Option<String>,
    private: Option<bool>,
}

/// `PATCH /api/projects/{id}/publish`: renames the app (its address moves at once) or makes
/// it private or public, without building it again.
pub async fn api_change(
    State(state): State<AppState>,
    PathOf(project_id): PathOf<Uuid>,
    JsonOf(body): JsonOf<ChangeBody>,
) -> Result<Json<AppView>, AppError> {
    state.store.project(project_id)?;
    let record = state
        .publisher
        .change(project_id, body.name.as_deref(), body.private)?;
    Ok(Json(state.publisher.view(record)))
}

#[derive(Debug, Deserialize)]
pub struct RenameForm {
    name: String,
}

/// `POST /projects/{id}/publish/name`: the panel's Rename.
pub async fn form_rename(
    State(state): State<AppState>,
    PathOf(project_id): PathOf<Uuid>,
    FormOf(form): FormOf<RenameForm>,
) -> Result<Response, AppError> {
    state.store.project(project_id)?;
    match state.publisher.change(project_id, Some(&form.name), None) {
        Ok(_) => state.publish_panel(project_id, None),
        Err(error @ (PublishError::Invalid(_) | PublishError::Conflict(_))) => {
            state.publish_panel(project_id, Some(&error.to_string()))
        }
        Err(error) => Err(error.into()),
    }
}

/// `POST /projects/{id}/unpublish`.
pub async fn form_unpublish(
    State(state): State<AppState>,
    PathOf(project_id): PathOf<Uuid>,
) -> Result<Response, AppError> {
    state.store.project(project_id)?;
    state.publisher.unpublish(project_id, false).await?;
    state.publish_panel(project_id, None)
}

/// `POST /projects/{id}/publish/fix`: "Fix the build" sends the failed build's log to the
/// agent as a follow-up.
pub async fn fix_build(
    State(state): State<AppState>,
    PathOf(project_id): PathOf<Uuid>,
) -> Result<Response, AppError> {
    let record = state
        .publisher
        .get(project_id)?
        .ok_or(AppError::NotFound("published app"))?;
    let (Some(error), log) = (record.error.as_deref(), record.log.as_deref()) else {
        return Err(AppError::Invalid("the last publish did not fail".into()));
    };
    let prompt = fix_prompt(error, log.unwrap_or_default());
    let (_, job) = state.store.add_user_message(project_id, &prompt)?;
    state.job_submitted(&job)?;
    state.store.flush().await?;
    state.jobs.wake();
    let mut response = StatusCode::OK.into_response();
    response.headers_mut().insert(
        "hx-redirect",
        HeaderValue::from_str(&format!("/projects/{project_id}"))
            .unwrap_or(HeaderValue::from_static("/")),
    );
    Ok(response)
}

/// The follow-up for a failed production build: what failed and the end of its log,
/// within the prompt limit.
fn fix_prompt(error: &str, log: &str) -> String {
    let head = format!(
        "Publishing failed: the production build (`next build`, then `next start`) of the app does not work. Fix the code so that it builds and starts; pages that read the database must stay dynamic.\n\n{}\n\nThe end of the build log:\n```\n",
        error.lines().next().unwrap_or(error)
    );
    let room = MAX_PROMPT_CHARS.saturating_sub(head.len() + 8);
    let tail: String = {
        let chars: Vec<char> = log.chars().collect();
        chars[chars.len().saturating_sub(room)..].iter().collect()
    };
    format!("{head}{tail}\n```")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_names_follow_dockers_grammar() {
        for good in [
            "shop",
            "me/shop:v2",
            "registry.lan/team/shop_1:2026.12",
            "a-b.c",
        ] {
            assert!(valid_image_name(good), "{good}");
        }
        for bad in [
            "",
            "Shop",
            "shop:",
            "-shop",
            "shop:a b",
            "shop/",
            "shop@sha256:x",
        ] {
            assert!(!valid_image_name(bad), "{bad}");
        }
    }

    #[test]
    fn the_fix_prompt_keeps_the_logs_end_within_the_limit() {
        let log = format!("{}\nType error: x is not a number", "noise\n".repeat(5000));
        let prompt = fix_prompt("Building the app for production failed (exit 1):", &log);
        assert!(prompt.chars().count() <= MAX_PROMPT_CHARS);
        assert!(prompt.contains("Type error: x is not a number"));
        assert!(prompt.starts_with("Publishing failed"));
    }
}
