//! The E2B backend, proven in layers: the fake E2B service is checked by the official SDK,
//! then the Rust backend runs the sandbox conformance suite and its error paths against it.

mod support;

use support::fake_e2b::{API_KEY, FakeE2b};

#[tokio::test(flavor = "multi_thread")]
async fn the_fake_speaks_the_protocol_the_official_e2b_sdk_expects() {
    let fake = FakeE2b::start().await;
    let stdout = support::run_sdk_check(
        "e2b_check.py",
        &[
            ("E2B_API_KEY", API_KEY),
            ("E2B_API_URL", fake.url.as_str()),
            ("E2B_SANDBOX_URL", fake.url.as_str()),
            ("E2B_DOMAIN", "e2b.test"),
        ],
    )
    .await;
    assert!(stdout.contains("e2b SDK check passed"), "{stdout}");
    assert!(fake.sandbox_ids().is_empty(), "the SDK killed its sandbox");
}

mod backend {
    use std::sync::Arc;
    use std::time::Duration;

    use codeflux::sandbox::e2b::{E2bConfig, E2bProvider};
    use codeflux::sandbox::{FileWrite, SandboxError, SandboxProvider, WorkspacePath, conformance};
    use uuid::Uuid;

    use super::support::fake_e2b::{API_KEY, FakeE2b, id_tree};

