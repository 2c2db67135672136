//! Just enough HPACK (RFC 7541) to rewrite a client's header blocks: a decoder that
//! keeps the client's dynamic table, and an encoder that writes literals only (so the
//! server's dynamic table stays empty and never has to mirror the client's).

use std::collections::VecDeque;
use std::sync::OnceLock;

/// One decoded header field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub name: Vec<u8>,
    pub value: Vec<u8>,
    /// Sent as "never indexed" (a sensitive value): re-encoded the same way.
    pub never_indexed: bool,
}

impl Field {
    pub fn new(name: &str, value: &str) -> Field {
        Field {
            name: name.as_bytes().to_vec(),
            value: value.as_bytes().to_vec(),
            never_indexed: false,
        }
    }

    /// The size the dynamic table accounts for an entry (RFC 7541 §4.1).
    fn size(&self) -> usize {
        self.name.len() + self.value.len() + 32
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HpackError {
    #[error("header block ends inside a field")]
    Truncated,
    #[error("integer too large")]
    IntegerOverflow,
    #[error("index {0} is not in the static or dynamic table")]
    BadIndex(usize),
    #[error("invalid Huffman code")]
    BadHuffman,
    #[error("dynamic table size update to {0} exceeds the limit {1}")]
    TableTooLarge(usize, usize),
    #[error("dynamic table size update after the first field")]
    LateSizeUpdate,
    #[error("decoded header list exceeds {0} bytes")]
    ListTooLarge(usize),
}

/// RFC 7541 Appendix A.
const STATIC_TABLE: [(&str, &str); 61] = [
    (":authority", ""),
    (":method", "GET"),
    (":method", "POST"),
    (":path", "/"),
    (":path", "/index.html"),
    (":scheme", "http"),
    (":scheme", "https"),
    (":status", "200"),
    (":status", "204"),
    (":status", "206"),
    (":status", "304"),
    (":status", "400"),
    (":status", "404"),
    (":status", "500"),
    ("accept-charset", ""),
    ("accept-encoding", "gzip, deflate"),
    ("accept-language", ""),
    ("accept-ranges", ""),
    ("accept", ""),
    ("access-control-allow-origin", ""),
    ("age", ""),
    ("allow", ""),
    ("authorization", ""),
    ("cache-control", ""),
    ("content-disposition", ""),
    ("content-encoding", ""),
    ("content-language", ""),
    ("content-length", ""),
    ("content-location", ""),
    ("content-range", ""),
    ("content-type", ""),
    ("cookie", ""),
    ("date", ""),
    ("etag", ""),
    ("expect", ""),
    ("expires", ""),
    ("from", ""),
    ("host", ""),
    ("if-match", ""),
    ("if-modified-since", ""),
    ("if-none-match", ""),
    ("if-range", ""),
    ("if-unmodified-since", ""),
    ("last-modified", ""),
    ("link", ""),
    ("location", ""),
    ("max-forwards", ""),
    ("proxy-authenticate", ""),
    ("proxy-authorization", ""),
    ("range", ""),
    ("referer", ""),
    ("refresh", ""),
    ("retry-after", ""),
    ("server", ""),
    ("set-cookie", ""),
    ("strict-transport-security", ""),
    ("transfer-encoding", ""),
    ("user-agent", ""),
    ("vary", ""),
    ("via", ""),
    ("www-authenticate", ""),
];

/// Decodes header blocks of one connection direction, keeping its dynamic table.
#[derive(Debug)]
pub struct Decoder {
    /// Newest entry first (index 62 is `table[0]`).
    table: VecDeque<Field>,
    size: usize,
    max_size: usize,
    /// The largest table size the peer may ask for (our SETTINGS_HEADER_TABLE_SIZE).
    limit: usize,
    /// The largest decoded header list accepted (sum of entry sizes).
    max_list: usize,
}

impl Decoder {
    pub fn new(limit: usize, max_list: usize) -> Decoder {
        Decoder {
            table: VecDeque::new(),
            size: 0,
            max_size: limit,
            limit,
            max_list,
        }
    }

    pub fn decode(&mut self, mut block: &[u8]) -> Result<Vec<Field>, HpackError> {
        let mut fields = Vec::new();
        let mut list_size = 0usize;
        while let Some(&first) = block.first() {
            let field = if first & 0x80 != 0 {
                // Indexed field.
                let index = read_int(&mut block, 7)?;
                self.get(index)?
            } else if first & 0x40 != 0 {
                // Literal with incremental indexing.
                let field = self.read_literal(&mut block, 6, false)?;
                self.insert(field.clone());
                field
            } else if first & 0x20 != 0 {
                // Dynamic table size update.
                if !fields.is_empty() {
                    return Err(HpackError::LateSizeUpdate);
                }
                let size = read_int(&mut block, 5)?;
                if size > self.limit {
                    return Err(HpackError::TableTooLarge(size, self.limit));
                }
                self.max_size = size;
                self.evict(0);
                continue;
            } else {
                // Literal without indexing (0000) or never indexed (0001).
                self.read_literal(&mut block, 4, first & 0x10 != 0)?
            };
            list_size += field.size();
            if list_size > self.max_list {
                return Err(HpackError::ListTooLarge(self.max_list));
            }
            fields.push(field);
        }
        Ok(fields)
    }

    fn get(&self, index: usize) -> Result<Field, HpackError> {
        match index {
            0 => Err(HpackError::BadIndex(0)),
            1..=61 => {
                let (name, value) = STATIC_TABLE[index - 1];
                Ok(Field::new(name, value))
            }
            _ => self
                .table
                .get(index - 62)
                .map(|f| Field {
                    never_indexed: false,
                    ..f.clone()
                })
                .ok_or(HpackError::BadIndex(index)),
        }
    }

    fn read_literal(
        &self,
        block: &mut &[u8],
        prefix: u8,
        never_indexed: bool,
    ) -> Result<Field, HpackError> {
        let index = read_int(block, prefix)?;
        let name = match index {
            0 => read_string(block)?,
            _ => self.get(index)?.name,
        };
        let value = read_string(block)?;
        Ok(Field {
            name,
            value,
            never_indexed,
        })
    }

    fn insert(&mut self, field: Field) {
        let size = field.size();
        self.evict(size);
        // An entry larger than the table empties it and is not added (§4.4).
        if size <= self.max_size {
            self.size += size;
            self.table.push_front(field);
        }
    }

    /// Evicts the oldest entries until `room` more bytes fit.
    fn evict(&mut self, room: usize) {
        while self.size + room > self.max_size {
            match self.table.pop_back() {
                Some(old) => self.size -= old.size(),
                None => break,
            }
        }
    }
}

/// Appends `field` as a literal that no decoder indexes, with a literal name and raw
/// (not Huffman-coded) strings.
pub fn encode_literal(field: &Field, out: &mut Vec<u8>) {
    out.push(if field.never_indexed { 0x10 } else { 0x00 });
    for s in [&field.name, &field.value] {
        write_int(s.len(), 7, 0x00, out);
        out.extend_from_slice(s);
    }
}

/// Appends an integer with an `prefix`-bit prefix, `flags` in the first byte's high bits.
pub fn write_int(mut n: usize, prefix: u8, flags: u8, out: &mut Vec<u8>) {
    let max = (1usize << prefix) - 1;
    if n < max {
        out.push(flags | n as u8);
        return;
    }
    out.push(flags | max as u8);
    n -= max;
    while n >= 128 {
        out.push((n % 128) as u8 | 0x80);
        n /= 128;
    }
    out.push(n as u8);
}

fn read_int(block: &mut &[u8], prefix: u8) -> Result<usize, HpackError> {
    let (&first, rest) = block.split_first().ok_or(HpackError::Truncated)?;
    *block = rest;
    let max = (1usize << prefix) - 1;
    let mut n = (first as usize) & max;
    if n < max {
        return Ok(n);
    }
    let mut shift = 0u32;
    loop {
        let (&b, rest) = block.split_first().ok_or(HpackError::Truncated)?;
        *block = rest;
        // Nothing in a header block needs more than 2^28.
        if shift > 21 {
            return Err(HpackError::IntegerOverflow);
        }
        n += ((b & 0x7f) as usize) << shift;
        shift += 7;
        if b & 0x80 == 0 {
            return Ok(n);
        }
    }
}

fn read_string(block: &mut &[u8]) -> Result<Vec<u8>, HpackError> {
    let huffman = block.first().ok_or(HpackError::Truncated)? & 0x80 != 0;
    let len = read_int(block, 7)?;
    if block.len() < len {
        return Err(HpackError::Truncated);
    }
    let (raw, rest) = block.split_at(len);
    *block = rest;
    match huffman {
        true => huffman_decode(raw),
        false => Ok(raw.to_vec()),
    }
}

/// Code length of each symbol (0..=255, then EOS = 256) of the canonical Huffman code
/// of RFC 7541 Appendix B; the codes follow from the lengths.
const HUFFMAN_LENGTHS: [u8; 257] = [
    13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, //
    28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28, //
    6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, //
    5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10, //
    13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, //
    7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6, //
    15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5, //
    6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28, //
    20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23, //
    24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24, //
    22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, //
    21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23, //
    26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, //
    19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27, //
    20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23, //
    26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26, //
    30,
];
const EOS: u16 = 256;
const MAX_CODE_LEN: usize = 30;

/// Canonical decoding tables: per code length, the first code and where its symbols
/// start in `symbols` (sorted by length, then value).
struct Canonical {
    first_code: [u32; MAX_CODE_LEN + 1],
    count: [u32; MAX_CODE_LEN + 1],
    offset: [usize; MAX_CODE_LEN + 1],
    symbols: Vec<u16>,
}

fn canonical() -> &'static Canonical {
    static TABLE: OnceLock<Canonical> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut symbols: Vec<u16> = (0..=EOS).collect();
        symbols.sort_by_key(|&s| (HUFFMAN_LENGTHS[s as usize], s));
        let mut count = [0u32; MAX_CODE_LEN + 1];
        for &len in &HUFFMAN_LENGTHS {
            count[len as usize] += 1;
        }
        let mut first_code = [0u32; MAX_CODE_LEN + 1];
        let mut offset = [0usize; MAX_CODE_LEN + 1];
        let (mut code, mut seen) = (0u32, 0usize);
        for len in 1..=MAX_CODE_LEN {
            first_code[len] = code;
            offset[len] = seen;
            code = (code + count[len]) << 1;
            seen += count[len] as usize;
        }
        Canonical {
            first_code,
            count,
            offset,
            symbols,
        }
    })
}

