//! How a check's problems are told: to the model (grouped, with files and lines), to people
//! (a short count), and as a fingerprint that recognises the same failure seen twice.

use std::fmt::Write as _;

use super::{
    BROWSER_SECTION, COMPILE_SECTION, DATABASE_SECTION, DEV_SERVER_SECTION, Problem,
    RENDER_SECTION, TYPE_SECTION,
};

/// What the agent is told: every problem, grouped, with files and lines as the tools gave.
pub fn feedback(problems: &[Problem]) -> String {
    let mut text = String::from("The app does not work yet:\n");
    for title in [
        DEV_SERVER_SECTION,
        DATABASE_SECTION,
        RENDER_SECTION,
        COMPILE_SECTION,
        TYPE_SECTION,
        BROWSER_SECTION,
    ] {
        let items: Vec<&Problem> = problems
            .iter()
            .filter(|problem| problem.section() == title)
            .collect();
        if items.is_empty() {
            continue;
        }
        let _ = write!(text, "\n{title}:\n");
        for problem in items {
            let _ = writeln!(text, "- {}", problem.text());
        }
    }
    text.push_str(
        "\nFix these (read the files first), then reply with the <task_summary> block again.",
    );
    text
}

/// A short line for people: "2 type errors, 1 page that does not render".
pub fn describe(problems: &[Problem]) -> String {
    let count = |kind: fn(&Problem) -> bool| problems.iter().filter(|p| kind(p)).count();
    let parts = [
        (
            count(|p| matches!(p, Problem::DevServer(_))),
            "dev server exit",
            "dev server exits",
        ),
        (
            count(|p| matches!(p, Problem::Type(_))),
            "type error",
            "type errors",
        ),
        (
            count(|p| matches!(p, Problem::Compile(_))),
            "compile error",
            "compile errors",
        ),
        (
            count(|p| matches!(p, Problem::Render(_))),
            "page that does not render",
            "pages that do not render",
        ),
        (
            count(|p| matches!(p, Problem::Database(_))),
            "schema that does not apply",
            "schemas that do not apply",
        ),
        (
            count(|p| matches!(p, Problem::Browser(_))),
            "error in the browser",
            "errors in the browser",
        ),
    ];
    parts
        .into_iter()
        .filter(|(n, _, _)| *n > 0)
        .map(|(n, one, many)| format!("{n} {}", if n == 1 { one } else { many }))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The problems with what changes from run to run (paths, line numbers, ids, timings)
/// removed, so the same failure seen twice is recognised.
pub fn fingerprint(problems: &[Problem]) -> String {
    let mut all: Vec<String> = problems
        .iter()
        .map(|problem| {
            problem
                .text()
                .split_whitespace()
                .filter(|word| !word.contains('/'))
                .map(|word| {
                    word.chars()
                        .map(|c| if c.is_ascii_digit() { '#' } else { c })
                        .collect::<String>()
                        .to_lowercase()
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    all.sort();
    all.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_failure_has_the_same_fingerprint_whatever_the_lines_and_paths() {
        let first = [Problem::Type(
            "app/page.tsx(3,7): error TS2322: Type 'string' is not assignable to type 'number'."
                .into(),
        )];
        let moved = [Problem::Type(
            "app/home/page.tsx(12,9): error TS2322: Type 'string' is not assignable to type 'number'."
                .into(),
        )];
        let other = [Problem::Type(
            "app/page.tsx(3,7): error TS2304: Cannot find name 'x'.".into(),
        )];
        assert_eq!(fingerprint(&first), fingerprint(&moved));
        assert_ne!(fingerprint(&first), fingerprint(&other));
    }

    #[test]
    fn feedback_groups_problems_and_describe_counts_them() {
        let problems = [
            Problem::Type("a.tsx(1,1): error TS1: x".into()),
            Problem::Type("b.tsx(1,1): error TS1: y".into()),
            Problem::Render("/ answered HTTP 500 with an error page instead of rendering".into()),
        ];
        let text = feedback(&problems);
        assert!(text.starts_with("The app does not work yet:"));
        assert!(text.contains("Type errors (tsc --noEmit):\n- a.tsx(1,1)"));
        assert!(text.contains("Pages that do not render:\n- / answered HTTP 500"));
        assert_eq!(
            describe(&problems),
            "2 type errors, 1 page that does not render"
        );
    }
}
