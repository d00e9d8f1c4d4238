//! Installs that would pull the ground from under the sandbox: Next.js, React or React DOM at
//! another major than the template runs. Models pin the versions they remember (`next@14`,
//! `react@^18`), and npm then replaces Next.js under the running dev server. Such installs are
//! refused before npm runs, with what to do instead; so are `package.json` files that pin them.

use serde_json::Value;

/// The packages whose major version the sandbox depends on.
pub const PINNED: [&str; 3] = ["next", "react", "react-dom"];

/// What the template runs: `(package, version)` for each of [`PINNED`].
#[derive(Debug, Clone)]
pub struct Pins(Vec<(String, String)>);

impl Pins {
    /// The versions in the bundled template's `package.json`.
    pub fn of_template() -> Self {
        let manifest = crate::sandbox::template::file("package.json")
            .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
            .unwrap_or_default();
        Self::from_manifest(&manifest)
    }

    pub fn from_manifest(manifest: &Value) -> Self {
        Self(
            PINNED
                .iter()
                .filter_map(|name| {
                    let version = manifest["dependencies"][name].as_str()?;
                    Some((name.to_string(), version.to_string()))
                })
                .collect(),
        )
    }

    fn version(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(pinned, _)| pinned == name)
            .map(|(_, version)| version.as_str())
    }

    fn major(&self, name: &str) -> Option<u64> {
        self.version(name).and_then(major_of)
    }

    /// "Next.js 15.3.3 with React 19.1.0".
    fn describe(&self) -> String {
        let next = self.version("next").unwrap_or("?");
        let react = self.version("react").unwrap_or("?");
        format!("Next.js {next} with React {react}")
    }

    /// Why `command` may not run, when it installs, updates or removes a pinned package
    /// at a version other than the template's.
    pub fn refusal(&self, command: &str) -> Option<String> {
        let offending: Vec<String> = package_commands(command)
            .into_iter()
            .flat_map(|invocation| self.offending(&invocation))
            .collect();
        if offending.is_empty() {
            return None;
        }
        let majors = PINNED
            .iter()
            .filter_map(|name| Some(format!("{name}@{}", self.major(name)?)))
            .collect::<Vec<_>>()
            .join(" ");
        Some(format!(
            "Refused before anything ran: `{}` would change {} in this sandbox, which runs {}. The running dev server and every check depend on these exact packages, and replacing them stops the app. They are installed already: run the command again without {} and write the code for the installed versions (in Next.js 15, `params` and `searchParams` are Promises). If a package asks for another React in its peer range, install it anyway: peer conflicts do not block installs here (legacy-peer-deps is on). Pinning the installed majors ({majors}) is allowed.",
            command.trim(),
            offending.join(", "),
            self.describe(),
            offending.join(", "),
        ))
    }

    /// The pinned packages this one invocation would move off the template's major.
    fn offending(&self, invocation: &Invocation) -> Vec<String> {
        invocation
            .packages
            .iter()
            .filter_map(|spec| {
                let (name, range) = split_spec(spec);
                let pinned = self.major(name)?;
                let keeps = !invocation.removes
                    && range.is_some_and(|range| major_of(range) == Some(pinned));
                (!keeps).then(|| spec.clone())
            })
            .collect()
    }

    /// Why a `package.json` the model wants to write may not be written: it names a pinned
    /// package at another major.
    pub fn manifest_refusal(&self, content: &str) -> Option<String> {
        let manifest: Value = serde_json::from_str(content).ok()?;
        let changed: Vec<String> = ["dependencies", "devDependencies"]
            .iter()
            .flat_map(|section| manifest[section].as_object().into_iter().flatten())
            .filter_map(|(name, range)| {
                let pinned = self.major(name)?;
                let range = range.as_str().unwrap_or_default();
                (major_of(range) != Some(pinned)).then(|| format!("\"{name}\": \"{range}\""))
            })
            .collect();
        if changed.is_empty() {
            return None;
        }
        Some(format!(
            "package.json was not written: it sets {}, and this sandbox runs {}. The running dev server and every check depend on these packages, and another major stops the app. Keep \"next\": \"{}\", \"react\": \"{}\" and \"react-dom\": \"{}\" (better: leave package.json alone and add packages with `npm install <package>`), and write the code for the installed versions.",
            changed.join(", "),
            self.describe(),
            self.version("next").unwrap_or("?"),
            self.version("react").unwrap_or("?"),
            self.version("react-dom").unwrap_or("?"),
        ))
    }
}

