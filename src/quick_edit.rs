//! Quick edits without the model: the static text of an element, or its literal
//! `className`, changed straight in the source at the place the picker named. Anything
//! computed (an expression, a template string, children with markup) is left to a prompt.
//!
//! The element is found by the line and column the template's tagger recorded (TypeScript
//! columns count UTF-16 units), and only the few bytes of the text or the class string are
//! replaced, so everything else in the file stays exactly as written.

use std::ops::Range;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum QuickEditError {
    #[error(
        "<{name}> is no longer at line {line}, column {column}: the file changed since it was selected. Select it again."
    )]
    Moved {
        name: String,
        line: u32,
        column: u32,
    },
    #[error(
        "this part of <{0}> is computed in code, not written out; describe the change in a prompt instead"
    )]
    Dynamic(String),
    #[error(
        "text for a quick edit cannot contain {{, }}, < or > or line breaks; use a prompt for markup"
    )]
    UnsafeText,
    #[error("classes cannot contain quotes, braces or line breaks")]
    UnsafeClass,
    #[error("a quick edit changes at most 500 characters")]
    TooLong,
    #[error("nothing to change: give new text or new classes")]
    Nothing,
}

/// What a quick edit may change on one element, as it stands in the source.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Editable {
    /// The static text between the tags, with runs of white space shown as one space.
    pub text: Option<String>,
    /// The `className="…"` string.
    pub class_name: Option<String>,
}

/// The new values; `None` keeps what is there.
#[derive(Debug, Clone, Default)]
pub struct QuickChange {
    pub text: Option<String>,
    pub class_name: Option<String>,
}

/// Where the editable parts of one element are in the source.
#[derive(Debug)]
struct Located {
    /// The text between the tags, without its surrounding white space.
    text: Option<Range<usize>>,
    class_name: Option<Range<usize>>,
}

const MAX_CHARS: usize = 500;

/// What can be quickly edited on the element `<name>` at `line`:`column`.
pub fn inspect(
    source: &str,
    line: u32,
    column: u32,
    name: &str,
) -> Result<Editable, QuickEditError> {
    let located = locate(source, line, column, name)?;
    Ok(Editable {
        text: located.text.map(|range| {
            source[range]
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        }),
        class_name: located.class_name.map(|range| source[range].to_string()),
    })
}

/// The source with the change made.
pub fn apply(
    source: &str,
    line: u32,
    column: u32,
    name: &str,
    change: &QuickChange,
) -> Result<String, QuickEditError> {
    if change.text.is_none() && change.class_name.is_none() {
        return Err(QuickEditError::Nothing);
    }
    let located = locate(source, line, column, name)?;
    let mut edits: Vec<(Range<usize>, &str)> = Vec::new();
    if let Some(text) = &change.text {
        if text.chars().count() > MAX_CHARS {
            return Err(QuickEditError::TooLong);
        }
        if text.trim().is_empty() || text.contains(['{', '}', '<', '>', '\n', '\r']) {
            return Err(QuickEditError::UnsafeText);
        }
        let range = located
            .text
            .ok_or_else(|| QuickEditError::Dynamic(name.to_string()))?;
        edits.push((range, text.trim()));
    }
    if let Some(class_name) = &change.class_name {
        if class_name.chars().count() > MAX_CHARS {
            return Err(QuickEditError::TooLong);
        }
        if class_name.contains(['"', '\'', '`', '{', '}', '\n', '\r']) {
            return Err(QuickEditError::UnsafeClass);
        }
        let range = located
            .class_name
            .ok_or_else(|| QuickEditError::Dynamic(name.to_string()))?;
        edits.push((range, class_name.trim()));
    }
    // From the end, so earlier ranges stay valid.
    edits.sort_by_key(|(range, _)| std::cmp::Reverse(range.start));
    let mut out = source.to_string();
    for (range, replacement) in edits {
        out.replace_range(range, replacement);
    }
    Ok(out)
}

/// The byte offset of a 1-based line and UTF-16 column.
fn offset_of(source: &str, line: u32, column: u32) -> Option<usize> {
    let line_start = if line == 1 {
        0
    } else {
        source
            .match_indices('\n')
            .nth(line as usize - 2)
            .map(|(at, _)| at + 1)?
    };
    let mut units = 0;
    for (at, character) in source[line_start..].char_indices() {
        if units + 1 == column as usize {
            return Some(line_start + at);
        }
        if character == '\n' {
            return None;
        }
        units += character.len_utf16();
    }
    None
}

