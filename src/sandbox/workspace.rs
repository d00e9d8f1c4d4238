//! Paths inside the sandbox workspace. Every path the model names passes through
//! [`WorkspacePath::parse`], so nothing can be read or written outside `/home/user`.

use std::fmt;

use super::SandboxError;

pub const WORKSPACE_ROOT: &str = "/home/user";

/// A normalised path relative to [`WORKSPACE_ROOT`], e.g. `app/page.tsx`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WorkspacePath(String);

impl WorkspacePath {
    /// Accepts `app/page.tsx`, `./app/page.tsx` and `/home/user/app/page.tsx`; refuses
    /// anything that leaves the workspace (`..` above the root, other absolute paths),
    /// empty paths and NUL bytes.
    pub fn parse(raw: &str) -> Result<Self, SandboxError> {
        let refuse = || SandboxError::PathEscape(raw.to_string());
        if raw.contains('\0') {
            return Err(refuse());
        }
        let relative = if let Some(rest) = raw.strip_prefix(WORKSPACE_ROOT) {
            if !(rest.is_empty() || rest.starts_with('/')) {
                return Err(refuse());
            }
            rest.trim_start_matches('/')
        } else if raw.starts_with('/') {
            return Err(refuse());
        } else {
            raw
        };
        let mut parts: Vec<&str> = Vec::new();
        for part in relative.split('/') {
            match part {
                "" | "." => {}
                ".." => {
                    parts.pop().ok_or_else(refuse)?;
                }
                other => parts.push(other),
            }
        }
        if parts.is_empty() {
            return Err(refuse());
        }
        Ok(Self(parts.join("/")))
    }

    /// The path relative to the workspace root.
    pub fn relative(&self) -> &str {
        &self.0
    }

    /// The absolute path inside the sandbox.
    pub fn absolute(&self) -> String {
        format!("{WORKSPACE_ROOT}/{}", self.0)
    }
}

/// `value` as one word of a shell command, whatever it holds.
pub fn shell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

/// The command (argv) that prints where each path really leads inside the sandbox, symlinks
/// followed, one per line. Run as the sandbox user before a file is written or read, so a
/// link such as `x -> /` cannot carry a write out of the workspace.
pub fn resolve_argv(paths: &[&WorkspacePath]) -> Vec<String> {
    let mut argv = vec!["realpath".to_string(), "-m".to_string(), "--".to_string()];
    argv.extend(paths.iter().map(|path| path.absolute()));
    argv
}

/// Checks the output of [`resolve_argv`]: every path must stay inside the workspace.
/// Returns where each one really leads, so writes can go there without following links.
pub fn check_resolved(
    paths: &[&WorkspacePath],
    resolved: &str,
) -> Result<Vec<WorkspacePath>, SandboxError> {
    let lines: Vec<&str> = resolved.lines().collect();
    if lines.len() != paths.len() {
        return Err(SandboxError::Backend(format!(
            "could not resolve the paths in the sandbox: {resolved:?}"
        )));
    }
    paths
        .iter()
        .zip(lines)
        .map(|(path, real)| {
            let inside = real
                .strip_prefix(WORKSPACE_ROOT)
                .is_some_and(|rest| rest.starts_with('/'));
            if !inside {
                return Err(SandboxError::PathEscape(format!(
                    "{path} (a symbolic link leads it to {real})"
                )));
            }
            WorkspacePath::parse(real)
        })
        .collect()
}

impl fmt::Display for WorkspacePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolved_paths_must_stay_in_the_workspace() {
        let page = WorkspacePath::parse("app/page.tsx").unwrap();
        let linked = WorkspacePath::parse("x/etc/passwd").unwrap();
        assert_eq!(
            resolve_argv(&[&page]),
            ["realpath", "-m", "--", "/home/user/app/page.tsx"]
        );
        assert_eq!(
            check_resolved(&[&page], "/home/user/app/page.tsx\n").unwrap()[0],
            page
        );
        assert!(matches!(
            check_resolved(&[&page, &linked], "/home/user/app/page.tsx\n/etc/passwd\n"),
            Err(SandboxError::PathEscape(message)) if message.contains("/etc/passwd")
        ));
        assert!(check_resolved(&[&page], "/home/username/x\n").is_err());
        assert!(check_resolved(&[&page], "/home/user\n").is_err());
        assert!(check_resolved(&[&page], "").is_err());
    }

    #[test]
    fn accepts_relative_dotted_and_absolute_workspace_paths() {
        for raw in [
            "app/page.tsx",
            "./app/page.tsx",
            "/home/user/app/page.tsx",
            "app//x/../page.tsx",
        ] {
            assert_eq!(
                WorkspacePath::parse(raw).unwrap().relative(),
                "app/page.tsx",
                "{raw}"
            );
        }
        assert_eq!(
            WorkspacePath::parse("app/page.tsx").unwrap().absolute(),
            "/home/user/app/page.tsx"
        );
    }

    #[test]
    fn a_value_reaches_the_shell_as_one_quoted_word() {
        assert_eq!(shell_quote("it's; rm -rf /"), r"'it'\''s; rm -rf /'");
    }

    #[test]
    fn refuses_paths_that_escape() {
        for raw in [
            "../etc/passwd",
            "app/../../x",
            "/etc/passwd",
            "/home/username/x",
            "/home/user",
            "",
            ".",
            "a\0b",
        ] {
            assert!(
                matches!(WorkspacePath::parse(raw), Err(SandboxError::PathEscape(_))),
                "{raw:?} should be refused"
            );
        }
    }
}
