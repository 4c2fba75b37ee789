//! Shared by the integration tests: where their temporary directories go.

use std::path::PathBuf;

/// The directory test stores are made in: `TOYKV_TEST_DIR` when set (CI points it at a
/// device with 4 KiB sectors), else Cargo's per-target temporary directory. Both must be a
/// real file system: tmpfs accepts misaligned O_DIRECT and would hide alignment bugs.
pub fn base() -> PathBuf {
    std::env::var_os("TOYKV_TEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")), PathBuf::from)
}

/// A server running on a Tokio runtime of its own (2 workers) in a thread, over a listener
/// bound to a free loopback port (tests never pick a port, but may bind again the port a
/// stopped server had: [`Served::start_at`]). Dropping it triggers the shutdown. Only with
/// the `server` feature (which brings Tokio).
#[cfg(feature = "server")]
#[allow(dead_code)]
pub struct Served<T> {
    pub addr: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: std::sync::mpsc::Receiver<T>,
}

/// The future a served function gets: it completes when the shutdown is triggered.
#[cfg(feature = "server")]
#[allow(dead_code)]
pub type Shutdown = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

#[cfg(feature = "server")]
#[allow(dead_code)]
impl<T: Send + 'static> Served<T> {
    /// Runs `serve(listener, shutdown)`; returns once the listener is bound.
    pub fn start<F, Fut>(serve: F) -> Served<T>
    where
        F: FnOnce(tokio::net::TcpListener, Shutdown) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = T>,
    {
        Self::start_at(0, serve)
    }

    /// As [`start`](Self::start), on loopback port `port` (0: a free one); a port still
    /// taken (a stopped server's, not yet released) is tried again for up to 10 s.
    pub fn start_at<F, Fut>(port: u16, serve: F) -> Served<T>
    where
        F: FnOnce(tokio::net::TcpListener, Shutdown) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = T>,
    {
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (done_tx, done) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
                let listener = loop {
                    match tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
                        Err(e)
                            if e.kind() == std::io::ErrorKind::AddrInUse
                                && std::time::Instant::now() < deadline =>
                        {
                            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        }
                        r => break r.unwrap(),
                    }
                };
                addr_tx.send(listener.local_addr().unwrap()).unwrap();
                let shutdown: Shutdown = Box::pin(async {
                    let _ = stopped.await;
                });
                let _ = done_tx.send(serve(listener, shutdown).await);
            });
        });
        let addr = addr_rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .unwrap();
        Served {
            addr,
            stop: Some(stop),
            done,
        }
    }

    /// Triggers the shutdown (once).
    pub fn shutdown(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }

    /// What the served function returned, waiting up to `timeout` for it to end.
    pub fn wait(&mut self, timeout: std::time::Duration) -> Option<T> {
        self.done.recv_timeout(timeout).ok()
    }
}

#[cfg(feature = "server")]
impl<T> Drop for Served<T> {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}
