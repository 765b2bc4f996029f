//! HTTPS for the tests: a test CA's certificates (`tls/`, made once with
//! `openssl`; see its README) and an echo server behind TLS that accepts
//! only clients with a certificate that CA signed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The test CA's certificate (PEM).
pub const CA_PEM: &str = include_str!("../tls/ca.pem");
/// A client certificate the test CA signed (PEM), and its key (PKCS#8).
pub const CLIENT_PEM: &str = include_str!("../tls/client.pem");
/// The client certificate's private key (PEM).
pub const CLIENT_KEY: &str = include_str!("../tls/client.key");
const SERVER_PEM: &str = include_str!("../tls/server.pem");
const SERVER_KEY: &str = include_str!("../tls/server.key");

/// Starts [`crate::sidecar::start_echo_app`]'s app on `https://127.0.0.1`
/// with the test CA's server certificate, answering only clients that
/// show a certificate the test CA signed (a handshake without one fails).
/// Stops when the sender is dropped or sent to.
pub async fn start_mtls_echo_app() -> (SocketAddr, oneshot::Sender<()>) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(CA_PEM.as_bytes()).expect("the test CA"))
        .expect("the test CA as a root");
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .expect("a client verifier");
    let chain = vec![
        CertificateDer::from_pem_slice(SERVER_PEM.as_bytes()).expect("the server certificate"),
    ];
    let key = PrivateKeyDer::from_pem_slice(SERVER_KEY.as_bytes()).expect("the server key");
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .expect("a server configuration");
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let tls = TlsListener {
        listener,
        acceptor: TlsAcceptor::from(Arc::new(config)),
    };
    (address, crate::sidecar::serve_echo(tls))
}

/// Connections that finished a TLS handshake (the others are dropped).
struct TlsListener {
    listener: TcpListener,
    acceptor: TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((tcp, peer)) = self.listener.accept().await else {
                continue;
            };
            let handshake = self.acceptor.accept(tcp);
            if let Ok(Ok(tls)) = tokio::time::timeout(Duration::from_secs(5), handshake).await {
                return (tls, peer);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.listener.local_addr()
    }
}
