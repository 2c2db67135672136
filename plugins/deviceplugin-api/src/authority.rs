//! Lets a tonic server answer gRPC clients whose HTTP/2 `:authority` is not an RFC 3986
//! `host[:port]`, as grpc-go servers (the real kubelet, real device plugins) do.
//!
//! Over a Unix socket there is no host, and real clients differ: grpc-go dialling a
//! bare path sends the path (`/var/lib/kubelet/device-plugins/kubelet.sock`), gRPC
//! C-core (grpcio >= 1.57) the percent-encoded path, kubelets >= 1.26 `localhost`, some
//! clients nothing at all. The h2 crate under tonic resets every stream whose
//! authority does not parse (PROTOCOL_ERROR), and offers no switch to relax that.
//!
//! [`AuthorityFix`] wraps the accepted connection and rewrites the client's header
//! blocks before h2 reads them: it decodes each HEADERS(+CONTINUATION) block with the
//! client's HPACK state, replaces an `:authority` that h2 would refuse with
//! `localhost`, and re-encodes the block as literals without indexing (h2's decoder
//! table stays empty, so it never has to mirror the client's). Every other frame, and
//! everything the server writes, passes through untouched.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::transport::server::Connected;

use crate::hpack::{self, Decoder, HpackError};

/// What replaces an authority h2 would refuse (what kubelets >= 1.26 send).
pub const REPLACEMENT: &str = "localhost";

const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADER_LEN: usize = 9;
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
/// Every HTTP/2 endpoint accepts frames of this size (the initial SETTINGS_MAX_FRAME_SIZE).
const MAX_FRAME: usize = 16_384;
/// The server's SETTINGS_HEADER_TABLE_SIZE: tonic servers keep the protocol default.
const HEADER_TABLE_SIZE: usize = 4096;
/// Largest header block (encoded, over all its frames) and header list (decoded)
/// accepted: far above what any device plugin API call carries.
const MAX_BLOCK: usize = 256 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum RewriteError {
    #[error("HTTP/2 header block of stream {stream} is not valid HPACK: {source}")]
    Hpack { stream: u32, source: HpackError },
    #[error("HTTP/2 header block of stream {stream} exceeds {MAX_BLOCK} bytes")]
    BlockTooLarge { stream: u32 },
    #[error("HTTP/2 HEADERS frame of stream {stream} has invalid padding or priority")]
    BadHeadersFrame { stream: u32 },
    #[error(
        "HTTP/2 header block of stream {stream} is interrupted by a frame of type {kind} on stream {other}"
    )]
    Interrupted { stream: u32, kind: u8, other: u32 },
}

/// A header block being collected (HEADERS, then CONTINUATIONs until END_HEADERS).
#[derive(Debug)]
struct Block {
    stream: u32,
    end_stream: bool,
    priority: Option<[u8; 5]>,
    fragment: Vec<u8>,
}

#[derive(Debug)]
enum State {
    /// The client connection preface, `n` bytes of it seen.
    Preface(usize),
    /// A frame header, `n` bytes of it in `head`.
    FrameHeader(usize),
    /// Forwarding the rest of a frame's payload unchanged.
    Pass(usize),
    /// Collecting the payload of a HEADERS/CONTINUATION frame.
    Collect {
        kind: u8,
        flags: u8,
        stream: u32,
        len: usize,
        payload: Vec<u8>,
    },
    /// Not HTTP/2 with prior knowledge: left to h2 to refuse.
    Verbatim,
}

/// The client-to-server byte stream rewriter (sans I/O).
#[derive(Debug)]
pub struct Rewriter {
    state: State,
    head: [u8; FRAME_HEADER_LEN],
    /// A HEADERS frame without END_HEADERS: its CONTINUATIONs must follow.
    open: Option<Block>,
    decoder: Decoder,
}

impl Default for Rewriter {
    fn default() -> Self {
        Rewriter {
            state: State::Preface(0),
            head: [0; FRAME_HEADER_LEN],
            open: None,
            decoder: Decoder::new(HEADER_TABLE_SIZE, MAX_BLOCK),
        }
    }
}

