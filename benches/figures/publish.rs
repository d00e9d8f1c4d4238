//! What publishing costs and gives: the time from Publish to the app answering, the
//! production page's time to first byte against the dev server's, the memory of a published
//! app against its sandbox, and a republish under requests every 50 ms.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use uuid::Uuid;

use super::{MARK, Server, Table, median, ms, remove_instance, sandbox_env, secs};

/// Time to the response's headers (reqwest resolves `send` there): the time to first byte.
async fn first_byte(http: &reqwest::Client, url: &str, host: &str) -> Duration {
    let started = Instant::now();
    let response = http.get(url).header("host", host).send().await.unwrap();
    let elapsed = started.elapsed();
    assert_eq!(response.status(), 200, "{host}");
    let _ = response.bytes().await;
    elapsed
}

pub fn memory_mib(container: &str) -> f64 {
    let output = std::process::Command::new("docker")
        .args([
            "stats",
            "--no-stream",
            "--format",
            "{{.MemUsage}}",
            container,
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    let used = text.split('/').next().unwrap_or_default().trim();
    let (number, unit) =
        used.split_at(used.find(|c: char| c.is_alphabetic()).unwrap_or(used.len()));
    let value: f64 = number.trim().parse().unwrap_or(0.0);
    match unit {
        "GiB" => value * 1024.0,
        "KiB" => value / 1024.0,
        _ => value,
    }
}

impl Server {
    async fn publish(&self, project: &str) -> Value {
        let answer = self
            .http
            .post(format!("{}/api/projects/{project}/publish", self.base))
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 202);
        loop {
            let detail = self.detail(project).await;
            match detail["published"]["status"].as_str() {
                Some("running") => return detail["published"].clone(),
                Some("failed") => panic!("the publish failed: {:#}", detail["published"]),
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }
}

pub async fn publishing(table: &mut Table, model: &str) {
    let instance = format!("bench-{}", Uuid::now_v7().simple());
    let data = tempfile::tempdir().unwrap();
    let env = sandbox_env(&instance, model);
    let (server, _) = Server::start(data.path(), &env).await;
    let nonce = Uuid::now_v7().simple().to_string();
    let project = server.create(&format!("a page {MARK}{nonce}")).await;
    server.until_preview_shows(&project, &nonce).await;
    server.until_idle(&project).await;

    let started = Instant::now();
    let published = server.publish(&project).await;
    let publish_time = started.elapsed();
    let name = published["name"].as_str().unwrap().to_string();
    let url = format!("http://127.0.0.1:{}/", server.preview_port);
    let app_host = format!("{name}.apps.localhost:{}", server.preview_port);
    let dev_host = format!("{project}.localhost:{}", server.preview_port);

    let (mut production, mut development) = (Vec::new(), Vec::new());
    // Both warmed first: the dev server compiles on the first request.
    first_byte(&server.http, &url, &app_host).await;
    first_byte(&server.http, &url, &dev_host).await;
    for _ in 0..30 {
        production.push(first_byte(&server.http, &url, &app_host).await);
        development.push(first_byte(&server.http, &url, &dev_host).await);
    }
    let (production, development) = (median(production), median(development));

    let app_memory = memory_mib(published["container"].as_str().unwrap());
    let sandbox = String::from_utf8_lossy(
        &std::process::Command::new("docker")
            .args([
                "ps",
                "-q",
                "--filter",
                &format!("label=codeflux.project={project}"),
            ])
            .output()
            .unwrap()
            .stdout,
    )
    .trim()
    .to_string();
    let sandbox_memory = memory_mib(&sandbox);

    // A republish while a client asks every 50 ms: failures and the longest wait.
    let polling = Arc::new(AtomicBool::new(true));
    let poller = tokio::spawn({
        let (polling, http, url, host) = (
            polling.clone(),
            server.http.clone(),
            url.clone(),
            app_host.clone(),
        );
        async move {
            let (mut sent, mut failed, mut longest) = (0, 0, Duration::ZERO);
            while polling.load(Ordering::SeqCst) {
                let started = Instant::now();
                let ok = http
                    .get(&url)
                    .header("host", &host)
                    .send()
                    .await
                    .is_ok_and(|r| r.status() == 200);
                longest = longest.max(started.elapsed());
                sent += 1;
                if !ok {
                    failed += 1;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            (sent, failed, longest)
        }
    });
    let started = Instant::now();
    server.publish(&project).await;
    let republish_time = started.elapsed();
    polling.store(false, Ordering::SeqCst);
    let (sent, failed, longest) = poller.await.unwrap();

    drop(server);
    remove_instance(&instance);
    let _ = std::process::Command::new("sh")
        .args(["-c", &format!("docker volume ls -q --filter name=codeflux-{instance}-app- | xargs -r docker volume rm -f; docker images -q --filter label=codeflux.app={project} | xargs -r docker rmi -f")])
        .output();

    table.row(
        "Publish → the app answers",
        secs(publish_time),
        "POST `/api/projects/{id}/publish` of a one-page app until `running`: build sandbox, `next build`, production image, trial run, start; one run",
    );
    table.row(
        "Page time to first byte: published / dev server",
        format!("{} / {}", ms(production), ms(development)),
        "GET `/` through the preview listener, both warmed first; median of 30 each",
    );
    table.row(
        "Memory: published app / its dev sandbox",
        format!("{app_memory:.0} MiB / {sandbox_memory:.0} MiB"),
        "`docker stats` right after the page loads above",
    );
    table.row(
        "Republish under load",
        format!("{failed} of {sent} requests failed; longest wait {}; {} in all", secs(longest), secs(republish_time)),
        "a request every 50 ms during a republish of the same version (the proxy holds requests while the containers swap)",
    );
}
