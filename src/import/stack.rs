//! What an imported app is built with, read from its own files, so that the agent is told
//! the project's real stack and an app CodeFlux cannot run is refused with the reason.

use std::collections::BTreeMap;

use serde::Serialize;

use super::ImportError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Framework {
    Next,
}

/// The stack as the app's `package.json` and files tell it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Stack {
    pub framework: Framework,
    /// The version range the app asks for (`"14.2.3"`, `"^15.1.0"`).
    pub next_version: String,
    pub react_version: Option<String>,
    /// `app/` (App Router) and/or `pages/` (Pages Router), at the root or under `src/`.
    pub app_router: bool,
    pub pages_router: bool,
    pub tailwind: Option<String>,
    /// The app has its own lockfile, so its install can be exact (`npm ci`).
    pub lockfile: bool,
}

impl Stack {
    pub fn of(files: &BTreeMap<String, String>) -> Result<Self, ImportError> {
        let package = files.get("package.json").ok_or_else(|| {
            ImportError::Refused(
                "no package.json at the top of the app: only Node.js apps (Next.js) can be imported"
                    .into(),
            )
        })?;
        let package: serde_json::Value = serde_json::from_str(package)
            .map_err(|error| ImportError::Refused(format!("package.json is not JSON: {error}")))?;
        let dependency = |name: &str| {
            ["dependencies", "devDependencies"]
                .iter()
                .find_map(|section| package[section][name].as_str())
                .map(str::to_string)
        };
        let Some(next_version) = dependency("next") else {
            let found = if dependency("vite").is_some() {
                "a Vite app"
            } else {
                "neither Next.js nor another supported framework"
            };
            return Err(ImportError::Refused(format!(
                "the app is {found}: CodeFlux imports Next.js apps (13.4 to 16) for now"
            )));
        };
        let has_dir = |dir: &str| {
            files.keys().any(|path| {
                path.starts_with(&format!("{dir}/")) || path.starts_with(&format!("src/{dir}/"))
            })
        };
        Ok(Self {
            framework: Framework::Next,
            next_version,
            react_version: dependency("react"),
            app_router: has_dir("app"),
            pages_router: has_dir("pages"),
            tailwind: dependency("tailwindcss"),
            lockfile: files.contains_key("package-lock.json"),
        })
    }

    /// The stack in a sentence, for the version's description and the agent.
    pub fn describe(&self) -> String {
        let routers = match (self.app_router, self.pages_router) {
            (true, true) => "the App Router and the Pages Router",
            (true, false) => "the App Router",
            (false, true) => "the Pages Router",
            (false, false) => "no app/ or pages/ folder",
        };
        let mut text = format!("Next.js {} with {routers}", self.next_version);
        if let Some(react) = &self.react_version {
            text.push_str(&format!(", React {react}"));
        }
        if let Some(tailwind) = &self.tailwind {
            text.push_str(&format!(", Tailwind CSS {tailwind}"));
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(entries: &[(&str, &str)]) -> BTreeMap<String, String> {
        entries
            .iter()
            .map(|(path, content)| (path.to_string(), content.to_string()))
            .collect()
    }

    #[test]
    fn the_stack_comes_from_the_apps_own_package_json() {
        let stack = Stack::of(&files(&[
            (
                "package.json",
                r#"{"dependencies":{"next":"14.2.3","react":"18.3.1"},"devDependencies":{"tailwindcss":"^3.4.1"}}"#,
            ),
            ("package-lock.json", "{}"),
            ("src/pages/index.tsx", "x"),
        ]))
        .unwrap();
        assert_eq!(stack.next_version, "14.2.3");
        assert!(stack.pages_router && !stack.app_router && stack.lockfile);
        assert_eq!(
            stack.describe(),
            "Next.js 14.2.3 with the Pages Router, React 18.3.1, Tailwind CSS ^3.4.1"
        );
    }

    #[test]
    fn other_stacks_are_refused_with_the_reason() {
        let vite = Stack::of(&files(&[(
            "package.json",
            r#"{"devDependencies":{"vite":"5"}}"#,
        )]));
        assert!(
            matches!(vite, Err(ImportError::Refused(message)) if message.contains("a Vite app"))
        );
        let none = Stack::of(&files(&[("main.py", "print(1)")]));
        assert!(
            matches!(none, Err(ImportError::Refused(message)) if message.contains("no package.json"))
        );
    }
}
