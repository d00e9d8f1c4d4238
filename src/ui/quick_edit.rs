//! The quick-edit panel: shown when an element is picked in the preview, it offers the
//! element's static text and literal classes to change without the model.

use maud::{Markup, html};
use uuid::Uuid;

use crate::quick_edit::Editable;
use crate::store::SelectedElement;

/// What happened to the last change made from the panel.
pub enum Note {
    Saved(u32),
    Problem(String),
}

pub enum View {
    /// The fields that can change, filled in.
    Offer {
        editable: Editable,
        note: Option<Note>,
    },
    /// Nothing can change without the model, and why.
    Refused(String),
}

/// The empty slot the panel is loaded into; app.js fills it after a pick.
pub fn slot(project_id: Uuid) -> Markup {
    html! {
        div #quick-edit .quick-edit data-edit-url={ "/projects/" (project_id) "/edit" } {}
    }
}

pub fn panel(project_id: Uuid, element: &SelectedElement, view: &View) -> Markup {
    let url = format!("/projects/{project_id}/edit");
    html! {
        div #quick-edit .quick-edit data-edit-url=(url) aria-label="Quick edit" role="region" {
            div.quick-edit-head {
                strong { "Quick edit" }
                code { (element.label()) }
                span.spacer {}
                button.close-quick-edit type="button" aria-label="Close the quick edit" { "×" }
            }
            @match view {
                View::Refused(reason) => p.hint { (reason) " Describe the change in the box below instead." },
                View::Offer { editable, note } => {
                    @if editable.text.is_none() && editable.class_name.is_none() {
                        p.hint { "Its text and classes are computed in code, not written out: describe the change in the box below." }
                    } @else {
                        form hx-post=(url) hx-target="#quick-edit" hx-swap="outerHTML" hx-disabled-elt="find button[type=submit]" {
                            input type="hidden" name="loc" value=(element.tag());
                            @if let Some(text) = &editable.text {
                                label { "Text" input type="text" name="text" value=(text) maxlength="500" required; }
                            }
                            @if let Some(class_name) = &editable.class_name {
                                label { "Classes" input.mono type="text" name="class_name" value=(class_name) maxlength="500" spellcheck="false"; }
                            }
                            div.form-row {
                                small.hint { "Written straight into " code { (element.file) } " as a new version; no model call." }
                                button.primary type="submit" { "Apply" }
                            }
                        }
                    }
                    @match note {
                        Some(Note::Saved(version)) => p.saved role="status" { "✓ Saved as version " (version) "." },
                        Some(Note::Problem(reason)) => p.error-text role="alert" { (reason) },
                        None => {}
                    }
                }
            }
        }
    }
}
