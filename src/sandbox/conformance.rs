//! Checks every sandbox backend must pass, written once and run against each backend's
//! real service (or its faithful stand-in) by that backend's tests. Each check panics with
//! a message saying what differed.

use std::time::Duration;

use super::{FileWrite, Sandbox, SandboxError, WORKSPACE_ROOT, WorkspacePath};

const QUICK: Duration = Duration::from_secs(30);

/// A command listing the processes whose command line starts with `pattern` (a grep
/// pattern). It reads /proc directly, because minimal images have no pgrep.
pub fn processes_matching(pattern: &str) -> String {
    format!(
        "for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline 2>/dev/null; echo; done | grep '^{pattern}' || true"
    )
}

fn path(raw: &str) -> WorkspacePath {
    WorkspacePath::parse(raw).expect("a valid workspace path")
}

/// Exit codes, separate stdout and stderr, the working directory and the user.
pub async fn run_and_exit_codes(sandbox: &dyn Sandbox) {
    let output = sandbox
        .run("echo out; echo err >&2; exit 3", QUICK)
        .await
        .expect("command runs");
    assert_eq!(output.stdout, "out\n");
    assert_eq!(output.stderr, "err\n");
    assert_eq!(output.exit_code, 3);

    let output = sandbox.run("id -u", QUICK).await.expect("command runs");
    assert!(output.success());
    assert_ne!(output.stdout.trim(), "0", "commands must not run as root");

    // Commands start in the workspace: a file written at a workspace path is right there.
    sandbox
        .write_files(&[FileWrite {
            path: path("conformance-marker.txt"),
            content: b"here".to_vec(),
        }])
        .await
        .expect("marker is written");
    let found = sandbox
        .run("cat conformance-marker.txt", QUICK)
        .await
        .expect("command runs");
    assert_eq!(
        found.stdout, "here",
        "commands do not start in {WORKSPACE_ROOT}: {found:?}"
    );
}

/// Output that is not ASCII comes back intact.
pub async fn unicode_output(sandbox: &dyn Sandbox) {
    let text = "héllo wörld ✓ 🌍 日本語";
    let output = sandbox
        .run(&format!("printf '%s\\n' '{text}'"), QUICK)
        .await
        .expect("command runs");
    assert_eq!(output.stdout, format!("{text}\n"));
}

/// Text and binary files, nested folders created on the way, overwrites, and the files
/// belong to the user the commands run as.
pub async fn write_read_files(sandbox: &dyn Sandbox) {
    let binary: Vec<u8> = (0..=255u8).cycle().take(4096).collect();
    let files = [
        FileWrite {
            path: path("deep/nested/dir/note.txt"),
            content: "first ✓\n".as_bytes().to_vec(),
        },
        FileWrite {
            path: path("/home/user/assets/blob.bin"),
            content: binary.clone(),
        },
    ];
    sandbox
        .write_files(&files)
        .await
        .expect("files are written");
    assert_eq!(
        sandbox
            .read_file(&path("deep/nested/dir/note.txt"))
            .await
            .unwrap(),
        "first ✓\n".as_bytes()
    );
    assert_eq!(
        sandbox.read_file(&path("assets/blob.bin")).await.unwrap(),
        binary
    );

    let seen = sandbox.run("cat deep/nested/dir/note.txt && test -O deep/nested/dir/note.txt && test -O deep/nested && echo owned", QUICK).await.unwrap();
    assert_eq!(
        seen.stdout, "first ✓\nowned\n",
        "written files are visible to commands and owned by their user: {seen:?}"
    );

    sandbox
        .write_files(&[FileWrite {
            path: path("deep/nested/dir/note.txt"),
            content: b"second".to_vec(),
        }])
        .await
        .expect("overwrite works");
    assert_eq!(
        sandbox
            .read_file(&path("deep/nested/dir/note.txt"))
            .await
            .unwrap(),
        b"second"
    );
}

/// Reading a file that does not exist is `FileNotFound`, not a generic failure.
pub async fn missing_file_is_not_found(sandbox: &dyn Sandbox) {
    match sandbox.read_file(&path("no/such/file.txt")).await {
        Err(SandboxError::FileNotFound(_)) => {}
        other => panic!("expected FileNotFound, got {other:?}"),
    }
}

/// A command that outlives its time limit is killed, with the children it started.
pub async fn timeout_kills(sandbox: &dyn Sandbox) {
    // Distinctive durations, so processes of other runs on the same machine never match.
    let tag = 1000 + rand::random_range(0..9000u32);
    let started = std::time::Instant::now();
    let result = sandbox
        .run(
            &format!("sleep {tag}1 & sleep {tag}2; echo finished"),
            Duration::from_secs(1),
        )
        .await;
    assert!(
        matches!(result, Err(SandboxError::Timeout(_))),
        "expected a timeout, got {result:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the command was not cut short"
    );
    let survivors = sandbox
        .run(&processes_matching(&format!("sleep {tag}[12]")), QUICK)
        .await
        .unwrap();
    assert_eq!(
        survivors.stdout.trim(),
        "",
        "processes survived the timeout"
    );
}

