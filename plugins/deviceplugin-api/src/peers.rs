//! Real gRPC peers on the wire, for interop tests without their toolchains: the exact
//! HTTP/2 bytes grpc-go and gRPC C-core (grpcio) clients write for one unary call
//! over a Unix socket, and a reader of the server's answer.
//!
//! The encodings were taken from captures of the real clients (upstream macvtap-cni's
//! device plugin, grpc-go 1.79, registering; grpcio 1.85 / C-core 58 calling
//! GetDevicePluginOptions and Register); the tests pin the builders to those captures
//! byte for byte.

use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use crate::hpack::{Decoder, huffman_encode, write_int};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Which gRPC implementation writes the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Client {
    /// grpc-go (device plugins, kubelets): HPACK with indexing and Huffman coding.
    GrpcGo,
    /// gRPC C-core, as in grpcio: literal names, raw strings.
    CCore,
}

/// The `:authority` a client sends over a Unix socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Authority {
    /// The bare socket path (older grpc-go dialling a path, grpc-java).
    SocketPath,
    /// The path percent-encoded, leading slash included: grpc-go 1.79 dialling a bare
    /// path (upstream macvtap-cni's device plugin registering).
    EscapedPath,
    /// The path percent-encoded without its leading slash: gRPC C-core 58 (grpcio 1.85).
    EscapedRelative,
    /// Kubernetes >= 1.26's kubelet.
    Localhost,
    /// No value.
    Empty,
}

impl Authority {
    pub const ALL: [Authority; 5] = [
        Authority::SocketPath,
        Authority::EscapedPath,
        Authority::EscapedRelative,
        Authority::Localhost,
        Authority::Empty,
    ];

    /// The value sent for a connection to `socket`.
    pub fn value(self, socket: &Path) -> String {
        let path = socket.display().to_string();
        match self {
            Authority::SocketPath => path,
            Authority::EscapedPath => escape(&path),
            Authority::EscapedRelative => escape(path.trim_start_matches('/')),
            Authority::Localhost => "localhost".to_string(),
            Authority::Empty => String::new(),
        }
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut f = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    f.extend([kind, flags]);
    f.extend(stream.to_be_bytes());
    f.extend(payload);
    f
}

/// A gRPC length-prefixed message (uncompressed).
fn grpc_message(message: &[u8]) -> Vec<u8> {
    let mut m = vec![0];
    m.extend((message.len() as u32).to_be_bytes());
    m.extend(message);
    m
}

/// A string as Go's HPACK encoder writes it: Huffman-coded when that is shorter.
fn go_string(s: &str, out: &mut Vec<u8>) {
    let h = huffman_encode(s.as_bytes());
    if h.len() < s.len() {
        write_int(h.len(), 7, 0x80, out);
        out.extend(h);
    } else {
        write_int(s.len(), 7, 0, out);
        out.extend(s.as_bytes());
    }
}

/// A field as Go's HPACK encoder writes it into a fresh table: the full match in the
/// static table when there is one, else a literal with incremental indexing and the
/// (last) static name index, else a literal name.
fn go_field(static_name: Option<u8>, name: &str, value: &str, out: &mut Vec<u8>) {
    match static_name {
        Some(index) => write_int(index as usize, 6, 0x40, out),
        None => {
            out.push(0x40);
            go_string(name, out);
        }
    }
    go_string(value, out);
}

/// A literal with incremental indexing, literal name, raw strings (C-core).
fn core_field(name: &str, value: &str, out: &mut Vec<u8>) {
    out.push(0x40);
    for s in [name, value] {
        write_int(s.len(), 7, 0, out);
        out.extend(s.as_bytes());
    }
}

/// The bytes `client` writes on a new connection for one unary call of `method`
/// (`/package.Service/Method`) with `authority` and the protobuf `message`.
pub fn request(client: Client, method: &str, authority: &str, message: &[u8]) -> Vec<u8> {
    let mut out = PREFACE.to_vec();
    let mut block = Vec::new();
    match client {
        Client::GrpcGo => {
            out.extend(frame(0x4, 0, 0, &[]));
            out.extend(frame(0x4, 0x1, 0, &[]));
            block.extend([0x83, 0x86]); // :method POST, :scheme http
            go_field(Some(5), ":path", method, &mut block);
            match authority {
                "" => block.push(0x81), // static entry 1 is (:authority, "")
                a => go_field(Some(1), ":authority", a, &mut block),
            }
            go_field(Some(31), "content-type", "application/grpc", &mut block);
            go_field(Some(58), "user-agent", "grpc-go/1.79.3", &mut block);
            go_field(None, "te", "trailers", &mut block);
            out.extend(frame(0x1, 0x4, 1, &block));
            out.extend(frame(0x0, 0x1, 1, &grpc_message(message)));
        }
        Client::CCore => {
            let settings: [u8; 36] = [
                0x00, 0x02, 0, 0, 0, 0, 0x00, 0x03, 0, 0, 0, 0, 0x00, 0x04, 0, 0x40, 0, 0, 0x00,
                0x05, 0, 0x40, 0, 0, 0x00, 0x06, 0, 0, 0x40, 0, 0xfe, 0x03, 0, 0, 0, 1,
            ];
            out.extend(frame(0x4, 0, 0, &settings));
            out.extend(frame(0x8, 0, 0, &[0x00, 0x3f, 0x00, 0x01]));
            out.extend(frame(0x4, 0x1, 0, &[]));
            core_field(":path", method, &mut block);
            core_field(":authority", authority, &mut block);
            block.extend([0x83, 0x86]);
            core_field("content-type", "application/grpc", &mut block);
            core_field("te", "trailers", &mut block);
            core_field(
                "grpc-accept-encoding",
                "identity, deflate, gzip",
                &mut block,
            );
            core_field("grpc-timeout", "5S", &mut block);
            core_field(
                "user-agent",
                "grpc-python/1.85.3 grpc-c/58.0.0 (linux; chttp2)",
                &mut block,
            );
            out.extend(frame(0x1, 0x4, 1, &block));
            out.extend(frame(0x8, 0, 1, &[0, 0, 0, 5]));
            out.extend(frame(0x0, 0x1, 1, &grpc_message(message)));
            out.extend(frame(0x8, 0, 0, &[0, 0, 0, 5]));
        }
    }
    out
}

/// What the server answered on stream 1.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Answer {
    /// `:status` of the response headers.
    pub status: String,
    /// `grpc-status` of the trailers (or of trailers-only headers).
    pub grpc_status: Option<String>,
    pub grpc_message: Option<String>,
    /// The response message, without the gRPC length prefix.
    pub message: Vec<u8>,
}

