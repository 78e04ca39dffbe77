//! Accepting TLS connections for tonic: TCP accept, then each handshake on its own task (a
//! slow or silent client cannot hold up the others), bounded by a deadline.
//!
//! The stream yields `tokio_rustls::server::TlsStream<TcpStream>`, for which tonic implements
//! `Connected`: `Request::remote_addr()` is the peer's address and `Request::peer_certs()` its
//! certificate chain, as over plain TCP.

use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;

use super::ServerTls;

/// How long a client may take to complete its handshake.
const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(10);
/// Handshaken connections waiting for the server to take them.
const QUEUE: usize = 64;

impl ServerTls {
    /// The TLS connections made on `listener` (with `TCP_NODELAY`), each handshaken with the
    /// configuration current when it was accepted. Accepting stops when the stream is dropped.
    pub fn incoming(
        &self,
        listener: TcpListener,
    ) -> impl tokio_stream::Stream<Item = std::io::Result<TlsStream<TcpStream>>> + use<> {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(accept(listener, self.clone(), tx));
        ReceiverStream::new(rx)
    }
}

type Sender = mpsc::Sender<std::io::Result<TlsStream<TcpStream>>>;

async fn accept(listener: TcpListener, tls: ServerTls, tx: Sender) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = tx.closed() => return,
        };
        match accepted {
            Ok((tcp, peer)) => {
                if let Err(error) = tcp.set_nodelay(true) {
                    tracing::debug!(%error, "cannot set TCP_NODELAY");
                }
                tokio::spawn(handshake(tls.acceptor(), tcp, peer, tx.clone()));
            }
            Err(error) => {
                // Out of file descriptors and the like: wait a little rather than spin.
                tracing::warn!(%error, "cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn handshake(
    acceptor: tokio_rustls::TlsAcceptor,
    tcp: TcpStream,
    peer: std::net::SocketAddr,
    tx: Sender,
) {
    match tokio::time::timeout(HANDSHAKE_DEADLINE, acceptor.accept(tcp)).await {
        Ok(Ok(stream)) => {
            let _ = tx.send(Ok(stream)).await;
        }
        // A refused client certificate, a client that does not speak TLS, a scanner: the
        // client is told by the alert; here it is only worth a debug line.
        Ok(Err(error)) => tracing::debug!(%peer, %error, "TLS handshake failed"),
        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
    }
}
