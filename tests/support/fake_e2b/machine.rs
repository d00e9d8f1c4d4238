//! Where a fake sandbox runs. By default a folder on this machine stands for `/home/user`
//! and commands run as an unprivileged user in a mount namespace; with an image, each
//! sandbox is a container of the sandbox template's image, the way E2B boots a microVM
//! from a template, its start command running and its ports reachable through the edge.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use axum::http::StatusCode;

use super::HOME;

/// Commands run as this unprivileged uid/gid (`nobody`) in a folder machine.
const SANDBOX_UID: u32 = 65534;

/// The ENV lines of `e2b.Dockerfile`. E2B's legacy template builder takes only FROM, ADD,
/// COPY, RUN, WORKDIR and ARG, so a sandbox of such a build runs without them: a container
/// machine drops them too, and the template must not depend on them.
const DROPPED_ENV: &[&str] = &[
    "NEXT_TELEMETRY_DISABLED",
    "NPM_CONFIG_UPDATE_NOTIFIER",
    "NPM_CONFIG_FUND",
    "NPM_CONFIG_AUDIT",
    "NPM_CONFIG_LEGACY_PEER_DEPS",
    "HOSTNAME",
    "PORT",
    "CODEFLUX_DB_BRIDGE",
    "NODE_OPTIONS",
];

/// Labels the fake's containers, so a run that died can be cleaned up after.
const CONTAINER_LABEL: &str = "codeflux.fake-e2b";

pub enum Machine {
    Folder(tempfile::TempDir),
    Container { name: String, address: String },
}

/// Why a file could not be read or written, as envd answers it.
pub struct FileError {
    pub status: StatusCode,
    pub message: String,
}

fn file_error(status: StatusCode, message: impl Into<String>) -> FileError {
    FileError {
        status,
        message: message.into(),
    }
}

/// A started command and what stops it with everything it started.
pub struct Started {
    pub child: tokio::process::Child,
    pub stopper: Stopper,
}

#[derive(Clone)]
pub enum Stopper {
    /// The process group on this machine.
    Group(u32),
    /// The session in the container whose leader wrote its pid to `pid_file`, and the
    /// `docker exec` client on this machine.
    InContainer {
        container: String,
        pid_file: String,
        client: u32,
    },
}

impl Stopper {
    pub fn stop(&self) {
        match self {
            Stopper::Group(pid) => kill_group(*pid),
            Stopper::InContainer {
                container,
                pid_file,
                client,
            } => {
                let _ = std::process::Command::new("docker")
                    .args(["exec", "-u", "root", container, "sh", "-c"])
                    .arg(r#"kill -KILL -- "-$(cat "$1")""#)
                    .arg("sh")
                    .arg(pid_file)
                    .output();
                kill_group(*client);
            }
        }
    }
}

fn kill_group(pid: u32) {
    let _ = std::process::Command::new("kill")
        .args(["-s", "KILL", "--", &format!("-{pid}")])
        .status();
}

impl Machine {
    /// A workspace folder the unprivileged sandbox user owns.
    pub fn folder() -> Self {
        let root = tempfile::tempdir().unwrap();
        std::os::unix::fs::chown(root.path(), Some(SANDBOX_UID), Some(SANDBOX_UID)).unwrap();
        Machine::Folder(root)
    }

