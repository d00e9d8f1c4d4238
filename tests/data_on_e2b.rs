//! The E2B backend keeps an app's data as the Docker one does. The fake E2B boots each
//! sandbox from the real template image (its start command, dev server and database,
//! without the Dockerfile's ENV lines, as E2B's legacy builder), and the preview reaches it
//! through the fake's edge. The todo app's rows come back when E2B loses the sandbox and
//! when CodeFlux restarts while its sandbox is gone.

mod support;

use std::sync::Arc;

use codeflux::sandbox::SandboxProvider;
use codeflux::sandbox::e2b::E2bProvider;
use support::docker_env::{provider, test_config};
use support::fake_e2b::FakeE2b;
use support::fake_llm::FakeLlm;
use support::harness::Harness;
use support::todo_app::{Todos, checked_settings, todo_rows};

fn e2b_provider(fake: &FakeE2b, ids: &sled::Tree) -> Arc<dyn SandboxProvider> {
    Arc::new(E2bProvider::new(fake.edge_config(), ids.clone()).unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_e2b_sandbox_gets_the_data_back_when_it_is_replaced() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let (docker, _cleanup) = provider(test_config()).await;
    let fake = FakeE2b::on_template(&docker).await;
    let ids = support::fake_e2b::id_tree();

    let preview_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let preview_port = preview_listener.local_addr().unwrap().port();
    let server = Harness::start_with_provider(
        FakeLlm::start().await,
        e2b_provider(&fake, &ids),
        preview_listener,
        checked_settings(preview_port),
    )
    .await;
    let todos = Todos {
        server: &server,
        preview_port,
    };
    let project = todos.build("Todos on E2B").await;
    let data = todos.data(&project).await;
    assert_eq!(data["source"], "live", "{data}");
    assert_eq!(todo_rows(&data), 1, "the seed row is in: {data}");

    todos.add(&project, "Walk the dog").await;
    todos.saved_rows(&project, 2).await;
    todos.page_shows(&project, "Walk the dog").await;

    // E2B loses the sandbox (expired, killed): the next visit starts another one, which
    // gets the files and the data back.
    let first = fake.sandbox_ids();
    assert_eq!(first.len(), 1, "{first:?}");
    fake.vanish(&first[0]);
    let body = todos.page_shows(&project, "Walk the dog").await;
    assert!(body.contains("Buy milk"), "{body}");
    let second = fake.sandbox_ids();
    assert_eq!(second.len(), 1, "{second:?}");
    assert_ne!(second, first, "a new sandbox serves the app");

    // CodeFlux restarts, and the sandbox is gone meanwhile: the data comes from CodeFlux.
    let (model, data_dir, _) = server.stop().await;
    for id in fake.sandbox_ids() {
        fake.vanish(&id);
    }
    let preview_listener = tokio::net::TcpListener::bind(("127.0.0.1", preview_port))
        .await
        .unwrap();
    let server = Harness::restart_with_provider(
        model,
        data_dir,
        e2b_provider(&fake, &ids),
        preview_listener,
        checked_settings(preview_port),
    )
    .await;
    let todos = Todos {
        server: &server,
        preview_port,
    };
    todos.page_shows(&project, "Walk the dog").await;
    assert_eq!(todos.titles(&project).await, ["Buy milk", "Walk the dog"]);
    let third = fake.sandbox_ids();
    assert!(
        third.len() == 1 && third != second,
        "{second:?} then {third:?}"
    );
}