/// A symbolic link inside the workspace that points out of it carries no write or read
/// outside `/home/user`.
pub async fn path_escape_refused(sandbox: &dyn Sandbox) {
    let setup = sandbox
        .run(
            "rm -rf escape && mkdir -p escape && ln -s / escape/root && ln -s /tmp escape/tmp",
            QUICK,
        )
        .await
        .expect("links are made");
    assert!(setup.success(), "{setup:?}");
    let marker = format!("codeflux-escape-{}", rand::random_range(0..1_000_000u32));
    for target in [
        format!("escape/root/tmp/{marker}"),
        format!("escape/tmp/{marker}"),
    ] {
        let written = sandbox
            .write_files(&[FileWrite {
                path: path(&target),
                content: b"outside".to_vec(),
            }])
            .await;
        assert!(
            matches!(written, Err(SandboxError::PathEscape(_))),
            "writing {target} through a link must be refused, got {written:?}"
        );
    }
    let leaked = sandbox
        .run(&format!("ls /tmp/{marker} 2>/dev/null || true"), QUICK)
        .await
        .unwrap();
    assert_eq!(
        leaked.stdout.trim(),
        "",
        "a file was written outside the workspace"
    );
    let read = sandbox.read_file(&path("escape/root/etc/hostname")).await;
    assert!(
        matches!(read, Err(SandboxError::PathEscape(_))),
        "reading through a link must be refused, got {read:?}"
    );
    // Links that stay inside the workspace keep working.
    sandbox
        .run("mkdir -p inner && ln -s ../inner escape/inner", QUICK)
        .await
        .unwrap();
    sandbox
        .write_files(&[FileWrite {
            path: path("escape/inner/ok.txt"),
            content: b"inside".to_vec(),
        }])
        .await
        .expect("a link inside the workspace is fine");
    assert_eq!(
        sandbox.read_file(&path("inner/ok.txt")).await.unwrap(),
        b"inside"
    );
}

/// A command that prints far more than anyone reads comes back cut to its head and tail,
/// and a file over the size limit is refused rather than read into memory.
pub async fn huge_output_and_files_are_bounded(sandbox: &dyn Sandbox) {
    let output = sandbox
        .run(
            "echo first-line; head -c 100000000 /dev/zero | tr '\\0' x; echo; echo last-line",
            Duration::from_secs(120),
        )
        .await
        .expect("command runs");
    assert!(output.success(), "exit code {}", output.exit_code);
    assert!(
        output.stdout.len() <= super::output::MAX_CAPTURED_BYTES + 200,
        "stdout kept {} bytes",
        output.stdout.len()
    );
    assert!(output.stdout.starts_with("first-line\n"));
    assert!(output.stdout.trim_end().ends_with("last-line"));
    assert!(output.stdout.contains("bytes of output left out"));

    let made = sandbox
        .run("head -c 52428800 /dev/zero > big.bin", QUICK)
        .await
        .unwrap();
    assert!(made.success(), "{made:?}");
    let read = sandbox.read_file(&path("big.bin")).await;
    assert!(
        matches!(read, Err(SandboxError::TooLarge { .. })),
        "a 50 MB file must be refused, got {:?}",
        read.map(|bytes| bytes.len())
    );
    sandbox.run("rm -f big.bin", QUICK).await.unwrap();
}

/// A command whose caller stops waiting (a cancelled job, a shutdown) is killed, not left
/// running in the sandbox.
pub async fn abandoned_command_is_killed(sandbox: &dyn Sandbox) {
    let tag = 1000 + rand::random_range(0..9000u32);
    let command = format!("sleep {tag}7");
    let abandoned = sandbox.run(&command, Duration::from_secs(600));
    // Given up on after a moment, as a cancelled job does.
    assert!(
        tokio::time::timeout(Duration::from_secs(3), abandoned)
            .await
            .is_err()
    );
    let find = processes_matching(&format!("sleep {tag}7"));
    for _ in 0..60 {
        let survivors = sandbox.run(&find, QUICK).await.unwrap();
        if survivors.stdout.trim().is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("the abandoned command kept running");
}

/// Runs every check above.
pub async fn all(sandbox: &dyn Sandbox) {
    run_and_exit_codes(sandbox).await;
    unicode_output(sandbox).await;
    write_read_files(sandbox).await;
    missing_file_is_not_found(sandbox).await;
    timeout_kills(sandbox).await;
    path_escape_refused(sandbox).await;
    huge_output_and_files_are_bounded(sandbox).await;
    abandoned_command_is_killed(sandbox).await;
}
