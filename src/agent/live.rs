//! The answer as it streams in, for people watching: a progress event at most a few times
//! a second with the text so far and, while `createOrUpdateFiles` is being written, the file
//! and its code so far (read out of the unfinished JSON arguments).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::tools::WRITE_FILES;
use crate::events::EventKind;
use crate::llm::Partial;

/// How often the watchers get a new snapshot.
const EVERY: Duration = Duration::from_millis(250);
const TEXT_CHARS: usize = 600;
const CODE_CHARS: usize = 3000;

pub struct LiveOutput<'a> {
    pub on_event: &'a (dyn Fn(EventKind) + Send + Sync),
    last: Mutex<Option<Instant>>,
}

impl<'a> LiveOutput<'a> {
    pub fn new(on_event: &'a (dyn Fn(EventKind) + Send + Sync)) -> Self {
        Self {
            on_event,
            last: Mutex::new(None),
        }
    }

    pub fn observe(&self, partial: Partial<'_>) {
        {
            let mut last = self
                .last
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if last.is_some_and(|at| at.elapsed() < EVERY) {
                return;
            }
            *last = Some(Instant::now());
        }
        let (file, code) = match partial.tool {
            Some((name, arguments)) if name == WRITE_FILES => match file_being_written(arguments) {
                Some((path, code)) => (path, Some(tail(&code, CODE_CHARS))),
                None => (None, None),
            },
            _ => (None, None),
        };
        (self.on_event)(EventKind::ModelStreaming {
            text: tail(super::markup::visible(partial.text).trim(), TEXT_CHARS),
            file,
            code,
        });
    }
}

fn tail(text: &str, max_chars: usize) -> String {
    let count = text.chars().count();
    if count <= max_chars {
        return text.to_string();
    }
    let kept: String = text.chars().skip(count - max_chars).collect();
    format!("…{kept}")
}

/// The last file in unfinished `createOrUpdateFiles` arguments: its path (once written; a
/// model may write the content first) and its content so far, e.g. from
/// `{"files": [{"path": "app/page.tsx", "content": "export defa`.
pub fn file_being_written(arguments: &str) -> Option<(Option<String>, String)> {
    let content_at = arguments.rfind("\"content\"");
    let path_at = arguments.rfind("\"path\"");
    let read = |at: usize, key: &str| {
        string_after_key(&arguments[at + key.len()..]).map(|(value, _)| value)
    };
    match (path_at, content_at) {
        (None, None) => None,
        // The path of the file whose content comes last (it may stand before or after it).
        (Some(path_at), Some(content_at)) if path_at > content_at => {
            let path = read(path_at, "\"path\"");
            let complete = string_after_key(&arguments[content_at + "\"content\"".len()..])
                .is_some_and(|(_, complete)| complete);
            // Content first, path after it: the path belongs to that content only once the
            // content is complete; otherwise it named the file before.
            if complete {
                Some((path, read(content_at, "\"content\"").unwrap_or_default()))
            } else {
                Some((None, read(content_at, "\"content\"").unwrap_or_default()))
            }
        }
        (path_at, content_at) => Some((
            path_at.and_then(|at| read(at, "\"path\"")),
            content_at
                .and_then(|at| read(at, "\"content\""))
                .unwrap_or_default(),
        )),
    }
}

/// The JSON string after `: "` at the start of `rest`, unescaped as far as it goes, and
/// whether it was complete.
fn string_after_key(rest: &str) -> Option<(String, bool)> {
    let rest = rest.trim_start().strip_prefix(':')?.trim_start();
    let mut chars = rest.strip_prefix('"')?.chars();
    let mut value = String::new();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some((value, true)),
            '\\' => match chars.next() {
                Some('n') => value.push('\n'),
                Some('t') => value.push('\t'),
                Some('r') => {}
                Some('u') => {
                    let hex: String = chars.by_ref().take(4).collect();
                    if let Some(decoded) =
                        u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32)
                    {
                        value.push(decoded);
                    }
                }
                Some(other) => value.push(other),
                None => break,
            },
            other => value.push(other),
        }
    }
    Some((value, false))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_being_written_is_read_from_unfinished_arguments() {
        assert_eq!(
            file_being_written(
                r#"{"files": [{"path": "a.tsx", "content": "done"}, {"path": "app/page.tsx", "content": "export default function Page() {\n  return <main>He"#
            ),
            Some((
                Some("app/page.tsx".to_string()),
                "export default function Page() {\n  return <main>He".to_string()
            ))
        );
        assert_eq!(
            file_being_written(r#"{"files": [{"path": "app/pa"#),
            Some((Some("app/pa".to_string()), String::new()))
        );
        assert_eq!(
            file_being_written(r#"{"files":[{"content":"say \"hi\"\u00e9","path":"x.ts"}]}"#),
            Some((Some("x.ts".to_string()), "say \"hi\"é".to_string()))
        );
        assert_eq!(
            file_being_written(r#"{"files":[{"content":"export const"#),
            Some((None, "export const".to_string()))
        );
        assert_eq!(file_being_written(r#"{"fil"#), None);
    }

    #[test]
    fn snapshots_are_throttled() {
        let seen = Mutex::new(Vec::new());
        let on_event = |event: EventKind| seen.lock().unwrap().push(event);
        let live = LiveOutput::new(&on_event);
        for text in ["a", "ab", "abc"] {
            live.observe(Partial { text, tool: None });
        }
        let seen = seen.into_inner().unwrap();
        assert_eq!(seen.len(), 1, "{seen:?}");
    }
}