fn locate(source: &str, line: u32, column: u32, name: &str) -> Result<Located, QuickEditError> {
    let moved = || QuickEditError::Moved {
        name: name.to_string(),
        line,
        column,
    };
    let start = offset_of(source, line, column).ok_or_else(moved)?;
    let bytes = source.as_bytes();
    if bytes.get(start) != Some(&b'<') {
        return Err(moved());
    }
    let name_end = start
        + 1
        + source[start + 1..]
            .find(|c: char| c.is_whitespace() || c == '/' || c == '>')
            .ok_or_else(moved)?;
    if &source[start + 1..name_end] != name {
        return Err(moved());
    }
    let dynamic = || QuickEditError::Dynamic(name.to_string());

    // The attributes, up to `>` or `/>`.
    let mut at = name_end;
    let mut class_name = None;
    let self_closing = loop {
        at = skip_whitespace(bytes, at);
        match bytes.get(at) {
            None => return Err(dynamic()),
            Some(b'>') => break false,
            Some(b'/') if bytes.get(at + 1) == Some(&b'>') => break true,
            Some(b'{') => at = skip_braces(bytes, at).ok_or_else(dynamic)?,
            Some(_) => {
                let attribute_end = at
                    + source[at..]
                        .find(|c: char| c.is_whitespace() || matches!(c, '=' | '/' | '>'))
                        .ok_or_else(dynamic)?;
                let attribute = &source[at..attribute_end];
                at = skip_whitespace(bytes, attribute_end);
                if bytes.get(at) != Some(&b'=') {
                    continue; // a boolean attribute
                }
                at = skip_whitespace(bytes, at + 1);
                match bytes.get(at) {
                    Some(&quote @ (b'"' | b'\'')) => {
                        let end =
                            at + 1 + source[at + 1..].find(quote as char).ok_or_else(dynamic)?;
                        if attribute == "className" {
                            class_name = Some(at + 1..end);
                        }
                        at = end + 1;
                    }
                    Some(b'{') => at = skip_braces(bytes, at).ok_or_else(dynamic)?,
                    _ => return Err(dynamic()),
                }
            }
        }
    };
    if self_closing {
        return Ok(Located {
            text: None,
            class_name,
        });
    }

    // Static text: nothing but text up to this element's own closing tag.
    let children_start = at + 1;
    let children_end = children_start
        + source[children_start..]
            .find(['<', '{'])
            .ok_or_else(dynamic)?;
    let closing = format!("</{name}>");
    let closes_here = source[children_end..].starts_with(&closing)
        || source[children_end..].starts_with(&format!("</{name} "));
    let raw = &source[children_start..children_end];
    let text = (closes_here && !raw.trim().is_empty()).then(|| {
        let leading = raw.len() - raw.trim_start().len();
        let trailing = raw.len() - raw.trim_end().len();
        children_start + leading..children_end - trailing
    });
    Ok(Located { text, class_name })
}

fn skip_whitespace(bytes: &[u8], mut at: usize) -> usize {
    while bytes.get(at).is_some_and(u8::is_ascii_whitespace) {
        at += 1;
    }
    at
}

