//! `editFile`: changes part of a file by find-and-replace, so that a small change never
//! rewrites, and never breaks, the rest of the file. Each `find` must occur exactly once;
//! spaces and tabs at line ends (and `\r`) are not compared, since models drop or add them.

use serde::Deserialize;
use similar::TextDiff;

#[derive(Debug, Clone, Deserialize)]
pub struct Edit {
    pub find: String,
    pub replace: String,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    #[error("edit {number}: `find` is empty")]
    EmptyFind { number: usize },
    #[error("edit {number}: `find` was not found. {closest}")]
    NotFound { number: usize, closest: String },
    #[error(
        "edit {number}: `find` was found {count} times (at lines {lines}); include more of the surrounding lines so that it occurs once"
    )]
    FoundMany {
        number: usize,
        count: usize,
        lines: String,
    },
}

/// `content` with every edit applied in order (each sees the text the ones before it
/// made), or the first edit that cannot be applied.
pub fn apply(content: &str, edits: &[Edit]) -> Result<String, EditError> {
    let mut text = content.to_string();
    for (index, edit) in edits.iter().enumerate() {
        let number = index + 1;
        if edit.find.trim().is_empty() {
            return Err(EditError::EmptyFind { number });
        }
        let range = find_once(&text, &edit.find, number)?;
        text.replace_range(range, &edit.replace);
    }
    Ok(text)
}

/// Where `find` occurs in `text`: exactly, or else with line-end whitespace ignored.
fn find_once(text: &str, find: &str, number: usize) -> Result<std::ops::Range<usize>, EditError> {
    let exact: Vec<usize> = text.match_indices(find).map(|(start, _)| start).collect();
    match exact.len() {
        1 => return Ok(exact[0]..exact[0] + find.len()),
        0 => {}
        count => return Err(found_many(text, number, count, &exact)),
    }
    let (normal_text, offsets) = normalize(text);
    let (normal_find, _) = normalize(find);
    let loose: Vec<usize> = normal_text
        .match_indices(normal_find.as_str())
        .map(|(start, _)| start)
        .collect();
    match loose.len() {
        0 => {
            let mut closest = closest(text, find);
            if number > 1 {
                closest.push_str(" (Edits apply in order: this one was looked for in the text the edits before it made.)");
            }
            Err(EditError::NotFound { number, closest })
        }
        1 => Ok(offsets[loose[0]]..offsets[loose[0] + normal_find.len()]),
        count => {
            let starts: Vec<usize> = loose.iter().map(|&start| offsets[start]).collect();
            Err(found_many(text, number, count, &starts))
        }
    }
}

/// `text` without whitespace at line ends, and for each of its bytes (and its end) the
/// offset of the same byte in `text`.
fn normalize(text: &str) -> (String, Vec<usize>) {
    let mut normal = String::with_capacity(text.len());
    let mut offsets = Vec::with_capacity(text.len() + 1);
    let mut start = 0;
    for line in text.split_inclusive('\n') {
        let body = line.strip_suffix('\n').unwrap_or(line);
        let kept = body.trim_end_matches([' ', '\t', '\r']);
        normal.push_str(kept);
        offsets.extend(start..start + kept.len());
        if body.len() < line.len() {
            normal.push('\n');
            offsets.push(start + body.len());
        }
        start += line.len();
    }
    offsets.push(text.len());
    (normal, offsets)
}

fn found_many(text: &str, number: usize, count: usize, starts: &[usize]) -> EditError {
    let lines: Vec<String> = starts
        .iter()
        .map(|&start| (text[..start].matches('\n').count() + 1).to_string())
        .collect();
    EditError::FoundMany {
        number,
        count,
        lines: lines.join(", "),
    }
}

