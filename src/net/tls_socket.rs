//! TLS on the server port (`httpServer.options.ssl`) with the handshake off the shard: the
//! shard reads and writes the socket, and each batch of handshake bytes is handed with the
//! rustls connection to `cpu_pool`, where the public-key work (the certificate's signature, the
//! key exchange) runs; a flood of handshakes then takes what the shards leave instead of
//! delaying other clients' messages (issue 28, defect 6). Once the handshake is done the
//! record layer (symmetric, cheap) runs on the shard: `TlsSocket` is the stream.

use super::cpu_pool;
use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use glommio::net::TcpStream;
use rustls::{ServerConfig, ServerConnection};
use std::io::{ErrorKind, Read, Write};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

/// The most TLS bytes read for one handshake step: a ClientHello fits (about 2 KiB with a
/// post-quantum key share); a larger flight takes several steps (rustls keeps a partial record).
/// Each handshake in progress holds this and rustls's state, and a shard has at most
/// `limits.handshakesPerShard` of them.
const STEP_READ: usize = 4 * 1024;

/// A TLS connection whose handshake is done.
pub struct TlsSocket {
    tcp: TcpStream,
    conn: Box<ServerConnection>,
    /// The peer closed its side.
    eof: bool,
    close_sent: bool,
}

/// The handshake, all of it by `deadline`; `None` if the peer left, broke the protocol, was
/// too slow, or the CPU pool refused the work.
pub async fn accept(
    config: Arc<ServerConfig>,
    mut tcp: TcpStream,
    deadline: Instant,
) -> Option<TlsSocket> {
    let mut conn = Box::new(ServerConnection::new(config).ok()?);
    let mut input = vec![0u8; STEP_READ];
    let within = |deadline: Instant| deadline.saturating_duration_since(Instant::now());
    while conn.is_handshaking() {
        let read = async { tcp.read(&mut input).await.ok().filter(|n| *n > 0) };
        let n = by(within(deadline), read).await??;
        let bytes = input.get(..n)?.to_vec();
        let (back, output, result) =
            by(within(deadline), cpu_pool::run(move || step(conn, &bytes))).await??;
        conn = back;
        if !output.is_empty() {
            by(within(deadline), async {
                tcp.write_all(&output).await.ok()
            })
            .await??;
        }
        result.ok()?;
    }
    Some(TlsSocket {
        tcp,
        conn,
        eof: false,
        close_sent: false,
    })
}

/// `work` if it finishes within `left`.
async fn by<T>(left: std::time::Duration, work: impl std::future::Future<Output = T>) -> Option<T> {
    let late = async {
        glommio::timer::sleep(left).await;
        None
    };
    futures_lite::future::or(async { Some(work.await) }, late).await
}

/// One handshake step, on a CPU thread: the bytes in, what must go out (an alert too when the
/// peer broke the protocol).
fn step(
    mut conn: Box<ServerConnection>,
    mut input: &[u8],
) -> (Box<ServerConnection>, Vec<u8>, Result<(), rustls::Error>) {
    let mut output = Vec::new();
    let mut result = Ok(());
    while !input.is_empty() {
        match conn.read_tls(&mut input) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                result = Err(rustls::Error::General(e.to_string()));
                break;
            }
        }
        if let Err(e) = conn.process_new_packets() {
            result = Err(e);
            break;
        }
    }
    while conn.wants_write() {
        if conn.write_tls(&mut output).is_err() {
            break;
        }
    }
    (conn, output, result)
}

/// The socket as `std::io` for rustls: not ready is `WouldBlock`, with the waker registered.
struct SyncIo<'a, 'b> {
    tcp: &'a mut TcpStream,
    cx: &'a mut Context<'b>,
}

impl Read for SyncIo<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match Pin::new(&mut *self.tcp).poll_read(self.cx, buf) {
            Poll::Ready(result) => result,
            Poll::Pending => Err(ErrorKind::WouldBlock.into()),
        }
    }
}

