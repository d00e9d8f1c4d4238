//! Quick edits of a selected element without the model: the panel that offers its static
//! text and literal classes, and the calls that save a change as a new version.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use maud::html;
use serde::Deserialize;
use uuid::Uuid;

use super::extract::{FormOf, JsonOf, PathOf, QueryOf};
use super::pages::{html_response, pick_fragment};
use super::selection::{self, SelectedInput};
use super::{AppError, AppState};
use crate::jobs::{EditError, FileEdit};
use crate::quick_edit::{self, Editable, QuickChange, QuickEditError};
use crate::store::{SelectedElement, Version};
use crate::ui::{project, quick_edit as panel};

impl AppState {
    /// What a quick edit may change on `element` in the app as it stands.
    pub(crate) fn editable(
        &self,
        project_id: Uuid,
        element: &SelectedElement,
    ) -> Result<Editable, AppError> {
        let files = self.store.current_files(project_id)?;
        let source = source_of(&files, element)?;
        Ok(quick_edit::inspect(
            &source,
            element.line,
            element.column,
            &element.name,
        )?)
    }

    /// Saves `change` on `element` as a new version, without the model. Values equal to
    /// what is there are left alone.
    pub(crate) async fn quick_edit(
        &self,
        project_id: Uuid,
        element: SelectedElement,
        change: QuickChange,
    ) -> Result<Version, AppError> {
        self.store.project(project_id)?;
        let saved = self
            .jobs
            .quick_edit(project_id, move |files| {
                let source = source_of(files, &element)?;
                let before =
                    quick_edit::inspect(&source, element.line, element.column, &element.name)?;
                let change = QuickChange {
                    text: change
                        .text
                        .filter(|text| Some(text.trim()) != before.text.as_deref()),
                    class_name: change
                        .class_name
                        .filter(|class| Some(class.trim()) != before.class_name.as_deref()),
                };
                let content = quick_edit::apply(
                    &source,
                    element.line,
                    element.column,
                    &element.name,
                    &change,
                )?;
                Ok(FileEdit {
                    description: describe(&element, &before, &change),
                    path: element.file,
                    content,
                })
            })
            .await;
        saved?.ok_or(AppError::Conflict(
            "a job is working on this project; stop it or wait before editing",
        ))
    }
}

impl From<EditError> for AppError {
    fn from(error: EditError) -> Self {
        match error {
            EditError::Edit(error) => error.into(),
            EditError::Store(error) => error.into(),
        }
    }
}

impl From<QuickEditError> for AppError {
    fn from(error: QuickEditError) -> Self {
        AppError::Invalid(error.to_string())
    }
}

/// The file the element is in: the app's own, or the template's.
fn source_of(
    files: &std::collections::BTreeMap<String, String>,
    element: &SelectedElement,
) -> Result<String, QuickEditError> {
    selection::app_source(files, &element.file).ok_or_else(|| QuickEditError::Moved {
        name: element.name.clone(),
        line: element.line,
        column: element.column,
    })
}

/// "Quick edit of <h1> in app/page.tsx:6 (no model): text “A” → “B”."
fn describe(element: &SelectedElement, before: &Editable, change: &QuickChange) -> String {
    let mut parts = Vec::new();
    if let Some(text) = &change.text {
        parts.push(format!(
            "text \u{201c}{}\u{201d} \u{2192} \u{201c}{}\u{201d}",
            before.text.as_deref().unwrap_or_default(),
            text.trim()
        ));
    }
    if let Some(class) = &change.class_name {
        parts.push(format!(
            "classes \u{201c}{}\u{201d} \u{2192} \u{201c}{}\u{201d}",
            before.class_name.as_deref().unwrap_or_default(),
            class.trim()
        ));
    }
    format!(
        "Quick edit of {} (no model): {}.",
        element.label(),
        parts.join("; ")
    )
}

#[derive(Deserialize)]
pub struct EditBody {
    #[serde(flatten)]
    element: SelectedObject,
    text: Option<String>,
    class_name: Option<String>,
}