/// The lines of `text` most like `find`'s first line, for the model to correct its `find`.
fn closest(text: &str, find: &str) -> String {
    let Some(wanted) = find.lines().map(str::trim).find(|line| !line.is_empty()) else {
        return String::new();
    };
    let lines: Vec<&str> = text.lines().collect();
    let best = lines
        .iter()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(index, line)| {
            let ratio = TextDiff::from_chars(line.trim(), wanted).ratio();
            (index, ratio)
        })
        .max_by(|a, b| a.1.total_cmp(&b.1));
    match best {
        Some((index, ratio)) if ratio >= 0.5 => {
            let shown = find.lines().count().clamp(1, 5);
            let end = (index + shown).min(lines.len());
            let quoted: Vec<String> = (index..end)
                .map(|at| format!("{:>4} | {}", at + 1, lines[at]))
                .collect();
            format!(
                "The closest lines in the file are:\n{}\nCopy `find` from the file exactly (read it first if unsure).",
                quoted.join("\n")
            )
        }
        _ => "Nothing in the file resembles its first line: read the file first.".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edit(find: &str, replace: &str) -> Edit {
        Edit {
            find: find.into(),
            replace: replace.into(),
        }
    }

    const PAGE: &str = "export default function Page() {\n  return (\n    <main>\n      <h1>Habits</h1>\n      <p>Track them.</p>\n    </main>\n  );\n}\n";

    #[test]
    fn edits_apply_in_order_and_leave_the_rest_of_the_file_alone() {
        let edited = apply(
            PAGE,
            &[
                edit("<h1>Habits</h1>", "<h1>My habits</h1>"),
                edit("My habits", "Daily habits"),
                edit("      <p>Track them.</p>\n", ""),
            ],
        )
        .unwrap();
        assert_eq!(
            edited,
            "export default function Page() {\n  return (\n    <main>\n      <h1>Daily habits</h1>\n    </main>\n  );\n}\n"
        );
    }

    #[test]
    fn whitespace_at_line_ends_is_tolerated_on_both_sides() {
        let with_trailing = PAGE.replace("<main>\n", "<main>  \r\n");
        let edited = apply(
            &with_trailing,
            &[edit(
                "    <main>\n      <h1>Habits</h1>   \n",
                "    <main>\n      <h1>Done</h1>\n",
            )],
        )
        .unwrap();
        assert!(
            edited.contains("<main>\n      <h1>Done</h1>\n      <p>"),
            "{edited}"
        );
        assert!(edited.starts_with("export default function Page() {\n  return (\n"));
    }

    #[test]
    fn a_find_that_occurs_twice_is_refused_with_its_lines() {
        let text = "const a = 1;\nconst b = 1;\nconst a = 1;\n";
        let error = apply(text, &[edit("const a = 1;", "const a = 2;")]).unwrap_err();
        assert_eq!(
            error,
            EditError::FoundMany {
                number: 1,
                count: 2,
                lines: "1, 3".into()
            }
        );
    }

    #[test]
    fn a_find_that_is_not_there_names_the_closest_lines() {
        let error = apply(PAGE, &[edit("<h1>Habit</h1>", "<h1>x</h1>")]).unwrap_err();
        let EditError::NotFound { number, closest } = &error else {
            panic!("{error:?}");
        };
        assert_eq!(*number, 1);
        assert!(
            closest.contains("   4 |       <h1>Habits</h1>"),
            "{closest}"
        );
        let error = apply(PAGE, &[edit("zzzz qqqq", "x")]).unwrap_err();
        assert!(error.to_string().contains("read the file first"), "{error}");
    }

    #[test]
    fn a_later_edit_that_fails_fails_the_whole_call() {
        let error = apply(PAGE, &[edit("Habits", "Goals"), edit("", "x")]).unwrap_err();
        assert_eq!(error, EditError::EmptyFind { number: 2 });
        let error = apply(PAGE, &[edit("Habits", "Goals"), edit("Habits", "x")]).unwrap_err();
        assert!(
            matches!(error, EditError::NotFound { number: 2, .. }),
            "{error:?}"
        );
    }
}
