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

impl fmt::Display for WorkspacePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
