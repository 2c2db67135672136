//! SHA-256 of the manifests secnet fetches, so a cached or downloaded file is
//! checked against a pin or against what its first fetch recorded. The digest is
//! ring's (already linked for kube's TLS).

/// The lowercase hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, data);
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Is `s` a SHA-256 in hex (what a pin or a `.sha256` file must hold)?
pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_answers() {
        // FIPS 180-4 examples (one and two blocks) and the empty message.
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            sha256_hex(b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
        );
    }

    /// Every length around the block and padding boundaries agrees with coreutils.
    #[test]
    fn agrees_with_sha256sum() {
        let Some(_) = crate::prereq::find_program("sha256sum") else {
            panic!("sha256sum (coreutils) is missing: apt-get install coreutils");
        };
        let data: Vec<u8> = (0..300u32).map(|i| (i * 7 + 3) as u8).collect();
        let dir = crate::lab::ScratchDir::new("secnet-sha256-test").unwrap();
        for len in [1, 55, 56, 63, 64, 65, 119, 120, 128, 300] {
            let path = dir.path().join(format!("d{len}"));
            std::fs::write(&path, &data[..len]).unwrap();
            let out = crate::lab::command::run(
                "sha256sum",
                &[path.to_str().unwrap()],
                std::time::Duration::from_secs(10),
            )
            .unwrap();
            let theirs = out.split_whitespace().next().unwrap();
            assert_eq!(sha256_hex(&data[..len]), theirs, "length {len}");
        }
    }

    #[test]
    fn recognises_hex_digests() {
        assert!(is_sha256_hex(&sha256_hex(b"x")));
        assert!(!is_sha256_hex("abc"));
        assert!(!is_sha256_hex(&sha256_hex(b"x").to_uppercase()));
    }
}
