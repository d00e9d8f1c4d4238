//! A forgiving reader of the XML-ish tags models write calls in: elements with their
//! attributes and raw inner text, Qwen3-Coder's `<function=NAME>` spelling, CDATA and
//! entities.

/// An element as written: its tag, attributes and raw inner text.
pub(super) struct Element<'a> {
    pub tag: &'a str,
    pub attributes: Vec<(String, String)>,
    pub inner: &'a str,
    /// Where the whole element ends in the text it came from.
    pub end: usize,
}

impl Element<'_> {
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// The element that starts at `start` (a `<`), with its end: self-closing, or up to the
/// first matching closing tag. Qwen3-Coder's `<function=NAME>` and `<parameter=KEY>` are read
/// as `<function name="NAME">` and `<parameter name="KEY">`.
pub(super) fn element_at(text: &str, start: usize) -> Option<Element<'_>> {
    let open_end = start + text[start..].find('>')?;
    let open = &text[start + 1..open_end];
    let self_closing = open.ends_with('/');
    let open = open.trim_end_matches('/');
    let tag_len = open
        .find(|c: char| c.is_whitespace() || c == '=')
        .unwrap_or(open.len());
    let tag = &open[..tag_len];
    if tag.is_empty()
        || !tag
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
    {
        return None;
    }
    let mut attributes = Vec::new();
    let after_tag = &open[tag_len..];
    if let Some(value) = after_tag.strip_prefix('=') {
        attributes.push(("name".to_string(), value.trim().to_string()));
    } else {
        attributes = parse_attributes(after_tag);
    }
    if self_closing {
        return Some(Element {
            tag,
            attributes,
            inner: "",
            end: open_end + 1,
        });
    }
    let close = format!("</{tag}>");
    let inner_start = open_end + 1;
    let inner_end = inner_start + text[inner_start..].find(&close)?;
    Some(Element {
        tag,
        attributes,
        inner: &text[inner_start..inner_end],
        end: inner_end + close.len(),
    })
}

/// `key="value" other='x'`, with XML entities in the values decoded.
fn parse_attributes(text: &str) -> Vec<(String, String)> {
    let mut attributes = Vec::new();
    let mut rest = text.trim();
    while let Some(eq) = rest.find('=') {
        let key = rest[..eq].trim().to_string();
        let after = rest[eq + 1..].trim_start();
        let Some(quote) = after.chars().next().filter(|c| *c == '"' || *c == '\'') else {
            break;
        };
        let Some(close) = after[1..].find(quote) else {
            break;
        };
        attributes.push((key, decode_entities(&after[1..1 + close])));
        rest = after[close + 2..].trim_start();
    }
    attributes
}

fn decode_entities(text: &str) -> String {
    text.replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The child elements of an element's inner text, in order, skipping over each child's
/// content (so the markup of a file being written is not read as elements).
pub(super) fn children(inner: &str) -> Vec<Element<'_>> {
    let mut found = Vec::new();
    let mut position = 0;
    while let Some(offset) = inner[position..].find('<') {
        let start = position + offset;
        match element_at(inner, start) {
            Some(element) => {
                position = element.end;
                found.push(element);
            }
            None => position = start + 1,
        }
    }
    found
}

/// Inner text as a value: CDATA unwrapped, the line breaks around it trimmed.
pub(super) fn text_value(inner: &str) -> String {
    let trimmed = inner.trim_matches(|c| c == '\n' || c == '\r');
    let trimmed = trimmed
        .trim()
        .strip_prefix("<![CDATA[")
        .and_then(|rest| rest.strip_suffix("]]>"))
        .unwrap_or(trimmed);
    trimmed.to_string()
}