impl Write for SyncIo<'_, '_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match Pin::new(&mut *self.tcp).poll_write(self.cx, buf) {
            Poll::Ready(result) => result,
            Poll::Pending => Err(ErrorKind::WouldBlock.into()),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl TlsSocket {
    /// Sends the TLS records rustls holds; `Pending` (waker registered) while the socket is full.
    fn poll_send_records(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        while self.conn.wants_write() {
            let mut io = SyncIo {
                tcp: &mut self.tcp,
                cx,
            };
            match self.conn.write_tls(&mut io) {
                Ok(0) => return Poll::Ready(Err(ErrorKind::WriteZero.into())),
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Poll::Pending,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for TlsSocket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        loop {
            match this.conn.reader().read(buf) {
                Ok(n) => return Poll::Ready(Ok(n)),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                // The peer closed without close_notify: an end like any other here.
                Err(e) if e.kind() == ErrorKind::UnexpectedEof => return Poll::Ready(Ok(0)),
                Err(e) => return Poll::Ready(Err(e)),
            }
            if this.eof {
                return Poll::Ready(Ok(0));
            }
            let mut io = SyncIo {
                tcp: &mut this.tcp,
                cx,
            };
            match this.conn.read_tls(&mut io) {
                Ok(0) => this.eof = true,
                Ok(_) => {
                    if let Err(e) = this.conn.process_new_packets() {
                        // The alert rustls queued, if the socket takes it.
                        let _ = this.poll_send_records(cx);
                        return Poll::Ready(Err(std::io::Error::new(ErrorKind::InvalidData, e)));
                    }
                    // Answers rustls owes (a key update's), when the socket takes them.
                    if let Poll::Ready(Err(e)) = this.poll_send_records(cx) {
                        return Poll::Ready(Err(e));
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Poll::Pending,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for TlsSocket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        // rustls takes what fits its buffer; when nothing fits, its records go out first.
        for _ in 0..2 {
            let taken = this.conn.writer().write(buf)?;
            if taken > 0 {
                if let Poll::Ready(Err(e)) = this.poll_send_records(cx) {
                    return Poll::Ready(Err(e));
                }
                return Poll::Ready(Ok(taken));
            }
            match this.poll_send_records(cx) {
                Poll::Ready(Ok(())) => {}
                other => return other.map(|r| r.map(|()| 0)),
            }
        }
        Poll::Ready(Err(ErrorKind::WriteZero.into()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        match this.poll_send_records(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut this.tcp).poll_flush(cx),
            other => other,
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if !this.close_sent {
            this.conn.send_close_notify();
            this.close_sent = true;
        }
        match this.poll_send_records(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut this.tcp).poll_close(cx),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    use rustls::sign::{CertifiedKey, Signer, SigningKey, SingleCertAndKey};
    use rustls::{SignatureAlgorithm, SignatureScheme};
    use std::sync::Mutex;
    use std::thread::ThreadId;

    type Seen = Arc<Mutex<Vec<ThreadId>>>;

    /// The server's key, noting the thread of every signature it makes.
    #[derive(Debug)]
    struct SpyKey(Arc<dyn SigningKey>, Seen);

    #[derive(Debug)]
    struct SpySigner(Box<dyn Signer>, Seen);

    impl SigningKey for SpyKey {
        fn choose_scheme(&self, offered: &[SignatureScheme]) -> Option<Box<dyn Signer>> {
            let signer = self.0.choose_scheme(offered)?;
            Some(Box::new(SpySigner(signer, self.1.clone())))
        }

        fn algorithm(&self) -> SignatureAlgorithm {
            self.0.algorithm()
        }
    }

    impl Signer for SpySigner {
        fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rustls::Error> {
            if let Ok(mut seen) = self.1.lock() {
                seen.push(std::thread::current().id());
            }
            self.0.sign(message)
        }

        fn scheme(&self) -> SignatureScheme {
            self.0.scheme()
        }
    }

    /// Issue 28, defect 6: the handshake's public-key work ran on the shard and delayed its
    /// other clients. The certificate's signature is now made on another thread, and the
    /// connection then carries data both ways on the shard.
    #[test]
    fn the_handshake_signs_off_the_shard_and_the_stream_carries_data() {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let cert = rcgen::CertificateParams::new(vec!["localhost".into()])
            .expect("params")
            .self_signed(&key)
            .expect("cert");
        let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let signing =
            rustls::crypto::aws_lc_rs::sign::any_supported_type(&der).expect("signing key");
        let seen: Seen = Arc::default();
        let spy = Arc::new(SpyKey(signing, seen.clone()));
        let certified = CertifiedKey::new(vec![cert.der().clone()], spy);
        let provider = Arc::new(crate::tls::provider());
        let server = Arc::new(
            ServerConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .expect("versions")
                .with_no_client_auth()
                .with_cert_resolver(Arc::new(SingleCertAndKey::from(certified))),
        );
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert.der().clone()).expect("root");
        let client = Arc::new(
            rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .expect("versions")
                .with_root_certificates(roots)
                .with_no_client_auth(),
        );
        let shard_thread = glommio::LocalExecutorBuilder::default()
            .spawn(move || async move {
                let listener = glommio::net::TcpListener::bind("127.0.0.1:0").expect("bind");
                let port = listener.local_addr().expect("addr").port();
                let peer = std::thread::spawn(move || {
                    let tcp = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
                    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
                    let conn = rustls::ClientConnection::new(client, name).expect("client");
                    let mut tls = rustls::StreamOwned::new(conn, tcp);
                    tls.write_all(b"ping").expect("write");
                    let mut answer = [0u8; 4];
                    tls.read_exact(&mut answer).expect("read");
                    answer
                });
                let tcp = listener.accept().await.expect("accept");
                let deadline = Instant::now() + std::time::Duration::from_secs(10);
                let mut tls = accept(server, tcp, deadline).await.expect("handshake");
                let mut ping = [0u8; 4];
                tls.read_exact(&mut ping).await.expect("read");
                assert_eq!(&ping, b"ping");
                tls.write_all(b"pong").await.expect("write");
                tls.flush().await.expect("flush");
                assert_eq!(&peer.join().expect("peer"), b"pong");
                std::thread::current().id()
            })
            .expect("executor")
            .join()
            .expect("join");
        let seen = seen.lock().expect("lock").clone();
        assert!(!seen.is_empty(), "the server signed nothing");
        assert!(
            !seen.contains(&shard_thread),
            "the signature was made on the shard's thread"
        );
    }
}