/// The element as the API names it (the same fields as `selected` in a prompt).
#[derive(Deserialize)]
struct SelectedObject {
    file: String,
    line: u32,
    #[serde(default)]
    column: u32,
    name: Option<String>,
}

/// `POST /api/projects/{id}/edits`: 201 with the new version; 409 while a job runs; 422
/// when the element moved or the part is computed.
pub async fn api_edit(
    State(state): State<AppState>,
    PathOf(project_id): PathOf<Uuid>,
    JsonOf(body): JsonOf<EditBody>,
) -> Result<(StatusCode, Json<Version>), AppError> {
    let element = SelectedInput::Element {
        file: body.element.file,
        line: body.element.line,
        column: body.element.column,
        name: body.element.name,
        text: None,
    }
    .parse()?;
    let change = QuickChange {
        text: body.text,
        class_name: body.class_name,
    };
    let version = state.quick_edit(project_id, element, change).await?;
    Ok((StatusCode::CREATED, Json(version)))
}

#[derive(Deserialize)]
pub struct PanelQuery {
    loc: String,
}

/// The quick-edit panel for a picked element (loaded when an element is picked).
pub async fn panel(
    State(state): State<AppState>,
    PathOf(project_id): PathOf<Uuid>,
    QueryOf(query): QueryOf<PanelQuery>,
) -> Result<Response, AppError> {
    state.store.project(project_id)?;
    let element = selection::parse_tag(&query.loc)?;
    let view = match state.editable(project_id, &element) {
        Ok(editable) => panel::View::Offer {
            editable,
            note: None,
        },
        Err(AppError::Invalid(reason)) => panel::View::Refused(reason),
        Err(error) => return Err(error),
    };
    Ok(html_response(
        StatusCode::OK,
        panel::panel(project_id, &element, &view),
    ))
}

#[derive(Deserialize)]
pub struct PanelForm {
    loc: String,
    text: Option<String>,
    class_name: Option<String>,
}

/// The panel's Apply button: the conversation shows the new version; the preview reloads
/// by itself (the dev server sees the file change). The panel stays, with the values as
/// they now are, for a further edit.
pub async fn apply(
    State(state): State<AppState>,
    PathOf(project_id): PathOf<Uuid>,
    FormOf(form): FormOf<PanelForm>,
) -> Result<Response, AppError> {
    let element = selection::parse_tag(&form.loc)?;
    let change = QuickChange {
        text: form.text.clone(),
        class_name: form.class_name.clone(),
    };
    let (status, note) = match state.quick_edit(project_id, element.clone(), change).await {
        Ok(version) => (StatusCode::OK, panel::Note::Saved(version.version)),
        Err(AppError::Invalid(reason)) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            panel::Note::Problem(reason),
        ),
        Err(AppError::Conflict(reason)) => (
            StatusCode::CONFLICT,
            panel::Note::Problem(reason.to_string()),
        ),
        Err(error) => return Err(error),
    };
    let view = match state.editable(project_id, &element) {
        Ok(mut editable) => {
            // A refused value stays in its field to be corrected.
            if let panel::Note::Problem(_) = note {
                if editable.text.is_some() {
                    editable.text = form.text.or(editable.text);
                }
                if editable.class_name.is_some() {
                    editable.class_name = form.class_name.or(editable.class_name);
                }
            }
            panel::View::Offer {
                editable,
                note: Some(note),
            }
        }
        Err(AppError::Invalid(reason)) => panel::View::Refused(reason),
        Err(error) => return Err(error),
    };
    let saved = status == StatusCode::OK;
    let detail = super::api::project_detail(&state, project_id)?;
    let selected = pick_fragment(&detail.messages, None).map(|fragment| fragment.message_id);
    Ok(html_response(
        status,
        html! {
            (panel::panel(project_id, &element, &view))
            @if saved {
                (project::conversation(project_id, &detail.messages, selected, true))
            }
        },
    ))
}