/// One package-manager invocation that installs or removes named packages.
#[derive(Debug, PartialEq)]
struct Invocation {
    packages: Vec<String>,
    removes: bool,
}

/// Whether `command` runs a package manager in a way that may change `package.json`
/// (install, add, remove, update), named packages or not.
pub fn changes_packages(command: &str) -> bool {
    simple_commands(command)
        .iter()
        .any(|words| package_verb(words).is_some())
}

/// The package-manager invocations in a shell command line that name packages.
fn package_commands(command: &str) -> Vec<Invocation> {
    simple_commands(command)
        .iter()
        .filter_map(|words| {
            let (verb_at, removes) = package_verb(words)?;
            let packages: Vec<String> = words[verb_at + 1..]
                .iter()
                .filter(|word| !word.starts_with('-'))
                .cloned()
                .collect();
            (!packages.is_empty()).then_some(Invocation { packages, removes })
        })
        .collect()
}

/// Where the verb of a package-manager command stands, and whether it removes: `npm i`,
/// `npm install`, `pnpm add`, `yarn remove`, `bun update`, `npx npm install`, `sudo npm i`.
fn package_verb(words: &[String]) -> Option<(usize, bool)> {
    // The package manager is the command itself, or run through a wrapper.
    let tool_at = words.iter().position(|word| {
        let program = word.rsplit('/').next().unwrap_or(word);
        !matches!(
            program,
            "sudo" | "env" | "command" | "exec" | "time" | "nice" | "npx" | "--yes" | "-y"
        )
    })?;
    let program = words[tool_at].rsplit('/').next().unwrap_or_default();
    if !matches!(program, "npm" | "pnpm" | "yarn" | "bun") {
        return None;
    }
    let verb_at = tool_at
        + 1
        + words[tool_at + 1..]
            .iter()
            .position(|word| !word.starts_with('-'))?;
    let removes = match words[verb_at].as_str() {
        "install" | "i" | "in" | "ins" | "inst" | "insta" | "instal" | "isnt" | "isntall"
        | "add" | "update" | "up" | "upgrade" | "ci" => false,
        "uninstall" | "remove" | "rm" | "r" | "un" | "unlink" => true,
        _ => return None,
    };
    Some((verb_at, removes))
}

/// A command line cut into simple commands (at `&&`, `||`, `;`, `|`, `&` and new lines),
/// each split into words as the shell would; leading `VAR=value` assignments dropped.
fn simple_commands(command: &str) -> Vec<Vec<String>> {
    let mut commands = Vec::new();
    for piece in command.split(['\n', ';', '|', '&']) {
        let words = shell_words::split(piece).unwrap_or_else(|_| {
            piece
                .split_whitespace()
                .map(|word| word.trim_matches(['"', '\'']).to_string())
                .collect()
        });
        let words: Vec<String> = words
            .into_iter()
            .skip_while(|word| word.contains('=') && !word.starts_with('-'))
            .collect();
        if !words.is_empty() {
            commands.push(words);
        }
    }
    commands
}

/// `next@^14.2` → ("next", Some("^14.2")); `react` → ("react", None); `@scope/x@1` →
/// ("@scope/x", Some("1")); `npm:next@14` aliases and `next@npm:…` count as their target.
fn split_spec(spec: &str) -> (&str, Option<&str>) {
    let spec = spec.strip_prefix("npm:").unwrap_or(spec);
    let at = spec
        .char_indices()
        .skip(1)
        .find(|(_, c)| *c == '@')
        .map(|(at, _)| at);
    match at {
        Some(at) => {
            let range = &spec[at + 1..];
            let range = range
                .strip_prefix("npm:")
                .map_or(range, |aliased| split_spec(aliased).1.unwrap_or(""));
            (&spec[..at], Some(range))
        }
        None => (spec, None),
    }
}

