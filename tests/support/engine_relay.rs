//! A Unix socket that relays to the real Docker engine and can be cut: the engine seen
//! through it "stops" (open connections drop, new ones are refused) without disturbing the
//! other tests that share the engine.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;

const ENGINE_SOCKET: &str = "/var/run/docker.sock";

pub struct EngineRelay {
    pub socket: PathBuf,
    _dir: tempfile::TempDir,
    cut: CancellationToken,
    down: Arc<AtomicBool>,
}

impl EngineRelay {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("docker.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        let cut = CancellationToken::new();
        let down = Arc::new(AtomicBool::new(false));
        tokio::spawn({
            let cut = cut.clone();
            let down = down.clone();
            async move {
                loop {
                    let Ok((mut client, _)) = listener.accept().await else {
                        return;
                    };
                    if down.load(Ordering::SeqCst) {
                        continue; // dropped at once: the engine does not answer
                    }
                    let cut = cut.clone();
                    tokio::spawn(async move {
                        let Ok(mut engine) = UnixStream::connect(ENGINE_SOCKET).await else {
                            return;
                        };
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut client, &mut engine) => {}
                            _ = cut.cancelled() => {}
                        }
                    });
                }
            }
        });
        Self {
            socket,
            _dir: dir,
            cut,
            down,
        }
    }

    /// The engine stops answering: open connections drop and new ones are refused.
    pub fn stop_engine(&self) {
        self.down.store(true, Ordering::SeqCst);
        self.cut.cancel();
    }
}
