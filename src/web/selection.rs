//! Elements picked in the preview and sent with a follow-up: read from the picker's tags
//! (`file:line:column:Name`) or the API's objects, checked, and given the lines around them
//! from the app's newest version so the model edits the right place first.

use serde::Deserialize;
use uuid::Uuid;

use super::AppError;
use crate::store::{SelectedElement, Store};

/// Most elements one prompt may point at.
pub const MAX_SELECTED: usize = 10;

/// An element's text is cut to this many characters.
const MAX_TEXT_CHARS: usize = 80;

/// Lines shown before and after the element's line.
const CONTEXT_BEFORE: u32 = 2;
const CONTEXT_AFTER: u32 = 4;
/// Long lines (minified or generated) are cut in the snippet.
const SNIPPET_LINE_CHARS: usize = 160;

/// An element as the API takes it: the picker's tag, or an object.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum SelectedInput {
    Tag(String),
    Element {
        file: String,
        line: u32,
        #[serde(default)]
        column: u32,
        #[serde(default)]
        name: Option<String>,
        #[serde(default)]
        text: Option<String>,
    },
}

impl SelectedInput {
    pub fn parse(self) -> Result<SelectedElement, AppError> {
        match self {
            SelectedInput::Tag(tag) => parse_tag(&tag),
            SelectedInput::Element {
                file,
                line,
                column,
                name,
                text,
            } => Ok(SelectedElement {
                text: text.as_deref().and_then(clean_text),
                ..checked(file, line, column, name.unwrap_or_default())?
            }),
        }
    }
}

/// A `selected` form field: the picker's tag, or `{"loc": tag, "text": …}` when the
/// element showed text.
pub fn parse_field(value: &str) -> Result<SelectedElement, AppError> {
    #[derive(Deserialize)]
    struct Picked {
        loc: String,
        text: Option<String>,
    }
    if !value.trim_start().starts_with('{') {
        return parse_tag(value);
    }
    let picked: Picked = serde_json::from_str(value).map_err(|_| {
        AppError::Invalid(format!(
            "a selected element must be file:line:column:Name or {{\"loc\", \"text\"}}, not {value:?}"
        ))
    })?;
    Ok(SelectedElement {
        text: picked.text.as_deref().and_then(clean_text),
        ..parse_tag(&picked.loc)?
    })
}

/// One line of at most [`MAX_TEXT_CHARS`] characters, or nothing.
fn clean_text(text: &str) -> Option<String> {
    let line = text
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_TEXT_CHARS)
        .collect::<String>();
    (!line.is_empty()).then_some(line)
}

/// `components/habit-list.tsx:42:7:Button`, as the template's dev server tags elements.
pub fn parse_tag(tag: &str) -> Result<SelectedElement, AppError> {
    let malformed = || {
        AppError::Invalid(format!(
            "a selected element must look like file:line:column:Name, not {tag:?}"
        ))
    };
    let mut parts = tag.trim().rsplitn(4, ':');
    let name = parts.next().ok_or_else(malformed)?;
    let column = parts.next().and_then(|part| part.parse().ok());
    let line = parts.next().and_then(|part| part.parse().ok());
    let file = parts.next();
    match (file, line, column) {
        (Some(file), Some(line), Some(column)) => {
            checked(file.to_string(), line, column, name.to_string())
        }
        _ => Err(malformed()),
    }
}

fn checked(
    file: String,
    line: u32,
    column: u32,
    name: String,
) -> Result<SelectedElement, AppError> {
    let inside_app = !file.is_empty()
        && file.len() <= 300
        && !file.starts_with('/')
        && !file.contains('\\')
        && file.split('/').all(|part| !part.is_empty() && part != "..");
    if !inside_app {
        return Err(AppError::Invalid(format!(
            "a selected element's file must be a path inside the app, like components/card.tsx, not {file:?}"
        )));
    }
    if line == 0 {
        return Err(AppError::Invalid(
            "a selected element's line starts at 1".to_string(),
        ));
    }
    let name = if name.is_empty() {
        "element".to_string()
    } else {
        name
    };
    let plain_name = name.len() <= 80
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '$' | '.' | '-'));
    if !plain_name {
        return Err(AppError::Invalid(format!(
            "a selected element's name must be a JSX tag name, not {name:?}"
        )));
    }
    Ok(SelectedElement {
        file,
        line,
        column,
        name,
        text: None,
        snippet: None,
    })
}