impl Rewriter {
    /// Consumes client bytes, appending what the server is to read to `out`.
    pub fn push(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> Result<(), RewriteError> {
        while !input.is_empty() {
            match &mut self.state {
                State::Verbatim => {
                    out.extend_from_slice(input);
                    return Ok(());
                }
                State::Preface(seen) => {
                    let n = (PREFACE.len() - *seen).min(input.len());
                    let matches = input[..n] == PREFACE[*seen..*seen + n];
                    out.extend_from_slice(&input[..n]);
                    input = &input[n..];
                    *seen += n;
                    self.state = match (matches, *seen == PREFACE.len()) {
                        (false, _) => State::Verbatim,
                        (true, true) => State::FrameHeader(0),
                        (true, false) => continue,
                    };
                }
                State::FrameHeader(have) => {
                    let n = (FRAME_HEADER_LEN - *have).min(input.len());
                    self.head[*have..*have + n].copy_from_slice(&input[..n]);
                    input = &input[n..];
                    *have += n;
                    if *have == FRAME_HEADER_LEN {
                        self.state = self.frame_started(out)?;
                    }
                }
                State::Pass(left) => {
                    let n = (*left).min(input.len());
                    out.extend_from_slice(&input[..n]);
                    input = &input[n..];
                    *left -= n;
                    if *left == 0 {
                        self.state = State::FrameHeader(0);
                    }
                }
                State::Collect {
                    kind,
                    flags,
                    stream,
                    len,
                    payload,
                } => {
                    let n = (*len - payload.len()).min(input.len());
                    payload.extend_from_slice(&input[..n]);
                    input = &input[n..];
                    if payload.len() == *len {
                        let (kind, flags, stream) = (*kind, *flags, *stream);
                        let payload = std::mem::take(payload);
                        self.state = State::FrameHeader(0);
                        self.frame_complete(kind, flags, stream, payload, out)?;
                    }
                }
            }
        }
        // A zero-length HEADERS/CONTINUATION frame has no payload bytes to wait for.
        if let State::Collect {
            kind,
            flags,
            stream,
            len: 0,
            ..
        } = self.state
        {
            self.state = State::FrameHeader(0);
            self.frame_complete(kind, flags, stream, Vec::new(), out)?;
        }
        Ok(())
    }

    fn frame_started(&mut self, out: &mut Vec<u8>) -> Result<State, RewriteError> {
        let h = self.head;
        let len = u32::from_be_bytes([0, h[0], h[1], h[2]]) as usize;
        let (kind, flags) = (h[3], h[4]);
        let stream = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
        if let Some(open) = &self.open
            && (kind != CONTINUATION || stream != open.stream)
        {
            return Err(RewriteError::Interrupted {
                stream: open.stream,
                kind,
                other: stream,
            });
        }
        let collect = kind == HEADERS || (kind == CONTINUATION && self.open.is_some());
        if !collect {
            // Other frames (and a stray CONTINUATION, which h2 refuses) pass as they are.
            out.extend_from_slice(&h);
            return Ok(match len {
                0 => State::FrameHeader(0),
                _ => State::Pass(len),
            });
        }
        let collected = self.open.as_ref().map_or(0, |b| b.fragment.len());
        if collected + len > MAX_BLOCK {
            return Err(RewriteError::BlockTooLarge { stream });
        }
        Ok(State::Collect {
            kind,
            flags,
            stream,
            len,
            payload: Vec::with_capacity(len),
        })
    }

    fn frame_complete(
        &mut self,
        kind: u8,
        flags: u8,
        stream: u32,
        payload: Vec<u8>,
        out: &mut Vec<u8>,
    ) -> Result<(), RewriteError> {
        let mut block = match (kind, self.open.take()) {
            (CONTINUATION, Some(mut block)) => {
                block.fragment.extend_from_slice(&payload);
                block
            }
            _ => headers_frame(flags, stream, payload)?,
        };
        if flags & END_HEADERS == 0 {
            self.open = Some(block);
            return Ok(());
        }
        let stream = block.stream;
        let mut fields = self
            .decoder
            .decode(&block.fragment)
            .map_err(|source| RewriteError::Hpack { stream, source })?;
        for field in fields.iter_mut().filter(|f| f.name == b":authority") {
            if http::uri::Authority::try_from(field.value.as_slice()).is_err() {
                field.value = REPLACEMENT.as_bytes().to_vec();
            }
        }
        block.fragment.clear();
        for field in &fields {
            hpack::encode_literal(field, &mut block.fragment);
        }
        write_header_frames(&block, out);
        Ok(())
    }
}

/// The header block fragment of a HEADERS frame, without padding and priority.
fn headers_frame(flags: u8, stream: u32, payload: Vec<u8>) -> Result<Block, RewriteError> {
    let bad = || RewriteError::BadHeadersFrame { stream };
    let mut body = payload.as_slice();
    if flags & PADDED != 0 {
        let (&pad, rest) = body.split_first().ok_or_else(bad)?;
        body = rest
            .len()
            .checked_sub(pad as usize)
            .map(|end| &rest[..end])
            .ok_or_else(bad)?;
    }
    let mut priority = None;
    if flags & PRIORITY != 0 {
        let (p, rest) = body.split_first_chunk::<5>().ok_or_else(bad)?;
        priority = Some(*p);
        body = rest;
    }
    Ok(Block {
        stream,
        end_stream: flags & END_STREAM != 0,
        priority,
        fragment: body.to_vec(),
    })
}

/// One HEADERS frame, plus CONTINUATIONs when the block does not fit.
fn write_header_frames(block: &Block, out: &mut Vec<u8>) {
    let mut rest = block.fragment.as_slice();
    let mut first = true;
    loop {
        let prefix = match (first, &block.priority) {
            (true, Some(p)) => &p[..],
            _ => &[][..],
        };
        let take = rest.len().min(MAX_FRAME - prefix.len());
        let (chunk, tail) = rest.split_at(take);
        rest = tail;
        let mut flags = 0;
        if first {
            if block.end_stream {
                flags |= END_STREAM;
            }
            if block.priority.is_some() {
                flags |= PRIORITY;
            }
        }
        if rest.is_empty() {
            flags |= END_HEADERS;
        }
        let len = (prefix.len() + chunk.len()) as u32;
        out.extend_from_slice(&len.to_be_bytes()[1..]);
        out.push(if first { HEADERS } else { CONTINUATION });
        out.push(flags);
        out.extend_from_slice(&block.stream.to_be_bytes());
        out.extend_from_slice(prefix);
        out.extend_from_slice(chunk);
        first = false;
        if rest.is_empty() {
            return;
        }
    }
}

/// A server-side connection whose client header blocks pass through a [`Rewriter`].
#[derive(Debug)]
pub struct AuthorityFix<IO> {
    io: IO,
    rewriter: Rewriter,
    out: Vec<u8>,
    out_pos: usize,
    scratch: Box<[u8]>,
    eof: bool,
}

impl<IO> AuthorityFix<IO> {
    pub fn new(io: IO) -> AuthorityFix<IO> {
        AuthorityFix {
            io,
            rewriter: Rewriter::default(),
            out: Vec::new(),
            out_pos: 0,
            scratch: vec![0; MAX_FRAME].into_boxed_slice(),
            eof: false,
        }
    }

