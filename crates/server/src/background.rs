//! The server on a thread of its own, for programs and tests that embed it.

use std::net::SocketAddr;

use crate::{AppState, ServerConfig, ServerError, serve_all};

/// A server serving the HTTP API and ADS on a thread of its own with its own multi-thread
/// runtime (as `lambdamesh server` runs it). [`Background::start`] returns once the store is
/// open, so requests can be made at once. Dropping it stops it and waits, as
/// [`Background::stop`] does.
pub struct Background {
    http: SocketAddr,
    grpc: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<(), ServerError>>>,
}

impl Background {
    /// Opens the store in `config.data_dir` and serves HTTP on `http` and ADS on `grpc`; the
    /// configured addresses are replaced by the listeners' own.
    ///
    /// # Errors
    /// A listener cannot be used, the runtime cannot start, or the store cannot be opened.
    pub fn start(
        http: std::net::TcpListener,
        grpc: std::net::TcpListener,
        mut config: ServerConfig,
    ) -> Result<Background, ServerError> {
        for l in [&http, &grpc] {
            l.set_nonblocking(true).map_err(ServerError::Http)?;
        }
        config.http_addr = http.local_addr().map_err(ServerError::Http)?;
        config.grpc_addr = grpc.local_addr().map_err(ServerError::Http)?;
        let (http_addr, grpc_addr) = (config.http_addr, config.grpc_addr);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), ServerError>>();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .map_err(ServerError::Thread)?;
            runtime.block_on(async move {
                let opened = async {
                    let http =
                        tokio::net::TcpListener::from_std(http).map_err(ServerError::Http)?;
                    let grpc =
                        tokio::net::TcpListener::from_std(grpc).map_err(ServerError::Http)?;
                    Ok::<_, ServerError>((AppState::open(config).await?, http, grpc))
                };
                let (app, http, grpc) = match opened.await {
                    Ok(o) => o,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return Ok(());
                    }
                };
                let _ = ready_tx.send(Ok(()));
                serve_all(app, http, Some(grpc), async move {
                    let _ = stopped.await;
                })
                .await
            })
        });
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(Background {
                http: http_addr,
                grpc: grpc_addr,
                stop: Some(stop),
                thread: Some(thread),
            }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            // The thread ended before opening the store: its own error says why.
            Err(_) => match thread.join() {
                Ok(Err(e)) => Err(e),
                _ => Err(ServerError::Thread(std::io::Error::other(
                    "it stopped before serving",
                ))),
            },
        }
    }

    /// The HTTP API's address.
    pub fn http_addr(&self) -> SocketAddr {
        self.http
    }

    /// The ADS (gRPC) listener's address.
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc
    }

    /// Stops serving (connections drained) and waits for the thread.
    ///
    /// # Errors
    /// What made the server fail, if it did.
    pub fn stop(mut self) -> Result<(), ServerError> {
        self.shut_down()
    }

    fn shut_down(&mut self) -> Result<(), ServerError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.thread.take().map(std::thread::JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(ServerError::Thread(std::io::Error::other("it panicked"))),
            None => Ok(()),
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.shut_down();
    }
}
