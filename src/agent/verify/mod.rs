//! Checks that the app works once the agent says it is done: the type check, the dev
//! server's own output since the job began (compile errors), every page route answering
//! 200 without a Next.js error page, and then each page opened and clicked through in a
//! browser (`browser_check`). What fails goes back to the agent as a new turn.

use std::fmt::Write as _;
use std::time::Duration;

use super::{browser_check, dev_server};

mod report;
use crate::sandbox::{Sandbox, SandboxError};
pub use report::{describe, feedback, fingerprint};

/// Where the template's dev server writes its output (see `sandbox-templates/nextjs/codeflux-supervisor.cjs`).
pub const DEV_LOG: &str = dev_server::LOG;
const TYPE_CHECK_LIMIT: Duration = Duration::from_secs(300);
const PAGES_LIMIT: Duration = Duration::from_secs(240);
/// At most this many errors of one kind are handed back, so one broken import does not
/// flood the model's context.
const MAX_ERRORS: usize = 12;
const MAX_PAGES: usize = 12;

/// One thing that does not work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// `app/page.tsx(3,7): error TS2322: …`
    Type(String),
    /// A line the dev server logged as an error, with the lines after it.
    Compile(String),
    /// A page that did not render: its route, status and what went wrong.
    Render(String),
    /// The dev server exited (and was restarted) or is not running, with its log's last lines.
    DevServer(String),
    /// `npm run db:push` failed: the schema does not turn into a migration, the migration
    /// fails, or it would drop data.
    Database(String),
    /// What the browser saw on a page: an exception, a failed request, nothing visible.
    Browser(String),
}

const DEV_SERVER_SECTION: &str = "The dev server stopped";
const RENDER_SECTION: &str = "Pages that do not render";
const COMPILE_SECTION: &str = "The dev server reported";
const TYPE_SECTION: &str = "Type errors (tsc --noEmit)";
const DATABASE_SECTION: &str = "The database schema does not apply (npm run db:push)";
const BROWSER_SECTION: &str = "In a browser (each page opened, its buttons and links clicked)";
const SCHEMA_LIMIT: Duration = Duration::from_secs(180);

impl Problem {
    /// The heading it is listed under in the feedback.
    fn section(&self) -> &'static str {
        match self {
            Problem::DevServer(_) => DEV_SERVER_SECTION,
            Problem::Render(_) => RENDER_SECTION,
            Problem::Compile(_) => COMPILE_SECTION,
            Problem::Type(_) => TYPE_SECTION,
            Problem::Database(_) => DATABASE_SECTION,
            Problem::Browser(_) => BROWSER_SECTION,
        }
    }

    pub fn text(&self) -> &str {
        match self {
            Problem::Type(text)
            | Problem::Compile(text)
            | Problem::Render(text)
            | Problem::DevServer(text)
            | Problem::Database(text)
            | Problem::Browser(text) => text,
        }
    }
}

/// Checks one sandbox's app; made when the job begins, so it reads only the dev server's
/// output from then on, and each check only what came after the one before.
pub struct Checker<'a> {
    log_offset: std::sync::atomic::AtomicU64,
    dev_server: &'a dev_server::Watch,
    /// Whether the app is opened in a browser once everything else passes.
    browser_check: bool,
    /// What the last browser check saw, for the version (its screenshots).
    browser: std::sync::Mutex<Option<browser_check::Outcome>>,
}

impl<'a> Checker<'a> {
    pub async fn start(sandbox: &dyn Sandbox, dev_server: &'a dev_server::Watch) -> Self {
        let size = sandbox
            .run(
                &format!("wc -c < {DEV_LOG} 2>/dev/null || echo 0"),
                Duration::from_secs(30),
            )
            .await
            .ok()
            .and_then(|output| output.stdout.trim().parse().ok())
            .unwrap_or(0);
        Self {
            log_offset: size.into(),
            dev_server,
            browser_check: true,
            browser: std::sync::Mutex::new(None),
        }
    }

    pub fn with_browser(self, browser_check: bool) -> Self {
        Self {
            browser_check,
            ..self
        }
    }

