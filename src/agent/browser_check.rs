//! The browser check: each page of the app opened in the sandbox's headless Chromium, by the
//! template's `check.cjs` (puppeteer-core over the DevTools protocol), which watches for what
//! only a browser sees and clicks each button and link of the first screen once.
//!
//! The browser runs inside the sandbox, as the sandbox's user: it executes the app's
//! untrusted code with no more rights than the dev server, on Docker and on E2B alike, and
//! CodeFlux never opens a connection to it. What comes back is the sandbox's word, so the
//! report is parsed defensively and its screenshots are checked to be images.

use std::time::Duration;

use base64::Engine as _;
use serde::Deserialize;

use crate::sandbox::{Sandbox, SandboxError, shell_quote};
use crate::store::{BrowserCheck, CheckedPage};

/// Where the template installs the driver (see `sandbox-templates/nextjs/Dockerfile`).
pub const CHECK_SCRIPT: &str = "/opt/codeflux/browser/check.cjs";
const SHOTS_DIR: &str = "/tmp/codeflux-browser-shots";
/// Buttons and links clicked per page, at most.
const CLICKS_PER_PAGE: usize = 20;
/// A page gets this long to load, settle and be clicked through.
const PER_PAGE: Duration = Duration::from_secs(150);
/// Largest screenshot read back; a 1280×800 JPEG is far smaller.
const MAX_SCREENSHOT_BYTES: usize = 150 * 1024;

/// What one run of the check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub check: BrowserCheck,
    /// One line per problem, for the model: page, element clicked, message, first app frame.
    pub problems: Vec<String>,
    /// `(page index, JPEG bytes)` for the pages that have a screenshot.
    pub screenshots: Vec<(usize, Vec<u8>)>,
}

#[derive(Debug, Deserialize)]
struct Report {
    available: bool,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    pages: Vec<PageReport>,
}

#[derive(Debug, Deserialize)]
struct PageReport {
    route: String,
    #[serde(default)]
    screenshot: Option<String>,
    #[serde(default)]
    clicks: u32,
    #[serde(default)]
    ms: u64,
    #[serde(default)]
    problems: Vec<Found>,
}

#[derive(Debug, Deserialize)]
struct Found {
    kind: String,
    message: String,
    #[serde(default)]
    element: Option<String>,
    #[serde(default)]
    frame: Option<String>,
}

impl Outcome {
    fn unavailable(reason: impl Into<String>) -> Self {
        Self {
            check: BrowserCheck {
                unavailable: Some(reason.into()),
                pages: Vec::new(),
            },
            problems: Vec::new(),
            screenshots: Vec::new(),
        }
    }
}

impl Outcome {
    /// The screenshot of `/` as a data URL, for a model that reads images.
    pub fn front_page_image(&self) -> Option<String> {
        let index = self.check.pages.iter().position(|page| page.route == "/")?;
        let (_, bytes) = self.screenshots.iter().find(|(at, _)| *at == index)?;
        let kind = crate::store::images::ImageKind::sniff(bytes)?;
        Some(format!(
            "data:{};base64,{}",
            kind.media_type(),
            base64::engine::general_purpose::STANDARD.encode(bytes)
        ))
    }
}

/// Opens `routes` (as the page check found them) in the sandbox's browser. Its clicks may
/// add or delete the app's rows (a "Delete" button is clicked like any other), so the
/// development data is put back as it was before the check.
pub async fn run(sandbox: &dyn Sandbox, routes: &[String]) -> Result<Outcome, SandboxError> {
    let database = crate::data::Database::new(sandbox);
    let before = match database.snapshot().await {
        Ok(snapshot) => snapshot.map(|(gzipped, _)| gzipped),
        Err(crate::data::DataError::Sandbox(error)) if error.is_lost() => return Err(error),
        Err(error) => {
            tracing::warn!(%error, "could not keep the app's data before the browser check");
            None
        }
    };
    let outcome = open_pages(sandbox, routes).await;
    if let Some(gzipped) = before
        && let Err(error) = database.restore(&gzipped).await
    {
        tracing::warn!(%error, "could not put the app's data back after the browser check");
    }
    outcome
}

