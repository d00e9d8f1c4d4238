//! A project's remote: a repository elsewhere (GitHub, GitLab, Gitea, any smart-HTTP server)
//! that the project's commits are pushed to and new commits are pulled from.
//!
//! The token is stored with the remote and only ever handed to the `git` process on this
//! server, in its environment (never on a command line, never to a sandbox or the model).
//! Only `http` and `https` remotes are allowed: git's other transports can run commands.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use base64::Engine;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{GitError, plain_git};

/// The user name sent with a token when the address names none. GitHub and GitLab take any
/// name with a token; Gitea and others want the account's, given in the address.
const TOKEN_USER: &str = "x-access-token";
/// Where the remote's `main` is fetched to in the project's repository.
pub const FETCHED: &str = "refs/remotes/remote/main";
/// How long one push or fetch may take before it is stopped.
const NETWORK_LIMIT: Duration = Duration::from_secs(300);

/// A remote as stored. The token is never serialised anywhere but the store.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Remote {
    /// The address without any user name in it.
    pub url: String,
    pub username: Option<String>,
    pub token: Option<String>,
    /// Push after every new version, not only when asked.
    pub push_after_version: bool,
    /// Versions made by a pull: their number → the remote commit they hold, which becomes
    /// the second parent of their commit so the next push is a fast-forward.
    #[serde(default)]
    pub pulled: BTreeMap<u32, String>,
    #[serde(default)]
    pub last_push: Option<Outcome>,
    #[serde(default)]
    pub last_pull: Option<Outcome>,
}

/// How the last push or pull went.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Outcome {
    pub at: DateTime<Utc>,
    pub ok: bool,
    pub message: String,
}

impl Outcome {
    pub fn now(ok: bool, message: impl Into<String>) -> Self {
        Self {
            at: Utc::now(),
            ok,
            message: message.into(),
        }
    }
}

/// What the API and the UI show of a remote: everything but the token.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RemoteView {
    pub url: String,
    pub has_token: bool,
    pub push_after_version: bool,
    pub last_push: Option<Outcome>,
    pub last_pull: Option<Outcome>,
}

