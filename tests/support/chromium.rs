//! Real headless Chromium for the tests, through chromedriver (WebDriver), with the
//! README's screenshots taken in light and dark.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

pub const WAIT: Duration = Duration::from_secs(180);

/// A child process that is killed when the test ends, however it ends.
pub struct Guard(pub Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub async fn wait_until_answering(url: &str) {
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    for _ in 0..300 {
        if client.get(url).send().await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{url} never answered");
}

pub async fn browser() -> (Client, Guard) {
    let port = free_port();
    let driver = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver must be installed (apt-get install chromium chromium-driver)");
    let guard = Guard(driver);
    wait_until_answering(&format!("http://127.0.0.1:{port}/status")).await;
    let profile = tempfile::tempdir().unwrap().keep();
    let capabilities = json!({
        "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--no-first-run",
                "--disable-sync", "--window-size=1400,900", format!("--user-data-dir={}", profile.display()),
            ]
        }
    });
    let client = ClientBuilder::rustls()
        .unwrap()
        .capabilities(capabilities.as_object().unwrap().clone())
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("chromedriver starts a headless Chromium session");
    (client, guard)
}

pub async fn screenshot(client: &Client, name: &str) {
    for theme in ["light", "dark"] {
        client
            .execute(
                "document.documentElement.dataset.theme = arguments[0]; return true;",
                vec![json!(theme)],
            )
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(150)).await;
        let png = client.screenshot().await.unwrap();
        let path = format!(
            "{}/docs/screenshots/{name}-{theme}.png",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::create_dir_all(std::path::Path::new(&path).parent().unwrap()).unwrap();
        std::fs::write(path, png).unwrap();
    }
    client
        .execute(
            "delete document.documentElement.dataset.theme; return true;",
            vec![],
        )
        .await
        .unwrap();
}

/// Switches into the project page's preview frame; returns the frame, to come back to.
/// The frame comes in with the Preview tab's swap, so it is waited for, not expected.
pub async fn enter_preview(client: &Client) -> fantoccini::elements::Element {
    wait_for(
        client,
        "the preview frame",
        "return !!document.querySelector('iframe#preview-frame')",
    )
    .await;
    let frame = client
        .find(Locator::Css("iframe#preview-frame"))
        .await
        .unwrap();
    frame.clone().enter_frame().await.unwrap();
    frame
}

/// Waits until the preview frame has painted a page that shows `text`, so that a
/// screenshot of the project page never catches a blank frame; then returns to the page.
/// Each look enters the frame afresh: htmx may swap the frame while it loads.
pub async fn wait_for_preview(client: &Client, text: &str) {
    let painted = format!(
        "return !!document.body && document.body.innerText.includes({}) && document.body.getBoundingClientRect().height > 0",
        json!(text)
    );
    let deadline = std::time::Instant::now() + WAIT;
    let mut last_seen = String::new();
    while std::time::Instant::now() < deadline {
        if let Ok(frame) = client.find(Locator::Css("iframe#preview-frame")).await
            && frame.enter_frame().await.is_ok()
        {
            let shown = client.execute(&painted, vec![]).await.ok();
            if shown.as_ref().and_then(|value| value.as_bool()) == Some(true) {
                // Two animation frames: the text is painted, not only in the DOM.
                client
                    .execute(
                        "return new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(() => done(true))));",
                        vec![],
                    )
                    .await
                    .unwrap();
                client.enter_parent_frame().await.unwrap();
                return;
            }
            if let Ok(value) = client
                .execute(
                    "return document.body ? document.body.innerText : ''",
                    vec![],
                )
                .await
            {
                last_seen = value.as_str().unwrap_or_default().to_owned();
            }
            client.enter_parent_frame().await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let page = client
        .execute("return document.body.innerText", vec![])
        .await
        .unwrap_or_default();
    panic!(
        "timed out waiting for the preview to show {text:?}; the frame says:\n{last_seen}\nthe page says:\n{page}"
    );
}

/// Clicks the element `css` selects.
pub async fn click(client: &Client, css: &str) {
    client
        .find(Locator::Css(css))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

/// Types `text` into the field `css` selects.
pub async fn type_into(client: &Client, css: &str, text: &str) {
    client
        .find(Locator::Css(css))
        .await
        .unwrap()
        .send_keys(text)
        .await
        .unwrap();
}

/// Clicks a button that asks for confirmation (`hx-confirm`) and says yes.
pub async fn click_and_confirm(client: &Client, css: &str) {
    click(client, css).await;
    // The dialog opens a moment after the click; on a busy machine that moment is longer.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        match client.accept_alert().await {
            Ok(()) => return,
            Err(error) if std::time::Instant::now() > deadline => {
                panic!("no confirmation dialog after clicking {css}: {error}")
            }
            Err(_) => {}
        }
    }
}

/// Waits (bounded) until `script` returns true in the page.
pub async fn wait_for(client: &Client, what: &str, script: &str) {
    let deadline = std::time::Instant::now() + WAIT;
    while std::time::Instant::now() < deadline {
        if client
            .execute(script, vec![])
            .await
            .ok()
            .and_then(|value| value.as_bool())
            == Some(true)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let text = client
        .execute("return document.body.innerText", vec![])
        .await
        .unwrap_or_default();
    panic!("timed out waiting for {what}; the page says:\n{text}");
}
