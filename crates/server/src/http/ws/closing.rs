//! The WebSocket closing handshake (RFC 6455 §5.5.1, §7), as protocol.md has it: a robot's
//! Close is answered with a Close echoing its code (1000 for one without a code), a code that
//! may not be sent on the wire with 1002, and whatever the server sends last is flushed and the
//! robot's remaining bytes read before the socket goes, so that the robot sees the Close and
//! not a reset.
//!
//! tungstenite answers a Close by itself, but not as the contract wants: an empty Close gets an
//! empty one (the robot sees 1005), 1014 gets 1002, and the reply is only queued, written at the
//! next read or flush (a connection dropped right after the Close never sends it). It also
//! reports the code 1002 in place of a code that may not be sent, and a reason that is not UTF-8
//! as the same error as a text frame that is not. So the server watches the robot's bytes on
//! their way in ([`Watched`]) for the first Close frame and its code, and writes its answer
//! itself on the raw stream.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::{Instant, timeout_at};

pub(super) const NORMAL: u16 = 1000;
pub(super) const PROTOCOL_ERROR: u16 = 1002;

/// Whether a robot may send `code` in a Close frame: 1000–1003, 1007–1014 (assigned by RFC 6455
/// and IANA), 3000–4999 (registered and private). Not 0–999, 1004–1006 (reserved, and 1005 and
/// 1006 mean "no code" and "no Close" locally), 1015 (TLS failure, local), the unassigned
/// 1016–2999, or 5000 and above.
pub(super) fn may_be_sent(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// The first Close frame a robot sent, as its bytes arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct PeerClose {
    /// Its status code; `None` when it had no payload (or a payload of one byte, which is a
    /// protocol error).
    pub(super) code: Option<u16>,
}

impl PeerClose {
    /// The code to answer it with: its own when it may be sent, 1000 for an empty Close, 1002
    /// otherwise.
    pub(super) fn answer(self) -> u16 {
        match self.code {
            None => NORMAL,
            Some(code) if may_be_sent(code) => code,
            Some(_) => PROTOCOL_ERROR,
        }
    }
}

/// A socket whose incoming bytes are watched, on their way to tungstenite, for the robot's
/// first Close frame. Frame headers are followed, payloads skipped: a few bytes of state per
/// connection, nothing buffered.
#[derive(Debug)]
pub(crate) struct Watched<S> {
    inner: S,
    scan: Scan,
}

impl<S> Watched<S> {
    pub(crate) fn new(inner: S) -> Watched<S> {
        Watched {
            inner,
            scan: Scan::default(),
        }
    }

    /// The robot's first Close frame, once all of it arrived.
    pub(super) fn peer_close(&self) -> Option<PeerClose> {
        self.scan.seen
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            this.scan.feed(&buf.filled()[before..]);
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Follows the frames of the robot's byte stream (RFC 6455 §5.2) until the first Close.
#[derive(Debug, Default)]
struct Scan {
    /// The header of the frame under way: at most 2 + 8 (length) + 4 (mask) bytes.
    head: [u8; 14],
    have: u8,
    /// Payload bytes of the current frame still to come.
    left: u64,
    /// The current frame is a Close: its mask and the code bytes seen so far.
    close: Option<CloseScan>,
    seen: Option<PeerClose>,
}

#[derive(Debug, Clone, Copy)]
struct CloseScan {
    mask: [u8; 4],
    len: u64,
    got: u8,
    code: [u8; 2],
}

impl Scan {
    fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() && self.seen.is_none() {
            if self.left > 0 {
                let n =
                    usize::try_from(self.left).map_or(bytes.len(), |left| left.min(bytes.len()));
                if let Some(close) = &mut self.close {
                    for &byte in &bytes[..n] {
                        if usize::from(close.got) < close.code.len() {
                            let at = usize::from(close.got);
                            close.code[at] = byte ^ close.mask[at];
                            close.got += 1;
                        }
                    }
                }
                self.left -= n as u64;
                bytes = &bytes[n..];
                if self.left == 0 {
                    self.frame_ended();
                }
                continue;
            }
            self.head[usize::from(self.have)] = bytes[0];
            self.have += 1;
            bytes = &bytes[1..];
            if self.have < 2 {
                continue;
            }
            let masked = self.head[1] & 0x80 != 0;
            let (extended, len) = match self.head[1] & 0x7f {
                126 => (2, None),
                127 => (8, None),
                short => (0, Some(u64::from(short))),
            };
            let needed = 2 + extended + if masked { 4 } else { 0 };
            if usize::from(self.have) < needed {
                continue;
            }
            let len = len.unwrap_or_else(|| {
                self.head[2..2 + extended]
                    .iter()
                    .fold(0u64, |len, &b| (len << 8) | u64::from(b))
            });
            let mut mask = [0u8; 4];
            if masked {
                mask.copy_from_slice(&self.head[needed - 4..needed]);
            }
            self.have = 0;
            self.close = (self.head[0] & 0x0f == 0x8).then_some(CloseScan {
                mask,
                len,
                got: 0,
                code: [0; 2],
            });
            self.left = len;
            if len == 0 {
                self.frame_ended();
            }
        }
    }

    fn frame_ended(&mut self) {
        if let Some(close) = self.close.take() {
            self.seen = Some(PeerClose {
                code: (close.len >= 2).then(|| u16::from_be_bytes(close.code)),
            });
        }
    }
}

/// Writes a Close frame with `code` on the raw stream (a server's frames are not masked), then
/// ends the connection as [`finish`] does.
pub(super) async fn answer<S>(io: &mut S, code: u16, deadline: Instant)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let [high, low] = code.to_be_bytes();
    let frame = [0x88, 2, high, low];
    let written = timeout_at(deadline, async {
        io.write_all(&frame).await?;
        io.flush().await
    })
    .await;
    if matches!(written, Ok(Ok(()))) {
        finish(io, deadline).await;
    }
}

