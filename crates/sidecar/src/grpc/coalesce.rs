//! A TCP stream for the gRPC listener that sends what the HTTP/2 server
//! writes in one turn of its connection task as one segment. (The
//! sidecar benchmark's HTTP/2 client, `examples/invoke_load.rs`, uses it
//! too.)
//!
//! A unary gRPC answer is three HTTP/2 frames: HEADERS, DATA and the
//! trailers (`grpc-status`). `h2` writes a DATA frame of 256 bytes or more
//! straight from its buffer, flushes, and only then encodes the frames
//! behind it, so the trailers went out in a second `write` of their own: an
//! extra system call here, and an extra wake-up and `read` in the client,
//! which cannot finish the call before the trailers come. (An HTTP/1.1
//! answer, or an HTTP/2 one without trailers, is one write.)
//!
//! [`CoalescingStream`] keeps what is written in a buffer and puts off the
//! first flush of a turn: it asks for its task to be polled again and
//! answers the flush as done. The bytes go to the socket at the next flush
//! in the same turn, or at the first read, write, flush or shutdown of the
//! next turn (the wake-up guarantees one), or, if the connection is dropped
//! in between, in a last non-blocking write. Netty's
//! `FlushConsolidationHandler` does the same for the same reason.
//!
//! Nothing waits on a timer: the longest the bytes stay here is until the
//! server's connection task runs again, which it does at once.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tonic::transport::server::{Connected, TcpConnectInfo};

/// Past this many buffered bytes a write first sends what is buffered, so
/// that a large answer streams instead of piling up here.
const MAX_BUFFERED: usize = 64 << 10;

/// A [`TcpStream`] whose writes are gathered until the connection task's
/// next turn, or its second flush in a turn (see the module docs).
pub struct CoalescingStream {
    tcp: TcpStream,
    /// Written by the server, not yet sent; `buffer[sent..]` is left.
    buffer: Vec<u8>,
    sent: usize,
    /// A flush was answered as done without sending `buffer`.
    flush_put_off: bool,
}

impl CoalescingStream {
    pub fn new(tcp: TcpStream) -> Self {
        Self {
            tcp,
            buffer: Vec::new(),
            sent: 0,
            flush_put_off: false,
        }
    }

    fn buffered(&self) -> usize {
        self.buffer.len() - self.sent
    }