impl Remote {
    /// A remote from what a person typed: an `http(s)` address (a user name in it is kept
    /// apart; a password in it is refused, it belongs in the token field) and a token.
    pub fn new(
        address: &str,
        token: Option<String>,
        push_after_version: bool,
    ) -> Result<Self, GitError> {
        let bad = |why: &str| GitError::BadRemote(why.to_string());
        let mut url = reqwest::Url::parse(address.trim())
            .map_err(|error| bad(&format!("{error}: give an http(s) address")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(bad("only http:// and https:// remotes are supported"));
        }
        if url.host_str().is_none() {
            return Err(bad("the address has no host"));
        }
        if url.password().is_some() {
            return Err(bad(
                "the address holds a password: put the token in the token field instead",
            ));
        }
        let username = Some(url.username().to_string()).filter(|name| !name.is_empty());
        let _ = url.set_username("");
        let token = token
            .map(|token| token.trim().to_string())
            .filter(|token| !token.is_empty());
        if token
            .as_deref()
            .is_some_and(|token| token.contains(['\r', '\n']))
        {
            return Err(bad("the token holds a line break"));
        }
        Ok(Self {
            url: url.to_string(),
            username,
            token,
            push_after_version,
            pulled: BTreeMap::new(),
            last_push: None,
            last_pull: None,
        })
    }

    pub fn view(&self) -> RemoteView {
        RemoteView {
            url: self.url.clone(),
            has_token: self.token.is_some(),
            push_after_version: self.push_after_version,
            last_push: self.last_push.clone(),
            last_pull: self.last_pull.clone(),
        }
    }

    /// A git command that talks to this remote: http(s) only, the token in an
    /// `Authorization` header set through the environment, slow transfers given up.
    fn command(&self, dir: &Path) -> tokio::process::Command {
        let mut settings = vec![
            ("http.lowSpeedLimit", "1000".to_string()),
            ("http.lowSpeedTime", "60".to_string()),
            // A pulled tree with `..`, `.git` or other malformed paths is refused.
            ("fetch.fsckObjects", "true".to_string()),
        ];
        if let Some(token) = &self.token {
            let user = self.username.as_deref().unwrap_or(TOKEN_USER);
            let basic = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{token}"));
            settings.push(("http.extraHeader", format!("Authorization: Basic {basic}")));
        }
        let mut command = plain_git(dir);
        command
            .env("GIT_ALLOW_PROTOCOL", "http:https")
            .env("GIT_CONFIG_COUNT", settings.len().to_string());
        for (index, (key, value)) in settings.into_iter().enumerate() {
            command
                .env(format!("GIT_CONFIG_KEY_{index}"), key)
                .env(format!("GIT_CONFIG_VALUE_{index}"), value);
        }
        command
    }

    /// Runs `git <args>` against this remote; a refusal is told in plain words.
    async fn run(&self, dir: &Path, args: &[&str]) -> Result<String, GitError> {
        let mut command = self.command(dir);
        command.args(args);
        let run = tokio::time::timeout(NETWORK_LIMIT, super::output_of(command, None));
        let output = run.await.map_err(|_| {
            GitError::Remote(format!(
                "git {} took longer than {} s and was stopped",
                args[0],
                NETWORK_LIMIT.as_secs()
            ))
        })??;
        if output.status.success() {
            return Ok(String::from_utf8_lossy(&output.stdout).into_owned());
        }
        // `push --porcelain` tells a rejected ref on its output, the rest goes to errors.
        let told = format!(
            "{}\n{}",
            String::from_utf8_lossy(&output.stderr),
            String::from_utf8_lossy(&output.stdout)
        );
        Err(explain(args[0], &self.url, &told))
    }

    /// Checks that the remote answers and takes the token: lists its refs.
    pub async fn check_access(&self, scratch: &Path) -> Result<(), GitError> {
        self.run(scratch, &["ls-remote", "--heads", "--", &self.url])
            .await
            .map(|_| ())
    }

    /// Pushes `main` and the version tags. Never forced: a remote that moved on is refused
    /// with [`GitError::Behind`].
    pub async fn push(&self, dir: &Path) -> Result<(), GitError> {
        self.run(
            dir,
            &[
                "push",
                "--porcelain",
                "--",
                &self.url,
                "refs/heads/main:refs/heads/main",
                "refs/tags/v*:refs/tags/v*",
            ],
        )
        .await
        .map(|_| ())
    }

    /// Fetches the remote's `main` to [`FETCHED`]: its commit, or `None` when the remote
    /// has no `main` yet.
    pub async fn fetch(&self, dir: &Path) -> Result<Option<String>, GitError> {
        let refspec = format!("+refs/heads/main:{FETCHED}");
        match self
            .run(
                dir,
                &["fetch", "--no-tags", "--quiet", "--", &self.url, &refspec],
            )
            .await
        {
            Ok(_) => {}
            Err(GitError::Remote(message)) if message.ends_with("no branch or tag main") => {
                return Ok(None);
            }
            Err(error) => return Err(error),
        }
        let head = super::git(dir, &["rev-parse", "--verify", FETCHED], None).await?;
        Ok(Some(head.trim().to_string()))
    }
}

impl Remote {
    /// Fetches one branch or tag (or `HEAD`) to `FETCH_HEAD`, with its history.
    pub async fn fetch_reference(&self, dir: &Path, reference: &str) -> Result<(), GitError> {
        self.run(
            dir,
            &["fetch", "--no-tags", "--quiet", "--", &self.url, reference],
        )
        .await
        .map(|_| ())
    }
}

/// Git's error output, told as what went wrong and what to do. The address is named; the
/// token never appears in git's output.
fn explain(command: &str, url: &str, stderr: &str) -> GitError {
    let lower = stderr.to_lowercase();
    let has = |needles: &[&str]| needles.iter().any(|needle| lower.contains(needle));
    if has(&[
        "[rejected]",
        "non-fast-forward",
        "fetch first",
        "! [remote rejected]",
    ]) && command == "push"
    {
        return GitError::Behind;
    }
    if has(&[
        "authentication failed",
        "http 401",
        "error: 401",
        "could not read username",
        "could not read password",
        "terminal prompts disabled",
        "the requested url returned error: 401",
    ]) {
        return GitError::Refused(format!(
            "{url} refused the token (HTTP 401): check the token, and that it may read and write this repository"
        ));
    }
    if has(&[
        "http 403",
        "error: 403",
        "returned error: 403",
        "permission denied",
    ]) {
        return GitError::Refused(format!(
            "{url} answered 403 Forbidden: the token may not write this repository"
        ));
    }
    if let Some(at) = lower.find("couldn't find remote ref ") {
        let name = stderr[at + "couldn't find remote ref ".len()..]
            .lines()
            .next()
            .unwrap_or_default()
            .trim()
            .trim_start_matches("refs/heads/");
        return GitError::Remote(format!("{url} has no branch or tag {name}"));
    }
    if has(&[
        "not found",
        "returned error: 404",
        "does not appear to be a git repository",
    ]) {
        return GitError::Remote(format!(
            "{url} has no repository there (404): check the address"
        ));
    }
    if has(&[
        "could not resolve host",
        "failed to connect",
        "connection refused",
        "timed out",
        "operation too slow",
    ]) {
        return GitError::Remote(format!("{url} could not be reached: {}", clip(stderr)));
    }
    GitError::Remote(format!("git {command} failed: {}", clip(stderr)))
}

fn clip(text: &str) -> String {
    let text = text.trim();
    match text.char_indices().nth(600) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_http_without_a_password_and_its_user_is_kept_apart() {
        let remote = Remote::new(
            " https://alice@git.example.com/alice/app.git ",
            Some(" t0k ".into()),
            true,
        )
        .unwrap();
        assert_eq!(remote.url, "https://git.example.com/alice/app.git");
        assert_eq!(remote.username.as_deref(), Some("alice"));
        assert_eq!(remote.token.as_deref(), Some("t0k"));
        assert!(remote.view().has_token);
        for refused in [
            "ext::sh -c touch% /tmp/pwned",
            "file:///etc",
            "ssh://git@example.com/app.git",
            "https://alice:secret@example.com/app.git",
            "not an address",
        ] {
            assert!(
                matches!(
                    Remote::new(refused, None, false),
                    Err(GitError::BadRemote(_))
                ),
                "{refused}"
            );
        }
        assert!(Remote::new("https://example.com/a.git", Some("a\nb".into()), false).is_err());
    }

    #[test]
    fn git_refusals_are_told_in_plain_words() {
        let url = "https://example.com/a.git";
        assert!(matches!(
            explain(
                "push",
                url,
                " ! [rejected]        main -> main (fetch first)"
            ),
            GitError::Behind
        ));
        assert!(matches!(
            explain("fetch", url, "fatal: Authentication failed for 'https://example.com/a.git/'"),
            GitError::Refused(message) if message.contains("refused the token")
        ));
        assert!(matches!(
            explain("push", url, "fatal: unable to access '…': The requested URL returned error: 403"),
            GitError::Refused(message) if message.contains("403")
        ));
        assert!(matches!(
            explain("fetch", url, "fatal: couldn't find remote ref main"),
            GitError::Remote(message) if message.ends_with("no branch or tag main")
        ));
        assert!(matches!(
            explain("fetch", url, "fatal: unable to access: Could not resolve host: example.com"),
            GitError::Remote(message) if message.contains("could not be reached")
        ));
    }
}