/// Checks the count and gives each element its snippet from the project's newest files
/// (a file the agent never wrote comes from the template).
pub fn with_snippets(
    store: &Store,
    project_id: Uuid,
    mut selected: Vec<SelectedElement>,
) -> Result<Vec<SelectedElement>, AppError> {
    if selected.len() > MAX_SELECTED {
        return Err(AppError::Invalid(format!(
            "at most {MAX_SELECTED} elements can be selected for one request"
        )));
    }
    if selected.is_empty() {
        return Ok(selected);
    }
    let files = store.current_files(project_id)?;
    for element in &mut selected {
        element.snippet =
            app_source(&files, &element.file).and_then(|source| snippet(&source, element.line));
    }
    Ok(selected)
}

/// A file of the app as it stands (`files`, from [`Store::current_files`]), or the
/// template's when the agent never wrote it.
pub fn app_source(
    files: &std::collections::BTreeMap<String, String>,
    path: &str,
) -> Option<String> {
    files.get(path).cloned().or_else(|| {
        crate::sandbox::template::file(path).and_then(|bytes| String::from_utf8(bytes).ok())
    })
}

/// The lines around `line`, numbered, the element's own marked with `>`.
fn snippet(source: &str, line: u32) -> Option<String> {
    let first = line.saturating_sub(CONTEXT_BEFORE).max(1);
    let last = (line + CONTEXT_AFTER).min(source.lines().count() as u32);
    let width = last.to_string().len().max(2);
    let lines: Vec<String> = source
        .lines()
        .enumerate()
        .map(|(index, text)| (index as u32 + 1, text))
        .filter(|(number, _)| (first..=last).contains(number))
        .map(|(number, text)| {
            let marker = if number == line { '>' } else { ' ' };
            let text: String = text.chars().take(SNIPPET_LINE_CHARS).collect();
            format!("{marker}{number:>width$} | {text}")
        })
        .collect();
    // A line past the end of the file: the file changed since the page was shown.
    (source.lines().count() as u32 >= line).then(|| lines.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tag_names_file_line_column_and_element() {
        let element = parse_tag("components/habit-list.tsx:42:7:Button").unwrap();
        assert_eq!(
            (
                element.file.as_str(),
                element.line,
                element.column,
                element.name.as_str()
            ),
            ("components/habit-list.tsx", 42, 7, "Button")
        );
        assert_eq!(element.label(), "<Button> in components/habit-list.tsx:42");
        assert_eq!(
            parse_tag("app/page.tsx:3:5:motion.div").unwrap().name,
            "motion.div"
        );
    }

    #[test]
    fn malformed_tags_and_paths_outside_the_app_are_refused() {
        for bad in [
            "app/page.tsx:3",
            "app/page.tsx:x:5:div",
            "/etc/passwd:1:1:div",
            "../secret.tsx:1:1:div",
            "app//page.tsx:1:1:div",
            "app/page.tsx:0:1:div",
            "app/page.tsx:1:1:<script>",
            "",
        ] {
            assert!(parse_tag(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn a_form_field_may_carry_the_elements_text() {
        let element =
            parse_field(r#"{"loc": "app/page.tsx:9:7:li", "text": "  Gym\n  3 days  "}"#).unwrap();
        assert_eq!(
            (element.line, element.text.as_deref()),
            (9, Some("Gym 3 days"))
        );
        assert_eq!(
            element.form_value(),
            r#"{"loc":"app/page.tsx:9:7:li","text":"Gym 3 days"}"#
        );
        assert_eq!(parse_field("app/page.tsx:9:7:li").unwrap().text, None);
        assert!(parse_field(r#"{"loc": "../x:1:1:li"}"#).is_err());
        assert!(parse_field("{not json").is_err());
        let long = parse_field(&format!(
            r#"{{"loc": "a.tsx:1:1:p", "text": "{}"}}"#,
            "x".repeat(200)
        ))
        .unwrap();
        assert_eq!(long.text.unwrap().len(), 80);
    }

    #[test]
    fn api_objects_may_leave_out_column_and_name() {
        let element: SelectedInput =
            serde_json::from_value(serde_json::json!({ "file": "app/page.tsx", "line": 4 }))
                .unwrap();
        let element = element.parse().unwrap();
        assert_eq!((element.line, element.column), (4, 0));
        assert_eq!(element.name, "element");
    }

    #[test]
    fn the_snippet_marks_the_line_and_stops_at_the_file_edges() {
        let source = "a\nb\nc\nd\ne\nf\ng\nh\ni\nj\n";
        assert_eq!(
            snippet(source, 3).unwrap(),
            "  1 | a\n  2 | b\n> 3 | c\n  4 | d\n  5 | e\n  6 | f\n  7 | g"
        );
        assert_eq!(snippet(source, 10).unwrap(), "  8 | h\n  9 | i\n>10 | j");
        assert_eq!(snippet(source, 11), None);
    }
}