/// The major version a range starts from: `^14.2.0`, `~14`, `14.x`, `>=14 <15`, `v14` → 14.
/// Tags (`latest`, `canary`) and `*` have none: they may mean any major.
fn major_of(range: &str) -> Option<u64> {
    let range = range.trim().trim_matches(['"', '\'']);
    let start = range.find(|c: char| c.is_ascii_digit())?;
    // Only operators may stand before the number: `rc1` is a tag, not a version.
    if !range[..start]
        .chars()
        .all(|c| matches!(c, '^' | '~' | '>' | '<' | '=' | 'v' | ' '))
    {
        return None;
    }
    let digits: String = range[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    // A range reaching past the major (`>=15 <17`, `15 || 16`) could install another one.
    if range.contains("||") || (range.contains('>') && !range.contains('<')) {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pins() -> Pins {
        Pins::from_manifest(&serde_json::json!({
            "dependencies": { "next": "15.3.3", "react": "19.1.0", "react-dom": "19.1.0", "zod": "^4" }
        }))
    }

    #[test]
    fn other_majors_of_the_pinned_packages_are_refused() {
        let pins = pins();
        for command in [
            "npm install next@14 react@^18 react-dom@^18 vaul@^0.9.9",
            "npm i next@latest",
            "cd /home/user && npm install --save react@18.3.1",
            "npm install geist && npm install next@13",
            "CI=1 npm add 'react-dom@>=18'",
            "pnpm add next@canary",
            "yarn add react@npm:react@18",
            "npm install next react react-dom",
            "npm uninstall next",
            "bun update react@^18",
        ] {
            let refusal = pins.refusal(command);
            assert!(refusal.is_some(), "{command}");
        }
        let refusal = pins
            .refusal("npm install next@14 react@^18 vaul@^0.9.9")
            .unwrap();
        assert!(refusal.contains("next@14, react@^18"), "{refusal}");
        assert!(
            refusal.contains("Next.js 15.3.3 with React 19.1.0"),
            "{refusal}"
        );
        assert!(
            refusal.contains("without next@14, react@^18 and write"),
            "only the pinned packages are to be left out: {refusal}"
        );
    }

    #[test]
    fn other_installs_and_the_same_majors_run() {
        let pins = pins();
        for command in [
            "npm install vaul@^0.9.9 geist @vercel/analytics",
            "npm install next@15 react@^19.1.0 react-dom@~19",
            "npm install",
            "npm ci",
            "ls next@14",
            "echo npm install next@14 > notes.txt",
            "npm run build",
            "npx next-sitemap",
            "npm install @types/react@18",
        ] {
            assert_eq!(pins.refusal(command), None, "{command}");
        }
    }

    #[test]
    fn package_commands_are_recognised() {
        assert!(changes_packages("npm install zod"));
        assert!(changes_packages("cd x && npm i"));
        assert!(changes_packages("yarn remove zod"));
        assert!(!changes_packages("npm run dev"));
        assert!(!changes_packages("cat package.json"));
        assert!(!changes_packages("npx tsc --noEmit"));
    }

    #[test]
    fn ranges_give_their_major() {
        assert_eq!(major_of("^14.2.0"), Some(14));
        assert_eq!(major_of("~15"), Some(15));
        assert_eq!(major_of("15.x"), Some(15));
        assert_eq!(major_of(">=15.0.0 <16"), Some(15));
        assert_eq!(major_of(">=15"), None);
        assert_eq!(major_of("15 || 16"), None);
        assert_eq!(major_of("latest"), None);
        assert_eq!(major_of("rc1"), None);
        assert_eq!(major_of("*"), None);
        assert_eq!(split_spec("@scope/pkg@1.2"), ("@scope/pkg", Some("1.2")));
        assert_eq!(split_spec("react@npm:react@18"), ("react", Some("18")));
        assert_eq!(split_spec("next"), ("next", None));
    }

    #[test]
    fn manifests_that_pin_other_majors_are_refused() {
        let pins = pins();
        let v0_app = r#"{"dependencies": {"next": "14.2.16", "react": "^18", "react-dom": "^18", "vaul": "^0.9.9"}}"#;
        let refusal = pins.manifest_refusal(v0_app).unwrap();
        assert!(refusal.contains(r#""next": "14.2.16""#), "{refusal}");
        assert!(refusal.contains(r#"Keep "next": "15.3.3""#), "{refusal}");
        let fine = r#"{"dependencies": {"next": "15.3.3", "react": "19.1.0", "react-dom": "^19", "vaul": "^1"}}"#;
        assert_eq!(pins.manifest_refusal(fine), None);
        assert_eq!(pins.manifest_refusal("not json"), None);
    }

    #[test]
    fn the_template_pins_what_it_installs() {
        let pins = Pins::of_template();
        assert_eq!(pins.major("next"), Some(15));
        assert_eq!(pins.major("react"), Some(19));
        assert_eq!(pins.major("react-dom"), Some(19));
    }
}