    pub fn config(fake: &FakeE2b, key: &str) -> E2bConfig {
        E2bConfig {
            api_key: key.to_string(),
            domain: "e2b.test".into(),
            api_url: fake.url.clone(),
            sandbox_url: Some(fake.url.clone()),
            edge_url: None,
            template: "codeflux-nextjs".into(),
            lifetime: Duration::from_secs(600),
            max_attempts: 3,
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn the_conformance_suite_passes_on_e2b() {
        let fake = FakeE2b::start().await;
        let provider = E2bProvider::new(config(&fake, API_KEY), id_tree()).unwrap();
        let acquired = provider.acquire(Uuid::now_v7()).await.unwrap();
        assert!(acquired.created);
        conformance::all(acquired.sandbox.as_ref()).await;
        let id = acquired.sandbox.id().to_string();
        assert_eq!(
            acquired.sandbox.native_url(3000),
            format!("https://3000-{id}.e2b.test")
        );
        acquired
            .sandbox
            .extend(Duration::from_secs(900))
            .await
            .unwrap();
        assert!(
            fake.calls()
                .iter()
                .any(|call| call == &format!("POST timeout {id}"))
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_restarted_codeflux_reconnects_instead_of_creating() {
        let fake = FakeE2b::start().await;
        let ids = id_tree();
        let project = Uuid::now_v7();
        let first = E2bProvider::new(config(&fake, API_KEY), ids.clone()).unwrap();
        let sandbox = first.acquire(project).await.unwrap().sandbox;
        sandbox
            .write_files(&[FileWrite {
                path: WorkspacePath::parse("app/page.tsx").unwrap(),
                content: b"kept".to_vec(),
            }])
            .await
            .unwrap();
        drop(first);

        let second = E2bProvider::new(config(&fake, API_KEY), ids).unwrap();
        let again = second.acquire(project).await.unwrap();
        assert!(!again.created, "the running sandbox is reused");
        assert_eq!(again.sandbox.id(), sandbox.id());
        let content = again
            .sandbox
            .read_file(&WorkspacePath::parse("app/page.tsx").unwrap())
            .await
            .unwrap();
        assert_eq!(
            content, b"kept",
            "the recovered access token works for envd"
        );
        assert_eq!(fake.sandbox_ids().len(), 1);

        // Even without our record, E2B's metadata finds the project's sandbox.
        let third = E2bProvider::new(config(&fake, API_KEY), id_tree()).unwrap();
        assert!(!third.acquire(project).await.unwrap().created);
        assert_eq!(fake.sandbox_ids().len(), 1);

        third.release(project).await.unwrap();
        assert!(fake.sandbox_ids().is_empty());
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_vanished_sandbox_is_reported_gone_then_recreated() {
        let fake = FakeE2b::start().await;
        let provider = Arc::new(E2bProvider::new(config(&fake, API_KEY), id_tree()).unwrap());
        let project = Uuid::now_v7();
        let sandbox = provider.acquire(project).await.unwrap().sandbox;
        fake.vanish(sandbox.id());
        let error = sandbox
            .run("true", Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(matches!(error, SandboxError::Gone(_)), "{error:?}");
        assert!(
            provider.preview_upstream(project).await.unwrap().is_some(),
            "cached as alive for a moment"
        );

        let fresh = provider.acquire(project).await.unwrap();
        assert!(
            fresh.created,
            "the core restores files into a fresh sandbox"
        );
        assert_ne!(fresh.sandbox.id(), sandbox.id());
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_bad_key_and_rate_limits_get_clear_answers() {
        let fake = FakeE2b::start().await;
        let refused = E2bProvider::new(config(&fake, "e2b_wrong"), id_tree()).unwrap();
        match refused.acquire(Uuid::now_v7()).await {
            Err(SandboxError::Unauthorized(message)) => {
                assert!(message.contains("E2B_API_KEY"), "{message}")
            }
            other => panic!("expected Unauthorized, got {:?}", other.map(|a| a.created)),
        }

        let provider = E2bProvider::new(config(&fake, API_KEY), id_tree()).unwrap();
        fake.fail_next(429, 2);
        assert!(
            provider.acquire(Uuid::now_v7()).await.unwrap().created,
            "429s are retried"
        );
        fake.fail_next(429, 5);
        match provider.acquire(Uuid::now_v7()).await {
            Err(SandboxError::Backend(message)) => {
                assert!(message.contains("rate limiting"), "{message}")
            }
            other => panic!(
                "expected a rate-limit error, got {:?}",
                other.map(|a| a.created)
            ),
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn files_use_octet_stream_on_new_envd_and_multipart_on_old() {
        let fake = FakeE2b::start().await;
        let provider = E2bProvider::new(config(&fake, API_KEY), id_tree()).unwrap();
        let path = WorkspacePath::parse("app/page.tsx").unwrap();
        let new = provider.acquire(Uuid::now_v7()).await.unwrap().sandbox;
        new.write_files(&[FileWrite {
            path: path.clone(),
            content: b"new".to_vec(),
        }])
        .await
        .unwrap();
        assert_eq!(new.read_file(&path).await.unwrap(), b"new");

        fake.set_envd_version("0.4.2");
        let old = provider.acquire(Uuid::now_v7()).await.unwrap().sandbox;
        old.write_files(&[FileWrite {
            path: path.clone(),
            content: b"old \xF0\x9F\x8C\x8D".to_vec(),
        }])
        .await
        .unwrap();
        assert_eq!(old.read_file(&path).await.unwrap(), "old 🌍".as_bytes());
        let uploads: Vec<String> = fake
            .calls()
            .into_iter()
            .filter(|call| call.starts_with("UPLOAD"))
            .collect();
        assert_eq!(
            uploads,
            [
                "UPLOAD application/octet-stream",
                "UPLOAD multipart/form-data"
            ]
        );
        assert!(matches!(
            old.read_file(&WorkspacePath::parse("missing.txt").unwrap())
                .await,
            Err(SandboxError::FileNotFound(_))
        ));
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn output_split_across_chunks_and_timeouts_are_handled() {
        let fake = FakeE2b::start().await;
        let provider = E2bProvider::new(config(&fake, API_KEY), id_tree()).unwrap();
        let sandbox = provider.acquire(Uuid::now_v7()).await.unwrap().sandbox;
        let output = sandbox
            .run(
                "printf 'h\\303'; sleep 0.2; printf '\\251llo'; exit 4",
                Duration::from_secs(10),
            )
            .await
            .unwrap();
        assert_eq!(output.stdout, "héllo");
        assert_eq!(output.exit_code, 4);
        let started = std::time::Instant::now();
        let timed_out = sandbox.run("sleep 30", Duration::from_secs(1)).await;
        assert!(
            matches!(timed_out, Err(SandboxError::Timeout(_))),
            "{timed_out:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(20));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_prompt_is_built_in_an_e2b_sandbox() {
    use std::sync::Arc;

    use codeflux::sandbox::SandboxProvider;
    use codeflux::sandbox::e2b::E2bProvider;
    use support::fake_llm::{FakeLlm, Reply};
    use support::harness::Harness;

    let fake = FakeE2b::start().await;
    let ids = support::fake_e2b::id_tree();
    let provider = Arc::new(E2bProvider::new(backend::config(&fake, API_KEY), ids).unwrap());
    let model = FakeLlm::start().await;
    model.push_all([
        Reply::write(
            "app/page.tsx",
            "export default function Page() { return <main>e2b-built</main>; }\n",
        ),
        Reply::terminal("grep -c e2b-built app/page.tsx"),
        Reply::summary("Built on E2B."),
    ]);
    let preview_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = preview_listener.local_addr().unwrap().port();
    let server = Harness::start_with_provider(
        model.clone(),
        provider.clone(),
        preview_listener,
        |settings| {
            settings.preview_url_template = format!("http://{{project}}.localhost:{port}");
        },
    )
    .await;

    let project = server.create("build it on e2b").await;
    let answer = server.last_message(&project).await;
    assert_eq!(answer["type"], "result", "{answer}");
    assert_eq!(
        answer["fragment"]["sandbox_url"],
        format!("http://{project}.localhost:{port}")
    );
    let tool_results: Vec<String> = model.agent_requests()[2]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|message| message["role"] == "tool")
        .map(|message| message["content"].as_str().unwrap().to_string())
        .collect();
    assert!(
        tool_results[1].contains("exit code 0") && tool_results[1].contains('1'),
        "{tool_results:?}"
    );

    let sandbox_id = fake.sandbox_ids().pop().expect("one sandbox");
    let written =
        std::fs::read_to_string(fake.root_of(&sandbox_id).unwrap().join("app/page.tsx")).unwrap();
    assert!(written.contains("e2b-built"), "the file went through envd");
    let upstream = provider
        .preview_upstream(project.parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        upstream.base_url,
        format!("https://3000-{sandbox_id}.e2b.test")
    );
    // Created private: the sandbox URL alone opens nothing; CodeFlux's proxy sends the
    // traffic token with every request.
    assert!(fake.is_private(&sandbox_id));
    let edge = reqwest::Client::new();
    let port = |headers: &[(String, String)]| {
        let mut request = edge
            .get(format!("{}/", fake.url))
            .header("host", format!("3000-{sandbox_id}.e2b.test"));
        for (name, value) in headers {
            request = request.header(name.as_str(), value.as_str());
        }
        request.send()
    };
    assert_eq!(port(&[]).await.unwrap().status(), 403);
    assert_eq!(port(&upstream.headers).await.unwrap().status(), 200);
}

/// `codeflux doctor` with `CODEFLUX_SANDBOX=e2b` makes one authenticated call to the
/// control API: a good key passes, a bad one fails the run with the reason.
#[tokio::test(flavor = "multi_thread")]
async fn doctor_checks_the_e2b_key_against_the_control_api() {
    let fake = FakeE2b::start().await;
    let model = support::fake_llm::FakeLlm::start().await;
    let data = tempfile::tempdir().unwrap();
    let run = |key: &str| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_codeflux"))
            .args(["doctor", "--data-dir"])
            .arg(data.path())
            .args(["--listen", "127.0.0.1:0", "--preview-listen", "127.0.0.1:0"])
            .env("CODEFLUX_SANDBOX", "e2b")
            .env("E2B_API_KEY", key)
            .env("E2B_API_URL", &fake.url)
            .env("E2B_SANDBOX_URL", &fake.url)
            .env("E2B_DOMAIN", "e2b.test")
            .env("CODEFLUX_LLM_BASE_URL", &model.base_url)
            .output()
            .unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
        )
    };
    model.push(support::fake_llm::Reply::terminal("echo ok"));
    let (ok, output) = run(API_KEY);
    assert!(ok, "{output}");
    assert!(
        output
            .lines()
            .any(|line| line.starts_with("ok    e2b") && line.contains("accepts the key")),
        "{output}"
    );
    assert!(
        !output.contains("docker engine"),
        "E2B was chosen: {output}"
    );

    model.push(support::fake_llm::Reply::terminal("echo ok"));
    let (ok, output) = run("e2b_wrong_key");
    assert!(!ok, "{output}");
    assert!(
        output
            .lines()
            .any(|line| line.starts_with("FAIL  e2b") && line.contains(&fake.url)),
        "{output}"
    );
}