    /// Sends the whole buffer to the socket.
    fn poll_send_buffer(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.buffer.len() {
            let n = ready!(Pin::new(&mut self.tcp).poll_write(cx, &self.buffer[self.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        self.buffer.clear();
        self.sent = 0;
        self.flush_put_off = false;
        Poll::Ready(Ok(()))
    }

    /// Makes room for `len` more bytes: sends the buffer first if they
    /// would take it past [`MAX_BUFFERED`]. Ready(false) means `len` is too
    /// large to buffer at all.
    fn poll_room_for(&mut self, cx: &mut Context<'_>, len: usize) -> Poll<io::Result<bool>> {
        if self.buffered() + len > MAX_BUFFERED {
            ready!(self.poll_send_buffer(cx))?;
        }
        Poll::Ready(Ok(len <= MAX_BUFFERED))
    }
}

impl AsyncRead for CoalescingStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // A new turn: what was put off goes now. A full socket does not
        // stop the read; the next write or flush tries again.
        if this.buffered() > 0
            && let Poll::Ready(Err(err)) = this.poll_send_buffer(cx)
        {
            return Poll::Ready(Err(err));
        }
        Pin::new(&mut this.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for CoalescingStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if !ready!(this.poll_room_for(cx, buf.len()))? {
            return Pin::new(&mut this.tcp).poll_write(cx, buf);
        }
        this.buffer.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let len = bufs.iter().map(|b| b.len()).sum();
        if !ready!(this.poll_room_for(cx, len))? {
            return Pin::new(&mut this.tcp).poll_write_vectored(cx, bufs);
        }
        for buf in bufs {
            this.buffer.extend_from_slice(buf);
        }
        Poll::Ready(Ok(len))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.buffered() > 0 && !this.flush_put_off {
            // The task runs again at once; this turn may still add frames.
            this.flush_put_off = true;
            cx.waker().wake_by_ref();
            return Poll::Ready(Ok(()));
        }
        ready!(this.poll_send_buffer(cx))?;
        Pin::new(&mut this.tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_send_buffer(cx))?;
        Pin::new(&mut this.tcp).poll_shutdown(cx)
    }
}

impl Drop for CoalescingStream {
    /// A connection dropped between turns still sends what it was told
    /// was flushed, as far as the socket takes it without blocking.
    fn drop(&mut self) {
        if self.buffered() > 0 {
            let _ = self.tcp.try_write(&self.buffer[self.sent..]);
        }
    }
}

impl Connected for CoalescingStream {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.tcp.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Wake, Waker};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// Counts the wake-ups a put-off flush asks for.
    struct CountWakes(AtomicUsize);

    impl Wake for CountWakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// A coalescing server end and the plain client end of one connection.
    async fn connected() -> (CoalescingStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let client = TcpStream::connect(listener.local_addr().expect("addr"))
            .await
            .expect("connect");
        let (server, _) = listener.accept().await.expect("accept");
        (CoalescingStream::new(server), client)
    }

    fn expect_ready<T>(poll: Poll<io::Result<T>>) -> T {
        match poll {
            Poll::Ready(result) => result.expect("io"),
            Poll::Pending => panic!("a socket with room pended"),
        }
    }

    /// Reads until `len` bytes came.
    async fn read_exactly(client: &mut TcpStream, len: usize) -> Vec<u8> {
        let mut got = vec![0; len];
        client.read_exact(&mut got).await.expect("read");
        got
    }

    #[tokio::test]
    async fn the_first_flush_of_a_turn_is_put_off_until_the_second() {
        let (mut server, mut client) = connected().await;
        let wakes = Arc::new(CountWakes(AtomicUsize::new(0)));
        let waker = Waker::from(wakes.clone());
        let mut cx = Context::from_waker(&waker);
        let mut server = Pin::new(&mut server);

        let head = [io::IoSlice::new(b"headers+"), io::IoSlice::new(b"data+")];
        assert_eq!(
            expect_ready(server.as_mut().poll_write_vectored(&mut cx, &head)),
            13
        );
        expect_ready(server.as_mut().poll_flush(&mut cx));
        // Answered, not sent, and the task asked to run again.
        assert_eq!(server.buffered(), 13);
        assert_eq!(wakes.0.load(Ordering::SeqCst), 1);

        expect_ready(server.as_mut().poll_write(&mut cx, b"trailers"));
        expect_ready(server.as_mut().poll_flush(&mut cx));
        assert_eq!(server.buffered(), 0);
        assert_eq!(wakes.0.load(Ordering::SeqCst), 1);
        assert_eq!(
            read_exactly(&mut client, 21).await,
            b"headers+data+trailers"
        );
    }

    #[tokio::test]
    async fn a_put_off_flush_goes_out_at_the_next_turns_read() {
        let (mut server, mut client) = connected().await;
        server.write_all(b"settings").await.expect("write");
        // The one flush of this turn is put off...
        server.flush().await.expect("flush");
        assert_eq!(server.buffered(), 8);
        // ...and the next turn starts with a read, as the server's does.
        client.write_all(b"ping").await.expect("write");
        let mut got = [0; 4];
        server.read_exact(&mut got).await.expect("read");
        assert_eq!(server.buffered(), 0);
        assert_eq!(read_exactly(&mut client, 8).await, b"settings");
    }

    #[tokio::test]
    async fn shutdown_and_drop_send_what_is_buffered() {
        let (mut server, mut client) = connected().await;
        server.write_all(b"goaway").await.expect("write");
        server.flush().await.expect("flush");
        server.shutdown().await.expect("shutdown");
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.expect("read");
        assert_eq!(got, b"goaway");

        let (mut server, mut client) = connected().await;
        server.write_all(b"last words").await.expect("write");
        server.flush().await.expect("flush");
        drop(server);
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.expect("read");
        assert_eq!(got, b"last words");
    }

    #[tokio::test]
    async fn a_large_answer_is_not_held_back() {
        let (mut server, mut client) = connected().await;
        server.write_all(b"head").await.expect("write");
        let body = vec![7u8; MAX_BUFFERED + 1];
        // Sent without a flush: what was buffered first, then the body
        // (as much of it as the socket took) straight through.
        let taken = std::future::poll_fn(|cx| Pin::new(&mut server).poll_write(cx, &body))
            .await
            .expect("write");
        assert_eq!(server.buffered(), 0);
        let got = read_exactly(&mut client, 4 + taken).await;
        assert_eq!(&got[..4], b"head");
        assert_eq!(&got[4..], &body[..taken]);
    }
}
