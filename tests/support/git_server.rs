//! A real git server for the remote tests: the stock `git http-backend` (smart HTTP, push
//! enabled) behind a small HTTP server that asks for a token with HTTP Basic, as GitHub,
//! GitLab and Gitea do.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;

#[derive(Clone)]
struct Shared {
    root: PathBuf,
    /// The token it takes now (a test can revoke it).
    token: Arc<Mutex<String>>,
}

pub struct GitServer {
    pub port: u16,
    /// `http://127.0.0.1:<port>/app.git`
    pub url: String,
    token: Arc<Mutex<String>>,
    _root: tempfile::TempDir,
}

impl GitServer {
    /// Serves one empty bare repository, `app.git`, that takes pushes with `token`.
    pub async fn start(token: &str) -> Self {
        let root = tempfile::tempdir().unwrap();
        let repository = root.path().join("app.git");
        run_git(
            root.path(),
            &[
                "init",
                "--quiet",
                "--bare",
                "--initial-branch=main",
                repository.to_str().unwrap(),
            ],
        );
        run_git(&repository, &["config", "http.receivepack", "true"]);
        let token = Arc::new(Mutex::new(token.to_string()));
        let shared = Shared {
            root: root.path().to_path_buf(),
            token: token.clone(),
        };
        let app = axum::Router::new()
            .route("/{*path}", axum::routing::any(serve))
            .with_state(shared);
        let port = super::serve_on_loopback(app).await;
        Self {
            port,
            url: format!("http://127.0.0.1:{port}/app.git"),
            token,
            _root: root,
        }
    }

    /// From now on only `token` is taken.
    pub fn change_token(&self, token: &str) {
        *self.token.lock().unwrap() = token.to_string();
    }

    /// The config that gives the stock client the token (as an `Authorization` header).
    pub fn auth_config(&self) -> String {
        let token = self.token.lock().unwrap().clone();
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("someone:{token}"));
        format!("http.extraHeader=Authorization: Basic {basic}")
    }
}

fn run_git(dir: &Path, args: &[&str]) {
    let output = Command::new("git")
        .current_dir(dir)
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn token_of(headers: &HeaderMap) -> Option<String> {
    let value = headers.get("authorization")?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (_, password) = text.split_once(':')?;
    Some(password.to_string())
}

async fn serve(
    State(shared): State<Shared>,
    method: Method,
    UrlPath(path): UrlPath<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let expected = shared.token.lock().unwrap().clone();
    if token_of(&headers).as_deref() != Some(expected.as_str()) {
        return (
            StatusCode::UNAUTHORIZED,
            [("www-authenticate", "Basic realm=\"test git\"")],
            "a token is needed\n",
        )
            .into_response();
    }
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let (content_type, content_encoding, protocol) = (
        header("content-type"),
        header("content-encoding"),
        header("git-protocol"),
    );
    let root = shared.root.clone();
    let output = tokio::task::spawn_blocking(move || {
        let mut child = Command::new("git")
            .arg("http-backend")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_PROJECT_ROOT", &root)
            .env("GIT_HTTP_EXPORT_ALL", "1")
            .env("REQUEST_METHOD", method.as_str())
            .env("PATH_INFO", format!("/{path}"))
            .env("QUERY_STRING", query.unwrap_or_default())
            .env("CONTENT_TYPE", content_type)
            .env("CONTENT_LENGTH", body.len().to_string())
            .env("HTTP_CONTENT_ENCODING", content_encoding)
            .env("GIT_PROTOCOL", protocol)
            .env("REMOTE_USER", "someone")
            .env("REMOTE_ADDR", "127.0.0.1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let writer = std::thread::spawn(move || std::io::Write::write_all(&mut stdin, &body));
        let output = child.wait_with_output().unwrap();
        let _ = writer.join();
        output
    })
    .await
    .unwrap();
    cgi_response(&output.stdout)
}

/// A CGI answer (headers, a blank line, the body) as an HTTP response.
fn cgi_response(output: &[u8]) -> Response {
    let split = output
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .map(|at| (at, 4))
        .or_else(|| {
            output
                .windows(2)
                .position(|window| window == b"\n\n")
                .map(|at| (at, 2))
        });
    let Some((at, length)) = split else {
        return (StatusCode::BAD_GATEWAY, "git http-backend gave no answer").into_response();
    };
    let mut response = Response::builder().status(200);
    for line in String::from_utf8_lossy(&output[..at]).lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        if name.eq_ignore_ascii_case("status") {
            let code: u16 = value.trim().split(' ').next().unwrap().parse().unwrap();
            response = response.status(code);
        } else {
            response = response.header(name.trim(), value.trim());
        }
    }
    response
        .body(Body::from(output[at + length..].to_vec()))
        .unwrap()
}

/// The stock git client with no user or system configuration (and a committer name), as a
/// person would run it; `config` adds `-c` settings. Its output, or its error output when
/// it must fail.
pub fn stock_git(dir: &Path, config: &[&str], args: &[&str], expect_ok: bool) -> String {
    let mut command = Command::new("git");
    command.current_dir(dir);
    for setting in ["user.name=Someone", "user.email=someone@example.com"]
        .iter()
        .chain(config)
    {
        command.arg("-c").arg(setting);
    }
    let output = command
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .expect("git runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(
        output.status.success(),
        expect_ok,
        "git {args:?}: {stdout}{stderr}"
    );
    if expect_ok { stdout } else { stderr }
}