/// Writes `request` to the server at `socket` and reads its answer to stream 1: an
/// error names an RST_STREAM or GOAWAY code, or a connection the server closed.
pub async fn call(socket: &Path, request: &[u8], timeout: Duration) -> Result<Answer, String> {
    tokio::time::timeout(timeout, call_inner(socket, request))
        .await
        .map_err(|_| format!("no answer from {} within {timeout:?}", socket.display()))?
}

async fn call_inner(socket: &Path, request: &[u8]) -> Result<Answer, String> {
    let mut conn = UnixStream::connect(socket)
        .await
        .map_err(|e| format!("failed to connect to {}: {e}", socket.display()))?;
    conn.write_all(request)
        .await
        .map_err(|e| format!("failed to write the request: {e}"))?;
    let mut decoder = Decoder::new(4096, 1 << 20);
    let mut answer = Answer::default();
    let mut data = Vec::new();
    let mut block = Vec::new();
    loop {
        let mut head = [0u8; 9];
        conn.read_exact(&mut head)
            .await
            .map_err(|e| format!("server closed the connection: {e}"))?;
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let (kind, flags) = (head[3], head[4]);
        let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        let mut payload = vec![0; len];
        conn.read_exact(&mut payload)
            .await
            .map_err(|e| format!("server closed the connection: {e}"))?;
        match kind {
            0x0 if stream == 1 => data.extend(payload),
            0x1 | 0x9 if stream == 1 => {
                block.extend(payload);
                if flags & 0x4 == 0 {
                    continue;
                }
                for f in decoder.decode(&block).map_err(|e| e.to_string())? {
                    let value = String::from_utf8_lossy(&f.value).into_owned();
                    match f.name.as_slice() {
                        b":status" => answer.status = value,
                        b"grpc-status" => answer.grpc_status = Some(value),
                        b"grpc-message" => answer.grpc_message = Some(value),
                        _ => {}
                    }
                }
                block.clear();
                if flags & 0x1 != 0 {
                    answer.message = data.get(5..).unwrap_or_default().to_vec();
                    return Ok(answer);
                }
            }
            0x3 if stream == 1 => {
                return Err(format!(
                    "server reset the stream: RST_STREAM code {}",
                    u32::from_be_bytes(payload[..4].try_into().unwrap_or_default())
                ));
            }
            0x7 => {
                return Err(format!(
                    "server closed the connection: GOAWAY code {}",
                    u32::from_be_bytes(payload[4..8].try_into().unwrap_or_default())
                ));
            }
            // Other frames (SETTINGS, PING, WINDOW_UPDATE) need no answer for one call.
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hpack::tests::hex;

    /// RegisterRequest{v1beta1, macvtap.network.kubevirt.io_dataplane,
    /// macvtap.network.kubevirt.io/dataplane, options {}}.
    const REGISTER: &str = "0a07763162657461311225 6d6163767461702e6e6574776f726b2e6b756265766972742e696f5f64617461706c616e65 1a25 6d6163767461702e6e6574776f726b2e6b756265766972742e696f2f64617461706c616e65 2200";

    /// Upstream macvtap-cni's device plugin (grpc-go 1.79.3) registering with
    /// `/var/lib/kubelet/device-plugins/kubelet.sock`, as captured.
    const GRPC_GO_REGISTER: &str = "
        505249202a20485454502f322e300d0a0d0a534d0d0a0d0a
        000000040000000000 000000040100000000
        000067010400000001
        8386459563b8632a4615f6966321360d263d4c6d2cc6424b6741a754587b8ec545868346a8b0f5b632d054
        aa2c3217b98855aba2d98d5215161eb6c65a0a95d072755f8b1d75d0620d263d4c4d65647a8b9acac8b4c7
        602bbafaecff40027465864d833505b11f
        00005e000100000001 0000000059
        0a077631626574613112256d6163767461702e6e6574776f726b2e6b756265766972742e696f5f64617461
        706c616e651a256d6163767461702e6e6574776f726b2e6b756265766972742e696f2f64617461706c616e
        652200";

    /// grpcio 1.85.3 (C-core 58) calling Register on `unix:///tmp/dpcap/core2.sock`,
    /// as captured.
    const C_CORE_REGISTER: &str = "
        505249202a20485454502f322e300d0a0d0a534d0d0a0d0a
        000024040000000000 000200000000000300000000000400400000000500400000000600004000fe0300000001
        000004080000000000 003f0001
        000000040100000000
        0000f5010400000001
        40053a706174681e2f763162657461312e526567697374726174696f6e2f5265676973746572400a3a617574
        686f7269747918746d702532466470636170253246636f7265322e736f636b8386400c636f6e74656e742d74
        797065106170706c69636174696f6e2f677270634002746508747261696c6572734014677270632d61636365
        70742d656e636f64696e67176964656e746974792c206465666c6174652c20677a6970400c677270632d7469
        6d656f7574023553400a757365722d6167656e7430677270632d707974686f6e2f312e38352e3320677270632d
        632f35382e302e3020286c696e75783b2063687474703229
        000004080000000001 00000005
        00005e000100000001 0000000059
        0a077631626574613112256d6163767461702e6e6574776f726b2e6b756265766972742e696f5f64617461
        706c616e651a256d6163767461702e6e6574776f726b2e6b756265766972742e696f2f64617461706c616e
        652200
        000004080000000000 00000005";

    #[test]
    fn grpc_go_request_is_the_captured_one() {
        let built = request(
            Client::GrpcGo,
            "/v1beta1.Registration/Register",
            &Authority::EscapedPath.value(
                Path::new(crate::DEFAULT_PLUGIN_DIR)
                    .join(crate::KUBELET_SOCKET)
                    .as_path(),
            ),
            &hex(REGISTER),
        );
        assert_eq!(built, hex(GRPC_GO_REGISTER));
    }

    #[test]
    fn c_core_request_is_the_captured_one() {
        let socket = Path::new("/tmp/dpcap/core2.sock");
        let built = request(
            Client::CCore,
            "/v1beta1.Registration/Register",
            &Authority::EscapedRelative.value(socket),
            &hex(REGISTER),
        );
        assert_eq!(built, hex(C_CORE_REGISTER));
    }
}