async fn open_pages(sandbox: &dyn Sandbox, routes: &[String]) -> Result<Outcome, SandboxError> {
    let options = serde_json::json!({
        "base": format!("http://127.0.0.1:{}", crate::sandbox::PREVIEW_PORT),
        "routes": routes,
        "shots": SHOTS_DIR,
        "clicks": CLICKS_PER_PAGE,
    });
    let command = format!(
        "if [ ! -f {CHECK_SCRIPT} ]; then echo; echo '{{\"available\":false,\"reason\":\"the sandbox image has no browser check; rebuild it (codeflux template build)\"}}'; exit 0; fi; \
         rm -rf {SHOTS_DIR}; node {CHECK_SCRIPT} {} 2>&1 | tail -c 200000",
        shell_quote(&options.to_string())
    );
    let limit = PER_PAGE * routes.len().max(1) as u32 + Duration::from_secs(60);
    let output = sandbox.run(&command, limit).await?;
    let Some(report) = parse_report(&output.stdout) else {
        let tail: String = output.stdout.trim().chars().rev().take(400).collect();
        let tail: String = tail.chars().rev().collect();
        return Ok(Outcome::unavailable(format!(
            "the browser check did not report (exit {}): {tail}",
            output.exit_code
        )));
    };
    if !report.available {
        return Ok(Outcome::unavailable(
            report
                .reason
                .unwrap_or_else(|| "no browser in the sandbox".into()),
        ));
    }
    let mut outcome = Outcome {
        check: BrowserCheck::default(),
        problems: Vec::new(),
        screenshots: Vec::new(),
    };
    for (index, page) in report.pages.into_iter().enumerate() {
        let screenshot = match &page.screenshot {
            Some(path) if path.starts_with(SHOTS_DIR) => read_screenshot(sandbox, path).await?,
            _ => None,
        };
        outcome.check.pages.push(CheckedPage {
            route: page.route.clone(),
            clicks: page.clicks,
            problems: page.problems.len() as u32,
            millis: page.ms,
            screenshot: screenshot.is_some(),
        });
        if let Some(bytes) = screenshot {
            outcome.screenshots.push((index, bytes));
        }
        outcome.problems.extend(
            page.problems
                .iter()
                .map(|found| describe_problem(&page.route, found)),
        );
    }
    Ok(outcome)
}

/// The report is the last line that parses; the browser may print warnings before it.
fn parse_report(stdout: &str) -> Option<Report> {
    stdout
        .lines()
        .rev()
        .filter(|line| line.trim_start().starts_with('{'))
        .find_map(|line| serde_json::from_str(line.trim()).ok())
}

async fn read_screenshot(
    sandbox: &dyn Sandbox,
    path: &str,
) -> Result<Option<Vec<u8>>, SandboxError> {
    let output = sandbox
        .run(
            &format!(
                "[ $(wc -c < {0}) -le {MAX_SCREENSHOT_BYTES} ] && base64 -w0 {0}",
                shell_quote(path)
            ),
            Duration::from_secs(30),
        )
        .await?;
    if !output.success() {
        return Ok(None);
    }
    Ok(base64::engine::general_purpose::STANDARD
        .decode(output.stdout.trim())
        .ok()
        .filter(|bytes| crate::store::images::ImageKind::sniff(bytes).is_some()))
}

/// `/habits: clicking button "Add": an uncaught exception: boom (at onClick (…page_tsx…:29:27))`
fn describe_problem(route: &str, found: &Found) -> String {
    let what = match found.kind.as_str() {
        "exception" => "an uncaught exception",
        "console" => "console.error",
        "hydration" => "a hydration error",
        "request" => "a failed request",
        "overlay" => "Next.js's error overlay",
        "blank" => "nothing visible",
        "load" => "the page did not load",
        _ => "a problem",
    };
    // The first paragraph says what happened; the rest of React's messages are advice.
    let message = found
        .message
        .split("\n\n")
        .next()
        .unwrap_or_default()
        .trim();
    let mut line = format!("{route}: ");
    if let Some(element) = &found.element {
        line.push_str(&format!("after clicking {element}: "));
    }
    line.push_str(&format!("{what}: {message}"));
    if let Some(frame) = &found.frame {
        line.push_str(&format!(" ({frame})"));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_is_the_last_json_line_and_warnings_before_it_are_ignored() {
        let stdout = "[WARNING] something\n{not json\n{\"available\":true,\"pages\":[{\"route\":\"/\",\"clicks\":3,\"ms\":900,\"problems\":[]}]}\n";
        let report = parse_report(stdout).unwrap();
        assert!(report.available);
        assert_eq!(report.pages[0].clicks, 3);
        assert!(parse_report("no report at all").is_none());
    }

    #[test]
    fn a_problem_names_its_page_element_message_and_frame() {
        let found = Found {
            kind: "exception".into(),
            message: "Hydration failed because the server rendered text didn't match the client.\n\n- A server/client branch".into(),
            element: Some("button \"Add\"".into()),
            frame: Some("at onClick (http://127.0.0.1:3000/_next/static/chunks/app_page_tsx.js:29:27)".into()),
        };
        assert_eq!(
            describe_problem("/habits", &found),
            "/habits: after clicking button \"Add\": an uncaught exception: Hydration failed because the server rendered text didn't match the client. (at onClick (http://127.0.0.1:3000/_next/static/chunks/app_page_tsx.js:29:27))"
        );
    }

    #[test]
    fn the_summary_counts_pages_clicks_and_errors() {
        let page = |clicks, problems| CheckedPage {
            route: "/".into(),
            clicks,
            problems,
            millis: 10,
            screenshot: true,
        };
        let clean = BrowserCheck {
            unavailable: None,
            pages: vec![page(10, 0), page(3, 0), page(1, 0)],
        };
        assert_eq!(
            clean.describe(),
            "Checked in a browser: 3 pages, 14 clicks, no errors"
        );
        let one = BrowserCheck {
            unavailable: None,
            pages: vec![page(1, 1)],
        };
        assert_eq!(
            one.describe(),
            "Checked in a browser: 1 page, 1 click, 1 error"
        );
        assert_eq!(
            Outcome::unavailable("no Chromium").check.describe(),
            "Not checked in a browser: no Chromium"
        );
    }
}
