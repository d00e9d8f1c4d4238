//! The preview proxy in front of an `https` dev server (as on E2B): pages and the hot-reload
//! WebSocket both pass through (wss upstream), trusting the CA it is configured with, and
//! the upstream's headers (E2B's traffic token) go along. Pages get the element picker as on
//! Docker.

mod support;

use std::sync::Arc;

use async_trait::async_trait;
use axum::extract::ws::{Message, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::routing::get;
use codeflux::preview::{PreviewOptions, PreviewTargets, Wake};
use codeflux::sandbox::PreviewUpstream;
use futures::{SinkExt, StreamExt};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use uuid::Uuid;

const TOKEN_HEADER: &str = "e2b-traffic-access-token";

/// A CA, and a TLS dev server for 127.0.0.1 signed by it; returns the CA's PEM and the port.
async fn tls_dev_server() -> (String, u16) {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    let config = tokio_rustls::rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            rustls_pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));

    let app = axum::Router::new()
        .route(
            "/",
            get(|headers: HeaderMap| async move {
                format!("hello over tls, token {:?}", headers.get(TOKEN_HEADER))
            }),
        )
        .route(
            "/page",
            get(|headers: HeaderMap| async move {
                axum::response::Html(format!(
                    "<!DOCTYPE html><html><head><title>app</title></head><body>encoding {:?}</body></html>",
                    headers.get("accept-encoding")
                ))
            }),
        )
        .route(
            "/_next/webpack-hmr",
            get(|headers: HeaderMap, upgrade: WebSocketUpgrade| async move {
                assert!(
                    headers.contains_key(TOKEN_HEADER),
                    "the token goes upstream"
                );
                upgrade.on_upgrade(|mut socket| async move {
                    while let Some(Ok(message)) = socket.recv().await {
                        if let Message::Text(text) = message {
                            let _ = socket
                                .send(Message::Text(format!("echo {text}").into()))
                                .await;
                        }
                    }
                })
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, app) = (acceptor.clone(), app.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper_util::service::TowerToHyperService::new(app);
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (ca.pem(), port)
}

struct TlsTarget(u16);

#[async_trait]
impl PreviewTargets for TlsTarget {
    async fn upstream(&self, _project: Uuid) -> Result<Option<PreviewUpstream>, String> {
        Ok(Some(PreviewUpstream {
            base_url: format!("https://127.0.0.1:{}", self.0),
            headers: vec![(TOKEN_HEADER.to_string(), "secret-traffic-token".to_string())],
        }))
    }

    async fn wake(&self, _project: Uuid) -> Wake {
        Wake::Starting
    }
}

async fn proxy(dev_port: u16, extra_ca: Option<String>) -> u16 {
    let router = codeflux::preview::router(
        Arc::new(TlsTarget(dev_port)),
        PreviewOptions {
            extra_ca: extra_ca.map(String::into_bytes),
            ui_origins: vec!["https://codeflux.example.com".into()],
            ..PreviewOptions::default()
        },
    )
    .unwrap();
    support::serve_on_loopback(router).await
}

#[tokio::test]
async fn pages_and_hot_reload_pass_through_to_an_https_dev_server() {
    let (ca, dev_port) = tls_dev_server().await;
    let port = proxy(dev_port, Some(ca)).await;
    let host = format!("{}.localhost:{port}", Uuid::now_v7());

    let page = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/"))
        .header("host", &host)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let text = page.text().await.unwrap();
    assert!(
        text.contains("hello over tls") && text.contains("secret-traffic-token"),
        "{text}"
    );

    // Pages get the element picker, asked for uncompressed so it can be added.
    let page = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/page"))
        .header("host", &host)
        .header("accept", "text/html")
        .header("accept-encoding", "gzip, br")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        page,
        "<!DOCTYPE html><html><head><script src=\"/__codeflux/picker.js\" data-ui-origins=\"https://codeflux.example.com\" async></script><title>app</title></head><body>encoding None</body></html>"
    );

    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(format!(
            "ws://127.0.0.1:{port}/_next/webpack-hmr"
        ))
        .unwrap();
    request.headers_mut().insert("host", host.parse().unwrap());
    let (mut socket, response) = tokio_tungstenite::connect_async(request)
        .await
        .expect("the upgrade passes through to the wss upstream");
    assert_eq!(response.status(), 101);
    socket
        .send(tokio_tungstenite::tungstenite::Message::Text("ping".into()))
        .await
        .unwrap();
    let answer = tokio::time::timeout(std::time::Duration::from_secs(10), socket.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(answer.into_text().unwrap().as_str(), "echo ping");
}

#[tokio::test]
async fn an_untrusted_certificate_is_refused() {
    let (_, dev_port) = tls_dev_server().await;
    let port = proxy(dev_port, None).await;
    let host = format!("{}.localhost:{port}", Uuid::now_v7());
    let page = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/"))
        .header("host", &host)
        .send()
        .await
        .unwrap();
    assert_eq!(
        page.status(),
        502,
        "a refused certificate is shown, not waited on"
    );
    assert!(page.text().await.unwrap().contains("certificate"));
}