    /// A container of `image` running its start command (the image's CMD), without the
    /// template's ENV lines.
    pub async fn container(image: &str, sandbox_id: &str) -> Self {
        let name = format!("codeflux-fake-e2b-{sandbox_id}");
        let mut command = tokio::process::Command::new("docker");
        command
            .args(["run", "-d", "--name", &name, "--label", CONTAINER_LABEL])
            .args(["--memory", "3g", "--entrypoint", "env", image]);
        for variable in DROPPED_ENV {
            command.args(["-u", variable]);
        }
        let output = command
            .arg("/usr/local/bin/codeflux-start")
            .output()
            .await
            .unwrap();
        assert!(
            output.status.success(),
            "docker run {image}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let inspected = tokio::process::Command::new("docker")
            .args([
                "inspect",
                "-f",
                "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
                &name,
            ])
            .output()
            .await
            .unwrap();
        let address = String::from_utf8_lossy(&inspected.stdout)
            .trim()
            .to_string();
        assert!(!address.is_empty(), "container {name} has no address");
        Machine::Container { name, address }
    }

    /// The folder standing for `/home/user`, for a folder machine.
    pub fn folder_path(&self) -> Option<&Path> {
        match self {
            Machine::Folder(root) => Some(root.path()),
            Machine::Container { .. } => None,
        }
    }

    /// Where the sandbox's `port` answers, for a container machine.
    pub fn port_address(&self, port: u16) -> Option<String> {
        match self {
            Machine::Folder(_) => None,
            Machine::Container { address, .. } => Some(format!("{address}:{port}")),
        }
    }

    /// Whether a command may start in `cwd`.
    pub fn check_cwd(&self, cwd: &str) -> Result<(), FileError> {
        match self {
            Machine::Folder(root) => host_path(root.path(), cwd).map(|_| ()),
            Machine::Container { .. } => Ok(()),
        }
    }

    /// Starts `program` as the sandbox's user in `cwd`, its output piped. `tag` is unique
    /// per command in this fake.
    pub fn start(
        &self,
        program: &str,
        args: &[String],
        cwd: &str,
        envs: &[(String, String)],
        tag: u64,
    ) -> Started {
        let mut command;
        match self {
            Machine::Folder(root) => {
                // Like envd, the command sees its workspace at /home/user: it runs in a mount
                // namespace of its own where the sandbox's folder is bound there.
                let _ = std::fs::create_dir_all(HOME);
                command = tokio::process::Command::new("unshare");
                command
                    .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
                    .arg(r#"mount --bind "$1" /home/user && cd "$2" && shift 2 && exec setpriv --reuid "$UID_" --regid "$UID_" --clear-groups -- "$@""#)
                    .arg("sh")
                    .arg(root.path())
                    .arg(cwd)
                    .arg(program)
                    .args(args)
                    .env("UID_", SANDBOX_UID.to_string())
                    .env("HOME", HOME)
                    .envs(envs.iter().map(|(key, value)| (key, value)));
            }
            Machine::Container { name, .. } => {
                // A session of its own inside the container, whose leader notes its pid, so
                // a signal reaches everything the command started.
                command = tokio::process::Command::new("docker");
                command.args(["exec", "-u", "user", "-w", cwd, name, "env"]);
                for variable in DROPPED_ENV {
                    command.args(["-u", variable]);
                }
                command
                    .args(envs.iter().map(|(key, value)| format!("{key}={value}")))
                    .args(["setsid", "-w", "sh", "-c"])
                    .arg(r#"echo "$$" > "$0" && exec "$@""#)
                    .arg(format!("/tmp/.fake-envd-{tag}.pid"))
                    .arg(program)
                    .args(args);
            }
        }
        command
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let child = command.spawn().unwrap();
        let pid = child.id().unwrap_or_default();
        let stopper = match self {
            Machine::Folder(_) => Stopper::Group(pid),
            Machine::Container { name, .. } => Stopper::InContainer {
                container: name.clone(),
                pid_file: format!("/tmp/.fake-envd-{tag}.pid"),
                client: pid,
            },
        };
        Started { child, stopper }
    }

    pub async fn read(&self, path: &str) -> Result<Vec<u8>, FileError> {
        match self {
            Machine::Folder(root) => {
                let target = host_path(root.path(), path)?;
                if target.is_dir() {
                    return Err(file_error(StatusCode::BAD_REQUEST, "path is a directory"));
                }
                std::fs::read(&target).map_err(|_| not_found(path))
            }
            Machine::Container { name, .. } => {
                let output = tokio::process::Command::new("docker")
                    .args(["exec", "-u", "user", name, "sh", "-c"])
                    .arg(r#"if [ -d "$1" ]; then exit 21; fi; exec cat -- "$1""#)
                    .arg("sh")
                    .arg(absolute(path))
                    .output()
                    .await
                    .unwrap();
                match output.status.code() {
                    Some(0) => Ok(output.stdout),
                    Some(21) => Err(file_error(StatusCode::BAD_REQUEST, "path is a directory")),
                    _ => Err(not_found(path)),
                }
            }
        }
    }

    /// Writes a file, creating its folders as the sandbox's user, as envd does.
    pub async fn write(&self, path: &str, data: &[u8]) -> Result<(), FileError> {
        match self {
            Machine::Folder(root) => write_in_folder(root.path(), path, data),
            Machine::Container { name, .. } => {
                use tokio::io::AsyncWriteExt;
                let mut child = tokio::process::Command::new("docker")
                    .args(["exec", "-i", "-u", "user", name, "sh", "-c"])
                    .arg(r#"mkdir -p -- "$(dirname -- "$1")" && cat > "$1""#)
                    .arg("sh")
                    .arg(absolute(path))
                    .stdin(Stdio::piped())
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap();
                let mut stdin = child.stdin.take().unwrap();
                stdin.write_all(data).await.unwrap();
                drop(stdin);
                let output = child.wait_with_output().await.unwrap();
                if output.status.success() {
                    Ok(())
                } else {
                    Err(file_error(
                        StatusCode::FORBIDDEN,
                        String::from_utf8_lossy(&output.stderr).trim(),
                    ))
                }
            }
        }
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        if let Machine::Container { name, .. } = self {
            let _ = std::process::Command::new("docker")
                .args(["rm", "-f", name.as_str()])
                .output();
        }
    }
}

/// A sandbox path, absolute (relative ones are under `/home/user`).
pub fn absolute(path: &str) -> String {
    if path.starts_with('/') {
        path.to_string()
    } else {
        format!("{HOME}/{path}")
    }
}

fn not_found(path: &str) -> FileError {
    file_error(
        StatusCode::NOT_FOUND,
        format!("path '{path}' does not exist"),
    )
}

/// Maps a sandbox path onto a folder machine; paths outside `/home/user` are refused.
fn host_path(root: &Path, path: &str) -> Result<PathBuf, FileError> {
    let relative = match path.strip_prefix(HOME) {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => rest.trim_start_matches('/'),
        _ if !path.starts_with('/') => path,
        _ => {
            return Err(file_error(
                StatusCode::BAD_REQUEST,
                "the fake only serves /home/user",
            ));
        }
    };
    if relative.split('/').any(|part| part == "..") {
        return Err(file_error(
            StatusCode::BAD_REQUEST,
            "path escapes the workspace",
        ));
    }
    let target = root.join(relative);
    // The fake acts as root on the host, where a link in the workspace would lead out of
    // it; real envd acts as `user` inside the sandbox, where such a write is refused.
    let mut existing = target.as_path();
    while !existing.exists() {
        existing = existing.parent().unwrap_or(root);
    }
    let inside = existing
        .canonicalize()
        .is_ok_and(|real| real.starts_with(root.canonicalize().unwrap()));
    if !inside {
        return Err(file_error(StatusCode::FORBIDDEN, "permission denied"));
    }
    Ok(target)
}

fn write_in_folder(root: &Path, path: &str, data: &[u8]) -> Result<(), FileError> {
    let target = host_path(root, path)?;
    // Create missing folders one by one so each belongs to the sandbox user, as envd does.
    let mut folder = root.to_path_buf();
    for part in target
        .strip_prefix(root)
        .unwrap()
        .parent()
        .into_iter()
        .flat_map(|parent| parent.components())
    {
        folder.push(part);
        if !folder.exists() {
            std::fs::create_dir(&folder).unwrap();
            std::os::unix::fs::chown(&folder, Some(SANDBOX_UID), Some(SANDBOX_UID)).unwrap();
        }
    }
    std::fs::write(&target, data).unwrap();
    std::os::unix::fs::chown(&target, Some(SANDBOX_UID), Some(SANDBOX_UID)).unwrap();
    Ok(())
}