    pub fn get_ref(&self) -> &IO {
        &self.io
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for AuthorityFix<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.out_pos < this.out.len() {
                let n = buf.remaining().min(this.out.len() - this.out_pos);
                buf.put_slice(&this.out[this.out_pos..this.out_pos + n]);
                this.out_pos += n;
                if this.out_pos == this.out.len() {
                    this.out.clear();
                    this.out_pos = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            let mut read = ReadBuf::new(&mut this.scratch);
            ready!(Pin::new(&mut this.io).poll_read(cx, &mut read))?;
            if read.filled().is_empty() {
                this.eof = true;
                continue;
            }
            this.rewriter
                .push(read.filled(), &mut this.out)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for AuthorityFix<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

impl<IO: Connected> Connected for AuthorityFix<IO> {
    type ConnectInfo = IO::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hpack::{Field, huffman_encode, write_int};

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut f = (payload.len() as u32).to_be_bytes()[1..].to_vec();
        f.extend([kind, flags]);
        f.extend(stream.to_be_bytes());
        f.extend(payload);
        f
    }

    /// `:authority` as grpc-go writes a new value: literal with incremental indexing,
    /// name index 1, Huffman-coded when shorter.
    fn authority_literal(value: &str) -> Vec<u8> {
        let mut out = vec![];
        write_int(1, 6, 0x40, &mut out);
        let h = huffman_encode(value.as_bytes());
        if h.len() < value.len() {
            write_int(h.len(), 7, 0x80, &mut out);
            out.extend(h);
        } else {
            write_int(value.len(), 7, 0, &mut out);
            out.extend(value.as_bytes());
        }
        out
    }

    /// Splits the server-side byte stream back into (type, flags, stream, fields).
    fn server_view(bytes: &[u8]) -> Vec<(u8, u8, u32, Vec<Field>)> {
        assert_eq!(&bytes[..24], PREFACE);
        let mut rest = &bytes[24..];
        let mut d = Decoder::new(4096, 1 << 20);
        let mut out = vec![];
        while !rest.is_empty() {
            let len = u32::from_be_bytes([0, rest[0], rest[1], rest[2]]) as usize;
            let (kind, flags) = (rest[3], rest[4]);
            let stream = u32::from_be_bytes(rest[5..9].try_into().unwrap());
            let payload = &rest[9..9 + len];
            let fields = match kind {
                HEADERS | CONTINUATION => d.decode(payload).unwrap(),
                _ => vec![],
            };
            out.push((kind, flags, stream, fields));
            rest = &rest[9 + len..];
        }
        out
    }

    fn run(input: &[u8], chunk: usize) -> Vec<u8> {
        let mut r = Rewriter::default();
        let mut out = vec![];
        for piece in input.chunks(chunk) {
            r.push(piece, &mut out).unwrap();
        }
        out
    }

    fn authority_of(fields: &[Field]) -> String {
        let f = fields.iter().find(|f| f.name == b":authority").unwrap();
        String::from_utf8(f.value.clone()).unwrap()
    }

    #[test]
    fn refused_authorities_become_localhost_and_good_ones_stay() {
        for (sent, seen) in [
            ("/var/lib/kubelet/device-plugins/kubelet.sock", "localhost"),
            (
                "%2Fvar%2Flib%2Fkubelet%2Fdevice-plugins%2Fkubelet.sock",
                "localhost",
            ),
            ("", "localhost"),
            ("localhost", "localhost"),
            ("example.com:8080", "example.com:8080"),
        ] {
            let mut input = PREFACE.to_vec();
            input.extend(frame(0x4, 0, 0, &[]));
            let mut block = vec![0x83, 0x86];
            block.extend(authority_literal(sent));
            block.push(0x84);
            input.extend(frame(HEADERS, END_HEADERS, 1, &block));
            input.extend(frame(0x0, END_STREAM, 1, b"\0\0\0\0\0"));
            for chunk in [1, 7, 4096] {
                let view = server_view(&run(&input, chunk));
                assert_eq!(view.len(), 3, "{sent:?}");
                assert_eq!(view[0].0, 0x4);
                assert_eq!(authority_of(&view[1].3), seen, "{sent:?}");
                assert_eq!(view[2].0, 0x0);
            }
        }
    }

    #[test]
    fn indexed_authority_of_a_later_request_is_rewritten_too() {
        let path = "/var/lib/kubelet/device-plugins/kubelet.sock";
        let mut input = PREFACE.to_vec();
        let mut first = vec![0x83, 0x86];
        first.extend(authority_literal(path));
        first.push(0x84);
        input.extend(frame(HEADERS, END_HEADERS, 1, &first));
        // The second request refers to the client's table entry (index 62).
        input.extend(frame(
            HEADERS,
            END_HEADERS | END_STREAM,
            3,
            &[0x83, 0x86, 0xbe, 0x84],
        ));
        let view = server_view(&run(&input, 3));
        assert_eq!(authority_of(&view[0].3), "localhost");
        assert_eq!(authority_of(&view[1].3), "localhost");
        assert_eq!(view[1].1, END_HEADERS | END_STREAM);
    }

    #[test]
    fn continuation_padding_and_priority_are_folded_into_one_block() {
        let mut block = vec![0x83, 0x86];
        block.extend(authority_literal("/run/x.sock"));
        block.push(0x84);
        let (a, b) = block.split_at(3);
        let mut headers = vec![2u8]; // pad length
        headers.extend([0, 0, 0, 0, 16]); // priority
        headers.extend(a);
        headers.extend([0, 0]);
        let mut input = PREFACE.to_vec();
        input.extend(frame(HEADERS, PADDED | PRIORITY | END_STREAM, 5, &headers));
        input.extend(frame(CONTINUATION, 0, 5, &b[..1]));
        input.extend(frame(CONTINUATION, END_HEADERS, 5, &b[1..]));
        let out = run(&input, 2);
        let view = server_view_with_priority(&out);
        assert_eq!(view.0, PRIORITY | END_STREAM | END_HEADERS);
        assert_eq!(authority_of(&view.1), "localhost");
    }

    fn server_view_with_priority(bytes: &[u8]) -> (u8, Vec<Field>) {
        let rest = &bytes[24..];
        let len = u32::from_be_bytes([0, rest[0], rest[1], rest[2]]) as usize;
        assert_eq!(rest.len(), 9 + len, "one frame");
        let mut d = Decoder::new(4096, 1 << 20);
        (rest[4], d.decode(&rest[9 + 5..9 + len]).unwrap())
    }

    #[test]
    fn large_blocks_are_split_into_continuations() {
        let mut block = vec![0x83, 0x86];
        block.extend(authority_literal("/a.sock"));
        for i in 0..12 {
            hpack::encode_literal(
                &Field::new(&format!("x-big-{i}"), &"v".repeat(3000)),
                &mut block,
            );
        }
        let mut input = PREFACE.to_vec();
        input.extend(frame(HEADERS, END_HEADERS, 1, &block));
        let out = run(&input, 1000);
        let mut rest = &out[24..];
        let (mut kinds, mut joined) = (vec![], vec![]);
        while !rest.is_empty() {
            let len = u32::from_be_bytes([0, rest[0], rest[1], rest[2]]) as usize;
            assert!(len <= MAX_FRAME);
            kinds.push((rest[3], rest[4]));
            joined.extend_from_slice(&rest[9..9 + len]);
            rest = &rest[9 + len..];
        }
        assert_eq!(
            kinds,
            vec![(HEADERS, 0), (CONTINUATION, 0), (CONTINUATION, END_HEADERS)]
        );
        let fields = Decoder::new(4096, 1 << 20).decode(&joined).unwrap();
        assert_eq!(fields.len(), 15);
        assert_eq!(authority_of(&fields), "localhost");
    }

    #[test]
    fn broken_input_fails_the_connection() {
        let mut input = PREFACE.to_vec();
        input.extend(frame(HEADERS, 0, 1, &[0x83]));
        input.extend(frame(0x0, 0, 1, b"x"));
        let mut r = Rewriter::default();
        assert!(matches!(
            r.push(&input, &mut vec![]),
            Err(RewriteError::Interrupted { .. })
        ));
        let mut input = PREFACE.to_vec();
        input.extend(frame(HEADERS, END_HEADERS, 1, &[0xbe]));
        assert!(matches!(
            Rewriter::default().push(&input, &mut vec![]),
            Err(RewriteError::Hpack { .. })
        ));
        let mut input = PREFACE.to_vec();
        input.extend(frame(HEADERS, END_HEADERS | PADDED, 1, &[9, 0x83]));
        assert!(matches!(
            Rewriter::default().push(&input, &mut vec![]),
            Err(RewriteError::BadHeadersFrame { .. })
        ));
        let mut input = PREFACE.to_vec();
        input.extend(&frame(HEADERS, 0, 1, &[])[..9]);
        input[24..27].copy_from_slice(&[0x10, 0, 0]);
        assert!(matches!(
            Rewriter::default().push(&input, &mut vec![]),
            Err(RewriteError::BlockTooLarge { .. })
        ));
    }

    #[test]
    fn not_http2_passes_verbatim() {
        let input = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(run(input, 5), input);
    }
}
