//! A UDP socket for quinn through plain `sendto`/`recvfrom`: one datagram
//! per call, no segmentation offloads, no ECN, no packet info.
//!
//! quinn's own socket (quinn-udp) sets the offloads and ancillary-data
//! options up front and refuses to start if the network stack declines one.
//! Wine 8's Winsock does: it answers quinn-udp's
//! `getsockopt(IPPROTO_IPV6, IPV6_V6ONLY)` on an IPv4 socket with
//! STATUS_NOT_SUPPORTED (WSAEOPNOTSUPP, OS error 10045), which Windows
//! itself answers. A stack like that still sends and receives datagrams, so
//! the client falls back to this rather than not connecting. Hand-written:
//! quinn ships only its offloading socket, and this is the trait's smallest
//! honest implementation.

use std::fmt;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use quinn::udp::{RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, UdpPoller};

/// The socket, registered with the tokio runtime it was made on.
pub(super) struct PlainUdp {
    io: Arc<tokio::net::UdpSocket>,
}

impl PlainUdp {
    /// Takes over `socket` (bound; made non-blocking here). Call within a
    /// tokio runtime.
    pub(super) fn new(socket: std::net::UdpSocket) -> io::Result<Self> {
        socket.set_nonblocking(true)?;
        Ok(Self {
            io: Arc::new(tokio::net::UdpSocket::from_std(socket)?),
        })
    }
}

impl fmt::Debug for PlainUdp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PlainUdp")
            .field("local", &self.io.local_addr().ok())
            .finish()
    }
}

/// Wakes quinn when the socket can take another datagram.
#[derive(Debug)]
struct Writable(Arc<tokio::net::UdpSocket>);

impl UdpPoller for Writable {
    fn poll_writable(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.0.poll_send_ready(cx)
    }
}

impl AsyncUdpSocket for PlainUdp {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        Box::pin(Writable(self.io.clone()))
    }

    fn try_send(&self, transmit: &Transmit<'_>) -> io::Result<()> {
        // `max_transmit_segments` is 1, so quinn hands one datagram at a
        // time; a segmented transmit is still sent datagram by datagram.
        let size = transmit
            .segment_size
            .unwrap_or(transmit.contents.len())
            .max(1);
        for datagram in transmit.contents.chunks(size) {
            self.io.try_send_to(datagram, transmit.destination)?;
        }
        Ok(())
    }

    fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        let (Some(buf), Some(slot)) = (bufs.first_mut(), meta.first_mut()) else {
            return Poll::Ready(Ok(0));
        };
        loop {
            ready!(self.io.poll_recv_ready(cx))?;
            match self.io.try_recv_from(buf) {
                Ok((len, addr)) => {
                    *slot = RecvMeta {
                        addr,
                        len,
                        stride: len,
                        ecn: None,
                        dst_ip: None,
                    };
                    return Poll::Ready(Ok(1));
                }
                // Readiness was stale: wait again.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.local_addr()
    }
}
