//! Serving the router over HTTP or HTTPS (rustls, ring provider), with graceful shutdown.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::time::Duration;

use axum_server::Handle;
use axum_server::tls_rustls::RustlsConfig;

use crate::app::{AppState, router};

/// Installs ring as the process's one rustls crypto provider. Idempotent.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A bound, not yet serving, gateway: binding first lets callers learn the port (`:0`).
pub struct BoundServer {
    listener: TcpListener,
    tls: Option<RustlsConfig>,
}

impl BoundServer {
    pub async fn bind(addr: SocketAddr, tls: Option<TlsFiles>) -> anyhow::Result<BoundServer> {
        install_crypto_provider();
        let listener = TcpListener::bind(addr).map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
        listener.set_nonblocking(true)?;
        let tls = match tls {
            Some(files) => Some(RustlsConfig::from_pem_file(&files.cert, &files.key).await.map_err(|e| {
                anyhow::anyhow!(
                    "cannot load TLS certificate {} / key {}: {e}",
                    files.cert.display(),
                    files.key.display()
                )
            })?),
            None => None,
        };
        Ok(BoundServer { listener, tls })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` resolves, then stops accepting and lets in-flight requests
    /// finish (for at most `grace`).
    pub async fn serve(
        self,
        state: AppState,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
        grace: Duration,
    ) -> anyhow::Result<()> {
        let handle: Handle<SocketAddr> = Handle::new();
        let signal_handle = handle.clone();
        tokio::spawn(async move {
            shutdown.await;
            tracing::info!("shutting down: finishing in-flight requests");
            signal_handle.graceful_shutdown(Some(grace));
        });
        let app = router(state).into_make_service();
        match self.tls {
            Some(tls) => axum_server::from_tcp_rustls(self.listener, tls)?.handle(handle).serve(app).await?,
            None => axum_server::from_tcp(self.listener)?.handle(handle).serve(app).await?,
        }
        Ok(())
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