pub fn huffman_decode(src: &[u8]) -> Result<Vec<u8>, HpackError> {
    let t = canonical();
    let mut out = Vec::with_capacity(src.len() * 8 / 5);
    let (mut code, mut len) = (0u32, 0usize);
    let mut all_ones = true;
    for &byte in src {
        for bit in (0..8).rev() {
            let b = (byte >> bit) & 1;
            code = (code << 1) | b as u32;
            all_ones &= b == 1;
            len += 1;
            let index = code.wrapping_sub(t.first_code[len]);
            if index < t.count[len] {
                let symbol = t.symbols[t.offset[len] + index as usize];
                if symbol == EOS {
                    return Err(HpackError::BadHuffman);
                }
                out.push(symbol as u8);
                (code, len, all_ones) = (0, 0, true);
            } else if len == MAX_CODE_LEN {
                return Err(HpackError::BadHuffman);
            }
        }
    }
    // Padding: fewer than 8 bits, all ones (a prefix of EOS).
    if len > 7 || !all_ones {
        return Err(HpackError::BadHuffman);
    }
    Ok(out)
}

/// Huffman-codes `src` (for tests that play clients which compress their strings).
pub fn huffman_encode(src: &[u8]) -> Vec<u8> {
    let t = canonical();
    let mut codes = [0u32; 257];
    for len in 1..=MAX_CODE_LEN {
        for i in 0..t.count[len] {
            codes[t.symbols[t.offset[len] + i as usize] as usize] = t.first_code[len] + i;
        }
    }
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u64, 0u32);
    for &b in src {
        let len = HUFFMAN_LENGTHS[b as usize] as u32;
        acc = (acc << len) | codes[b as usize] as u64;
        bits += len;
        while bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
        acc &= (1u64 << bits) - 1;
    }
    if bits > 0 {
        out.push(((acc << (8 - bits)) | ((1u64 << (8 - bits)) - 1)) as u8);
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Bytes from hex digits, whitespace ignored (test vectors as RFCs print them).
    pub(crate) fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn pairs(fields: &[Field]) -> Vec<(String, String)> {
        fields
            .iter()
            .map(|f| {
                (
                    String::from_utf8(f.name.clone()).unwrap(),
                    String::from_utf8(f.value.clone()).unwrap(),
                )
            })
            .collect()
    }

    fn owned(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    /// RFC 7541 C.4: three requests with Huffman coding on one connection.
    #[test]
    fn rfc7541_c4_requests_with_huffman() {
        let mut d = Decoder::new(4096, 1 << 16);
        let first = d
            .decode(&hex("8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff"))
            .unwrap();
        assert_eq!(
            pairs(&first),
            owned(&[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                (":authority", "www.example.com"),
            ])
        );
        let second = d.decode(&hex("8286 84be 5886 a8eb 1064 9cbf")).unwrap();
        assert_eq!(
            pairs(&second),
            owned(&[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                (":authority", "www.example.com"),
                ("cache-control", "no-cache"),
            ])
        );
        let third = d
            .decode(&hex(
                "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf",
            ))
            .unwrap();
        assert_eq!(
            pairs(&third),
            owned(&[
                (":method", "GET"),
                (":scheme", "https"),
                (":path", "/index.html"),
                (":authority", "www.example.com"),
                ("custom-key", "custom-value"),
            ])
        );
        assert_eq!(d.size, 164);
    }

    /// RFC 7541 C.5: responses with a 256-byte table, so entries get evicted.
    #[test]
    fn rfc7541_c5_eviction() {
        let mut d = Decoder::new(4096, 1 << 16);
        // Size update to 256 first, as an endpoint whose SETTINGS said 256 would see.
        let mut block = vec![];
        write_int(256, 5, 0x20, &mut block);
        block.extend(hex(
            "4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 \
             2032 303a 3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70 \
             6c65 2e63 6f6d",
        ));
        d.decode(&block).unwrap();
        assert_eq!(d.size, 222);
        let second = d.decode(&hex("4803 3330 37c1 c0bf")).unwrap();
        assert_eq!(second[0].value, b"307");
        assert_eq!(second[3].value, b"https://www.example.com");
        assert_eq!(d.size, 222);
        assert_eq!(d.table.len(), 4);
    }

    #[test]
    fn huffman_round_trip_every_byte() {
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(huffman_decode(&huffman_encode(&all)).unwrap(), all);
        assert_eq!(
            huffman_encode(b"www.example.com"),
            hex("f1e3 c2e5 f23a 6ba0 ab90 f4ff")
        );
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        let mut d = Decoder::new(4096, 1 << 16);
        assert_eq!(d.decode(&[0x80]), Err(HpackError::BadIndex(0)));
        assert_eq!(d.decode(&[0xbe]), Err(HpackError::BadIndex(62)));
        assert_eq!(d.decode(&[0x41, 0x05, b'a']), Err(HpackError::Truncated));
        assert!(d.decode(&[0x3f, 0xe1, 0x1f]).is_ok());
        assert_eq!(
            d.decode(&[0x3f, 0xe2, 0x1f]),
            Err(HpackError::TableTooLarge(4097, 4096))
        );
        assert!(matches!(
            d.decode(&[0x3f, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]),
            Err(HpackError::IntegerOverflow)
        ));
        assert!(matches!(
            d.decode(&[0x82, 0x20]),
            Err(HpackError::LateSizeUpdate)
        ));
        // Padding longer than 7 bits, and padding that is not all ones.
        assert_eq!(huffman_decode(&[0xff, 0xff]), Err(HpackError::BadHuffman));
        assert_eq!(huffman_decode(&[0x00]), Err(HpackError::BadHuffman));
        let mut small = Decoder::new(4096, 40);
        assert_eq!(
            small.decode(&[0x82, 0x82]),
            Err(HpackError::ListTooLarge(40))
        );
    }

    #[test]
    fn literals_round_trip_without_touching_the_table() {
        let fields = vec![
            Field::new(":authority", "/var/lib/kubelet/device-plugins/kubelet.sock"),
            Field {
                never_indexed: true,
                ..Field::new("authorization", &"x".repeat(300))
            },
        ];
        let mut block = vec![];
        for f in &fields {
            encode_literal(f, &mut block);
        }
        let mut d = Decoder::new(4096, 1 << 16);
        assert_eq!(d.decode(&block).unwrap(), fields);
        assert!(d.table.is_empty());
    }
}