/// The position after the `}` that closes the `{` at `at`, passing over strings, template
/// literals and comments. `None` when it never closes.
fn skip_braces(bytes: &[u8], mut at: usize) -> Option<usize> {
    let mut depth = 0usize;
    while let Some(&byte) = bytes.get(at) {
        match byte {
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(at + 1);
                }
            }
            b'"' | b'\'' => {
                at += 1;
                while *bytes.get(at)? != byte {
                    if bytes[at] == b'\\' {
                        at += 1;
                    }
                    at += 1;
                }
            }
            b'`' => {
                at += 1;
                while *bytes.get(at)? != b'`' {
                    match bytes[at] {
                        b'\\' => at += 1,
                        b'$' if bytes.get(at + 1) == Some(&b'{') => {
                            at = skip_braces(bytes, at + 1)? - 1;
                        }
                        _ => {}
                    }
                    at += 1;
                }
            }
            b'/' if bytes.get(at + 1) == Some(&b'/') => {
                while bytes.get(at).is_some_and(|&byte| byte != b'\n') {
                    at += 1;
                }
            }
            b'/' if bytes.get(at + 1) == Some(&b'*') => {
                at += 2;
                while !(bytes.get(at)? == &b'*' && bytes.get(at + 1) == Some(&b'/')) {
                    at += 1;
                }
                at += 1;
            }
            _ => {}
        }
        at += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = r#"export default function Page() {
  const done = 3;
  return (
    <main className="mx-auto max-w-md p-8">
      <h1 className="text-2xl font-bold" onClick={() => { if (done > 2) alert("}"); }}>
        Habit tracker
      </h1>
      <p className={`text-sm ${done ? "text-green-600" : ""}`}>{done} done</p>
      <Button variant="outline" {...{ size: "sm" }}>Skip</Button>
      <img alt='logo' src="/logo.png" />
      <span title="ünïcödé">😀 <b>bold</b> after</span>
    </main>
  );
}
"#;

    fn edit(
        line: u32,
        column: u32,
        name: &str,
        text: Option<&str>,
        class: Option<&str>,
    ) -> Result<String, QuickEditError> {
        apply(
            PAGE,
            line,
            column,
            name,
            &QuickChange {
                text: text.map(str::to_string),
                class_name: class.map(str::to_string),
            },
        )
    }

    #[test]
    fn static_text_and_literal_classes_are_found() {
        assert_eq!(
            inspect(PAGE, 5, 7, "h1").unwrap(),
            Editable {
                text: Some("Habit tracker".into()),
                class_name: Some("text-2xl font-bold".into())
            }
        );
        assert_eq!(
            inspect(PAGE, 9, 7, "Button").unwrap(),
            Editable {
                text: Some("Skip".into()),
                class_name: None
            }
        );
        assert_eq!(inspect(PAGE, 10, 7, "img").unwrap(), Editable::default());
    }

    #[test]
    fn computed_parts_are_not_offered() {
        // A template-string class and text with an expression in it.
        assert_eq!(inspect(PAGE, 8, 7, "p").unwrap(), Editable::default());
        // Text around markup.
        assert_eq!(inspect(PAGE, 11, 7, "span").unwrap().text, None);
        assert_eq!(
            edit(8, 7, "p", Some("x"), None),
            Err(QuickEditError::Dynamic("p".into()))
        );
    }

    #[test]
    fn an_edit_changes_only_its_bytes() {
        let changed = edit(
            5,
            7,
            "h1",
            Some("My habits"),
            Some("text-3xl text-blue-700"),
        )
        .unwrap();
        assert_eq!(
            changed,
            PAGE.replace("Habit tracker", "My habits")
                .replace("text-2xl font-bold", "text-3xl text-blue-700")
        );
        let changed = edit(9, 7, "Button", Some("Not today"), None).unwrap();
        assert_eq!(changed, PAGE.replace(">Skip<", ">Not today<"));
    }

    #[test]
    fn a_stale_place_or_unsafe_values_are_refused() {
        assert!(matches!(
            edit(5, 8, "h1", Some("x"), None),
            Err(QuickEditError::Moved { .. })
        ));
        assert!(matches!(
            edit(5, 7, "h2", Some("x"), None),
            Err(QuickEditError::Moved { .. })
        ));
        assert!(matches!(
            edit(99, 1, "h1", Some("x"), None),
            Err(QuickEditError::Moved { .. })
        ));
        assert_eq!(
            edit(5, 7, "h1", Some("<b>x</b>"), None),
            Err(QuickEditError::UnsafeText)
        );
        assert_eq!(
            edit(5, 7, "h1", Some("{x}"), None),
            Err(QuickEditError::UnsafeText)
        );
        assert_eq!(
            edit(5, 7, "h1", None, Some("a\" onClick=\"x")),
            Err(QuickEditError::UnsafeClass)
        );
        assert_eq!(edit(5, 7, "h1", None, None), Err(QuickEditError::Nothing));
    }

    #[test]
    fn columns_count_utf16_units_like_typescript() {
        let source = "const a = \"😀\"; const b = <b className=\"x\">hi</b>;\n";
        // 😀 is two UTF-16 units: `<b` is at character 26 (1-based 27).
        assert_eq!(
            inspect(source, 1, 27, "b").unwrap().text.as_deref(),
            Some("hi")
        );
    }
}
