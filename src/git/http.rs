//! Git's smart HTTP protocol, read-only: `git http-backend` run as a CGI program for the two
//! requests a clone or a fetch makes. Pushing is refused before git sees the request.

use std::path::Path;
use std::process::Stdio;

use tokio::io::AsyncWriteExt;

use super::{GitError, plain_git};

/// The largest answer taken from git in one piece (a clone of a large app is a few MB).
const MAX_ANSWER_BYTES: usize = 256 * 1024 * 1024;

/// What a clone or fetch asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// `GET …/info/refs?service=git-upload-pack`: the refs.
    Refs,
    /// `POST …/git-upload-pack`: the objects.
    UploadPack,
}

impl Service {
    /// The request a path and query make, or `None` for anything else (a push included).
    pub fn of(method: &str, rest: &str, query: &str) -> Option<Self> {
        match (method, rest) {
            ("GET", "info/refs") if query == "service=git-upload-pack" => Some(Self::Refs),
            ("POST", "git-upload-pack") => Some(Self::UploadPack),
            _ => None,
        }
    }
}

pub struct Request<'a> {
    pub service: Service,
    /// The repository's folder name under the root, e.g. `<id>.git`.
    pub repository: &'a str,
    pub content_type: Option<&'a str>,
    /// The body's `Content-Encoding` (git sends large requests gzipped).
    pub content_encoding: Option<&'a str>,
    /// The client's `Git-Protocol` header (protocol v2).
    pub git_protocol: Option<&'a str>,
    pub body: &'a [u8],
}

pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Runs `git http-backend` for one request on the repositories under `root`.
pub async fn serve(root: &Path, request: Request<'_>) -> Result<Answer, GitError> {
    let (method, rest, query) = match request.service {
        Service::Refs => ("GET", "info/refs", "service=git-upload-pack"),
        Service::UploadPack => ("POST", "git-upload-pack", ""),
    };
    let mut command = plain_git(root);
    command
        .arg("http-backend")
        .env("GIT_PROJECT_ROOT", root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("REQUEST_METHOD", method)
        .env("PATH_INFO", format!("/{}/{rest}", request.repository))
        .env("QUERY_STRING", query)
        .env("CONTENT_LENGTH", request.body.len().to_string())
        .env("CONTENT_TYPE", request.content_type.unwrap_or_default())
        .env("REMOTE_ADDR", "127.0.0.1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(encoding) = request.content_encoding {
        command.env("HTTP_CONTENT_ENCODING", encoding);
    }
    if let Some(protocol) = request.git_protocol {
        command.env("GIT_PROTOCOL", protocol);
    }
    let mut child = command
        .spawn()
        .map_err(|error| GitError::NoGit(error.to_string()))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(request.body).await?;
        drop(stdin);
    }
    let output = child.wait_with_output().await?;
    if output.stdout.len() > MAX_ANSWER_BYTES {
        return Err(GitError::Failed {
            command: "http-backend".into(),
            stderr: format!("its answer is larger than {MAX_ANSWER_BYTES} bytes"),
        });
    }
    parse_cgi(&output.stdout).ok_or_else(|| GitError::Failed {
        command: "http-backend".into(),
        stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
    })
}

/// A CGI answer: header lines, a blank line, the body; `Status: 404 Not Found` sets the
/// status (200 without it).
fn parse_cgi(output: &[u8]) -> Option<Answer> {
    let (head, body) = split_head(output)?;
    let mut status = 200;
    let mut headers = Vec::new();
    for line in String::from_utf8_lossy(head).lines() {
        let (name, value) = line.split_once(':')?;
        let value = value.trim().to_string();
        if name.eq_ignore_ascii_case("status") {
            status = value.split_whitespace().next()?.parse().ok()?;
        } else {
            headers.push((name.trim().to_string(), value));
        }
    }
    Some(Answer {
        status,
        headers,
        body: body.to_vec(),
    })
}

fn split_head(output: &[u8]) -> Option<(&[u8], &[u8])> {
    for (separator, length) in [(&b"\r\n\r\n"[..], 4), (&b"\n\n"[..], 2)] {
        if let Some(at) = output
            .windows(length)
            .position(|window| window == separator)
        {
            return Some((&output[..at], &output[at + length..]));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_requests_of_a_clone_are_served() {
        assert_eq!(
            Service::of("GET", "info/refs", "service=git-upload-pack"),
            Some(Service::Refs)
        );
        assert_eq!(
            Service::of("POST", "git-upload-pack", ""),
            Some(Service::UploadPack)
        );
        assert_eq!(
            Service::of("GET", "info/refs", "service=git-receive-pack"),
            None
        );
        assert_eq!(Service::of("POST", "git-receive-pack", ""), None);
        assert_eq!(Service::of("GET", "objects/info/packs", ""), None);
    }

    #[test]
    fn cgi_answers_are_read_with_their_status() {
        let answer =
            parse_cgi(b"Status: 404 Not Found\r\nContent-Type: text/plain\r\n\r\nnope").unwrap();
        assert_eq!(answer.status, 404);
        assert_eq!(
            answer.headers,
            vec![("Content-Type".into(), "text/plain".into())]
        );
        assert_eq!(answer.body, b"nope");
        let plain = parse_cgi(
            b"Content-Type: application/x-git-upload-pack-advertisement\n\n001e# service",
        )
        .unwrap();
        assert_eq!(plain.status, 200);
        assert!(parse_cgi(b"no head at all").is_none());
    }
}