    pub async fn check(&self, sandbox: &dyn Sandbox) -> Result<Vec<Problem>, SandboxError> {
        // The schema before the pages: pages that read the database need its tables.
        let schema = schema_problems(sandbox).await?;
        // Pages first: requesting them makes the dev server compile them and log errors, and
        // waits for a dev server that is starting again.
        let routes = page_routes(sandbox).await?;
        let pages = render_problems(sandbox, &routes).await?;
        // Then whether the dev server exited since the model last heard (an exit takes a
        // moment to show, so it is asked last); listed first, as it explains the rest.
        let mut problems: Vec<Problem> = self
            .dev_server
            .news(sandbox)
            .await?
            .map(Problem::DevServer)
            .into_iter()
            .collect();
        problems.extend(schema);
        problems.extend(pages);
        let logged = self.compile_problems(sandbox).await?;
        // The log explains pages that failed; with every page rendering, what it holds is
        // from before the last fix (the dev server logs some errors again a moment later).
        if !problems.is_empty() {
            problems.extend(logged);
        }
        problems.extend(type_problems(sandbox).await?);
        // Only an app that compiles and renders is worth opening in a browser: before that,
        // it would only repeat the errors above.
        if self.browser_check && problems.is_empty() && !routes.is_empty() {
            let outcome = browser_check::run(sandbox, &routes).await?;
            problems.extend(outcome.problems.iter().cloned().map(Problem::Browser));
            *self
                .browser
                .lock()
                .unwrap_or_else(|poison| poison.into_inner()) = Some(outcome);
        }
        Ok(problems)
    }

    /// The last browser check's outcome, taken for the version it belongs to.
    pub fn take_browser(&self) -> Option<browser_check::Outcome> {
        self.browser
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .take()
    }

    async fn compile_problems(&self, sandbox: &dyn Sandbox) -> Result<Vec<Problem>, SandboxError> {
        use std::sync::atomic::Ordering;
        let from = self.log_offset.load(Ordering::Relaxed);
        // The log's size first, then what was written between the last check and now.
        let output = sandbox
            .run(
                &format!(
                    "size=$(wc -c < {DEV_LOG} 2>/dev/null || echo 0); echo \"$size\"; \
                     tail -c +{} {DEV_LOG} 2>/dev/null | head -c $((size - {from})) | tail -c 200000",
                    from + 1
                ),
                Duration::from_secs(30),
            )
            .await?;
        let (size, log) = output
            .stdout
            .split_once('\n')
            .unwrap_or((&output.stdout, ""));
        if let Ok(size) = size.trim().parse::<u64>() {
            self.log_offset.store(size.max(from), Ordering::Relaxed);
        }
        Ok(dev_log_errors(log)
            .into_iter()
            .map(Problem::Compile)
            .collect())
    }
}

async fn type_problems(sandbox: &dyn Sandbox) -> Result<Vec<Problem>, SandboxError> {
    let output = sandbox
        .run(
            "npx --no-install tsc --noEmit --pretty false -p . 2>&1 | head -c 100000",
            TYPE_CHECK_LIMIT,
        )
        .await?;
    let errors: Vec<Problem> = output
        .stdout
        .lines()
        .filter(|line| line.contains(": error TS"))
        .take(MAX_ERRORS)
        .map(|line| Problem::Type(line.trim().to_string()))
        .collect();
    Ok(errors)
}

/// Applies db/schema.ts the way the model is told to (`npm run db:push`): a schema the
/// model changed without applying it is applied now, and one that cannot be applied goes
/// back to the model. Apps without tables skip it.
async fn schema_problems(sandbox: &dyn Sandbox) -> Result<Vec<Problem>, SandboxError> {
    let output = sandbox
        .run(
            "if grep -qsE '^[^/]*pgTable\\(' db/schema.ts || [ -d db/migrations ]; then npm run --silent db:push 2>&1 | tail -c 8000; exit ${PIPESTATUS[0]}; fi",
            SCHEMA_LIMIT,
        )
        .await?;
    if output.success() {
        return Ok(Vec::new());
    }
    let text = output.stdout.trim();
    Ok(vec![Problem::Database(if text.is_empty() {
        format!("npm run db:push exited with {}", output.exit_code)
    } else {
        text.to_string()
    })])
}

/// The page routes under `app/` that can be opened as they are.
async fn page_routes(sandbox: &dyn Sandbox) -> Result<Vec<String>, SandboxError> {
    let listed = sandbox
        .run(
            "find app -name node_modules -prune -o -type f \\( -name 'page.tsx' -o -name 'page.jsx' -o -name 'page.js' -o -name 'page.ts' \\) -print 2>/dev/null",
            Duration::from_secs(30),
        )
        .await?;
    let mut routes: Vec<String> = listed.stdout.lines().filter_map(route_of).collect();
    // The front page first, then the rest in a stable order.
    routes.sort_by(|a, b| (a != "/", a).cmp(&(b != "/", b)));
    routes.dedup();
    routes.truncate(MAX_PAGES);
    Ok(routes)
}