/// Ends a connection whose last frame was written: the server's side is shut down (the robot
/// reads the end of the stream after the Close), and what the robot still sends is read and
/// dropped until it closes its side or `deadline` passes. Dropping a socket with unread bytes
/// would make the kernel send a reset, and a robot that has not read the Close yet loses it.
pub(super) async fn finish<S>(io: &mut S, deadline: Instant)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let _ = timeout_at(deadline, async {
        if io.shutdown().await.is_err() {
            return;
        }
        // On the heap, and only while closing: every idle connection's task would otherwise
        // reserve it.
        let mut sink = vec![0u8; 4096];
        while let Ok(1..) = io.read(&mut sink).await {}
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masked(first: u8, payload: &[u8]) -> Vec<u8> {
        let key = [0x37, 0xfa, 0x21, 0x3d];
        let mut bytes = vec![first];
        match payload.len() {
            n if n < 126 => bytes.push(0x80 | n as u8),
            n if n < 65_536 => {
                bytes.push(0x80 | 126);
                bytes.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                bytes.push(0x80 | 127);
                bytes.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        bytes.extend_from_slice(&key);
        bytes.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        bytes
    }

    fn close(code: u16, reason: &[u8]) -> Vec<u8> {
        let mut payload = code.to_be_bytes().to_vec();
        payload.extend_from_slice(reason);
        masked(0x88, &payload)
    }

    /// Feeds `stream` in pieces of `step` bytes.
    fn scan(stream: &[u8], step: usize) -> Option<PeerClose> {
        let mut scan = Scan::default();
        for piece in stream.chunks(step) {
            scan.feed(piece);
        }
        scan.seen
    }

    #[test]
    fn the_first_close_is_found_after_frames_of_every_length_in_any_pieces() {
        let mut stream = masked(0x81, b"{\"_event\":\"x\"}");
        stream.extend(masked(0x89, b"ping"));
        stream.extend(masked(0x82, &vec![7u8; 300]));
        stream.extend(masked(0x81, &vec![b'a'; 70_000]));
        stream.extend(close(4001, b"bye"));
        stream.extend(close(1000, b""));
        for step in [1, 2, 3, 7, 64, 1024, stream.len()] {
            assert_eq!(
                scan(&stream, step),
                Some(PeerClose { code: Some(4001) }),
                "step {step}"
            );
        }
    }

    #[test]
    fn empty_and_short_closes() {
        assert_eq!(scan(&masked(0x88, b""), 1), Some(PeerClose { code: None }));
        assert_eq!(scan(&masked(0x88, b"x"), 1), Some(PeerClose { code: None }));
        assert_eq!(scan(&masked(0x81, b"no close"), 3), None);
        // Not yet complete: its code is known only once the frame has arrived.
        let whole = close(1001, b"going");
        assert_eq!(scan(&whole[..whole.len() - 1], 4), None);
    }

    #[test]
    fn answers() {
        let answer = |code| PeerClose { code }.answer();
        assert_eq!(answer(None), 1000);
        for echoed in [
            1000, 1001, 1002, 1003, 1007, 1008, 1009, 1011, 1014, 3000, 4000, 4999,
        ] {
            assert_eq!(answer(Some(echoed)), echoed);
        }
        for refused in [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535] {
            assert_eq!(answer(Some(refused)), 1002, "{refused}");
        }
    }
}