/// Each page route fetched through the dev server.
async fn render_problems(
    sandbox: &dyn Sandbox,
    routes: &[String],
) -> Result<Vec<Problem>, SandboxError> {
    if routes.is_empty() {
        return Ok(vec![Problem::Render(
            "app/page.tsx is missing: the app has no front page".into(),
        )]);
    }
    // One command waits for the dev server (it may still be starting), then fetches every
    // page: its status, and whether the body is Next.js's error page.
    let mut script = String::from(
        "for _ in $(seq 1 240); do code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 http://127.0.0.1:3000/__codeflux_ready 2>/dev/null); \
         [ \"$code\" != 000 ] && break; sleep 0.5; done; for route in",
    );
    for route in routes {
        let _ = write!(script, " '{route}'");
    }
    script.push_str(
        "; do status=$(curl -s -o /tmp/codeflux-page.html -w '%{http_code}' --max-time 120 \"http://127.0.0.1:3000$route\"); \
         if grep -q '__next_error__\\|nextjs__container_errors' /tmp/codeflux-page.html 2>/dev/null; then marker=error-page; else marker=ok; fi; \
         echo \"$route $status $marker\"; done",
    );
    let output = sandbox.run(&script, PAGES_LIMIT).await?;
    Ok(output
        .stdout
        .lines()
        .filter_map(|line| {
            let mut parts = line.split_whitespace();
            let (route, status, marker) = (parts.next()?, parts.next()?, parts.next()?);
            match (status, marker) {
                ("200", "ok") => None,
                ("000", _) => Some(Problem::Render(format!(
                    "{route} did not answer: the dev server is not running or did not respond"
                ))),
                (status, _) => Some(Problem::Render(format!(
                    "{route} answered HTTP {status} with an error page instead of rendering"
                ))),
            }
        })
        .collect())
}

/// `app/(marketing)/about/page.tsx` → `/about`. Dynamic (`[id]`), parallel (`@slot`) and
/// private (`_parts`) routes cannot be fetched as they are and are left out.
fn route_of(path: &str) -> Option<String> {
    let folder = path.strip_prefix("app")?.rsplit_once('/')?.0;
    let mut route = String::new();
    for segment in folder.split('/').filter(|segment| !segment.is_empty()) {
        if segment.starts_with('[') || segment.starts_with('@') || segment.starts_with('_') {
            return None;
        }
        if segment.starts_with('(') && segment.ends_with(')') {
            continue;
        }
        route.push('/');
        route.push_str(segment);
    }
    Some(if route.is_empty() { "/".into() } else { route })
}

/// The error lines of the dev server's output, each with the few lines that explain it.
fn dev_log_errors(log: &str) -> Vec<String> {
    let lines: Vec<String> = log.lines().map(strip_ansi).collect();
    let mut errors: Vec<String> = Vec::new();
    let mut index = 0;
    while index < lines.len() && errors.len() < MAX_ERRORS {
        let line = lines[index].trim();
        let is_error = line.starts_with('⨯')
            || line.contains("Error:")
            || line.contains("Failed to compile")
            || line.contains("Module not found");
        if !is_error {
            index += 1;
            continue;
        }
        let context: Vec<&str> = lines[index..lines.len().min(index + 6)]
            .iter()
            .map(|line| line.trim_end())
            .filter(|line| !line.trim().is_empty())
            .collect();
        let entry = context.join("\n");
        if !errors.contains(&entry) {
            errors.push(entry);
        }
        index += context.len().max(1);
    }
    errors
}

pub(super) fn strip_ansi(line: &str) -> String {
    let mut clean = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ … final byte in @..~
            if chars.next() == Some('[') {
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
        } else {
            clean.push(c);
        }
    }
    clean
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_come_from_page_files() {
        assert_eq!(route_of("app/page.tsx").as_deref(), Some("/"));
        assert_eq!(route_of("app/about/page.tsx").as_deref(), Some("/about"));
        assert_eq!(
            route_of("app/(site)/pricing/page.jsx").as_deref(),
            Some("/pricing")
        );
        assert_eq!(route_of("app/habits/[id]/page.tsx"), None);
        assert_eq!(route_of("app/@modal/page.tsx"), None);
    }

    #[test]
    fn dev_server_errors_are_found_with_their_context() {
        let log = "\u{1b}[32m✓\u{1b}[39m Compiled / in 2.1s\n ⨯ Error: boom-xyz\n    at Page (app/page.tsx:2:9)\n\n GET / 500 in 40ms\n ✓ Compiled /other\n";
        let errors = dev_log_errors(log);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].contains("boom-xyz") && errors[0].contains("app/page.tsx:2:9"));
    }
}
