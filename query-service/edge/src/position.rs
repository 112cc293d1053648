//! Position tokens: what `X-Position` says and `X-Min-Position` reads.
//!
//! The global position of the event store counts every event of every
//! tenant; shown as a number, two writes a minute apart would tell a tenant
//! how busy all the others were. On the wire a position is therefore an
//! opaque token, `p1.` and 24 lowercase hex digits:
//!
//! - 16 digits are the position under a keyed pseudo-random permutation of
//!   the u64s (a 4-round Feistel network over two 32-bit halves whose round
//!   function is HMAC-SHA256 of the round number and the half);
//! - 8 digits are a tag, HMAC-SHA256 of those 8 bytes, so that a token the
//!   server did not write is refused (400) rather than read as some
//!   position the read models would never reach.
//!
//! The key is 32 bytes, from the settings or from `<data_dir>/position.key`
//! (made on first start): never in the event log. Changing it invalidates
//! the tokens clients hold (a read sending one gets a 400), nothing else.

use std::fmt;
use std::io::Write;
use std::path::Path;

use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

use crate::error::ApiError;

type HmacSha256 = Hmac<Sha256>;

/// What every token starts with (the version of the scheme).
pub const PREFIX: &str = "p1.";
/// The length of every token.
pub const TOKEN_LEN: usize = PREFIX.len() + 2 * (8 + TAG_LEN);
const TAG_LEN: usize = 4;
const ROUNDS: u8 = 4;
/// Domain separation of the two uses of the key.
const ROUND_DOMAIN: u8 = b'F';
const TAG_DOMAIN: u8 = b'T';

/// The header a write answers with.
pub const HEADER: &str = "X-Position";
/// The header a read may send to wait for a position.
pub const MIN_HEADER: &str = "X-Min-Position";

/// A token that this server did not write (or wrote under another key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidToken;

impl fmt::Display for InvalidToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "X-Min-Position must be a token from an X-Position header of this server (p1. and 24 hex digits)."
        )
    }
}

impl From<InvalidToken> for ApiError {
    fn from(e: InvalidToken) -> Self {
        ApiError::BadRequest(e.to_string())
    }
}

/// The secret that turns positions into tokens and back. Its `Debug` shows
/// nothing of it.
#[derive(Clone)]
pub struct PositionKey {
    mac: HmacSha256,
}

impl fmt::Debug for PositionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PositionKey(..)")
    }
}

impl PositionKey {
    pub fn new(key: [u8; 32]) -> Self {
        Self {
            mac: <HmacSha256 as Mac>::new_from_slice(&key).expect("HMAC takes keys of any length"),
        }
    }

    /// A key written as 64 hex digits (surrounding white space ignored).
    pub fn from_hex(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let mut key = [0u8; 32];
        if text.len() != 64 || hex::decode_to_slice(text, &mut key).is_err() {
            return Err("a position key is 64 hex digits (32 bytes)".into());
        }
        Ok(Self::new(key))
    }

    fn keyed(&self, domain: u8, data: &[u8]) -> HmacSha256 {
        let mut mac = self.mac.clone();
        mac.update(&[domain]);
        mac.update(data);
        mac
    }

    fn round(&self, round: u8, half: u32) -> u32 {
        let mut input = [0u8; 5];
        input[0] = round;
        input[1..].copy_from_slice(&half.to_be_bytes());
        let out = self.keyed(ROUND_DOMAIN, &input).finalize().into_bytes();
        u32::from_be_bytes([out[0], out[1], out[2], out[3]])
    }

    fn permute(&self, position: u64) -> u64 {
        let (mut left, mut right) = ((position >> 32) as u32, position as u32);
        for round in 0..ROUNDS {
            (left, right) = (right, left ^ self.round(round, right));
        }
        (u64::from(left) << 32) | u64::from(right)
    }

    fn unpermute(&self, value: u64) -> u64 {
        let (mut left, mut right) = ((value >> 32) as u32, value as u32);
        for round in (0..ROUNDS).rev() {
            (left, right) = (right ^ self.round(round, left), left);
        }
        (u64::from(left) << 32) | u64::from(right)
    }

    /// The token of `position`: the same position always has the same token
    /// under one key.
    pub fn encode(&self, position: u64) -> String {
        let body = self.permute(position).to_be_bytes();
        let tag = self.keyed(TAG_DOMAIN, &body).finalize().into_bytes();
        let mut bytes = [0u8; 8 + TAG_LEN];
        bytes[..8].copy_from_slice(&body);
        bytes[8..].copy_from_slice(&tag[..TAG_LEN]);
        let mut token = String::with_capacity(TOKEN_LEN);
        token.push_str(PREFIX);
        token.push_str(&hex::encode(bytes));
        token
    }

    /// The position of a token this key wrote; anything else is refused.
    pub fn decode(&self, token: &str) -> Result<u64, InvalidToken> {
        let digits = token
            .strip_prefix(PREFIX)
            .filter(|d| d.len() == 2 * (8 + TAG_LEN))
            .filter(|d| d.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
            .ok_or(InvalidToken)?;
        let mut bytes = [0u8; 8 + TAG_LEN];
        hex::decode_to_slice(digits, &mut bytes).map_err(|_| InvalidToken)?;
        let (body, tag) = bytes.split_at(8);
        self.keyed(TAG_DOMAIN, body)
            .verify_truncated_left(tag)
            .map_err(|_| InvalidToken)?;
        let mut value = [0u8; 8];
        value.copy_from_slice(body);
        Ok(self.unpermute(u64::from_be_bytes(value)))
    }

    /// The `X-Position` header of an answer at `position`: the one way a
    /// position goes out.
    pub fn header(&self, position: u64) -> (&'static str, String) {
        (HEADER, self.encode(position))
    }
}

/// Reads the key of `path` (64 hex digits), or makes one: 32 random bytes,
/// written as hex to a file only its owner may read. Several servers
/// starting on one folder at once agree on one key (the file appears whole,
/// by a hard link, or not at all).
pub fn load_or_create_key(path: &Path) -> std::io::Result<PositionKey> {
    match std::fs::read_to_string(path) {
        Ok(text) => return key_of_file(path, &text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut key = [0u8; 32];
    rand::rng().fill_bytes(&mut key);
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut nonce = [0u8; 8];
    rand::rng().fill_bytes(&mut nonce);
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "position.key".into());
    let temporary = dir.join(format!(".{file_name}.{}.tmp", hex::encode(nonce)));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let written = options.open(&temporary).and_then(|mut file| {
        file.write_all(format!("{}\n", hex::encode(key)).as_bytes())?;
        file.sync_all()
    });
    let linked = written.and_then(|()| std::fs::hard_link(&temporary, path));
    let _ = std::fs::remove_file(&temporary);
    match linked {
        Ok(()) => {
            if let Ok(dir) = std::fs::File::open(dir) {
                let _ = dir.sync_all();
            }
            Ok(PositionKey::new(key))
        }
        // Another server made it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            key_of_file(path, &std::fs::read_to_string(path)?)
        }
        Err(e) => Err(e),
    }
}

fn key_of_file(path: &Path, text: &str) -> std::io::Result<PositionKey> {
    PositionKey::from_hex(text).map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{}: {e}", path.display()),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> PositionKey {
        PositionKey::new([byte; 32])
    }

    /// A small deterministic generator (splitmix64), so that failures
    /// reproduce.
    fn values(n: usize) -> impl Iterator<Item = u64> {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        (0..n).map(move |_| {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        })
    }

    #[test]
    fn tokens_round_trip_and_have_one_length() {
        let k = key(7);
        let edges = [
            0,
            1,
            2,
            41,
            u32::MAX as u64,
            1 << 32,
            u64::MAX - 1,
            u64::MAX,
        ];
        for p in edges.into_iter().chain(values(2000)) {
            let token = k.encode(p);
            assert_eq!(token.len(), TOKEN_LEN, "{token}");
            assert!(token.starts_with("p1."), "{token}");
            assert_eq!(k.decode(&token), Ok(p), "{token}");
        }
    }

    #[test]
    fn the_permutation_is_one_to_one_and_hides_order() {
        let k = key(3);
        let tokens: std::collections::HashSet<String> = (0..5000).map(|p| k.encode(p)).collect();
        assert_eq!(tokens.len(), 5000, "two positions share a token");
        // Consecutive positions do not give close or ordered tokens.
        let bodies: Vec<u64> = (0..64).map(|p| k.permute(p)).collect();
        let ascending = bodies.windows(2).filter(|w| w[0] < w[1]).count();
        assert!((16..=48).contains(&ascending), "{ascending} of 63 ascend");
        for w in bodies.windows(2) {
            let differing = (w[0] ^ w[1]).count_ones();
            assert!(differing >= 12, "{:016x} then {:016x}", w[0], w[1]);
        }
    }

    #[test]
    fn different_keys_give_different_tokens_and_refuse_each_others() {
        let (a, b) = (key(1), key(2));
        for p in values(200) {
            let token = a.encode(p);
            assert_ne!(token, b.encode(p));
            assert_eq!(b.decode(&token), Err(InvalidToken), "{token}");
        }
    }

    #[test]
    fn tampered_tokens_are_refused() {
        let k = key(9);
        for p in values(100) {
            let token = k.encode(p);
            // Every digit changed to every other digit.
            for i in PREFIX.len()..token.len() {
                for d in "0123456789abcdef".chars() {
                    let mut forged: Vec<char> = token.chars().collect();
                    if forged[i] == d {
                        continue;
                    }
                    forged[i] = d;
                    let forged: String = forged.into_iter().collect();
                    assert_eq!(k.decode(&forged), Err(InvalidToken), "{forged}");
                }
            }
        }
    }

    #[test]
    fn malformed_tokens_are_refused() {
        let k = key(5);
        let good = k.encode(12);
        for bad in [
            String::new(),
            "12".into(),
            "p1.".into(),
            good.to_uppercase(),
            good.replacen("p1.", "p2.", 1),
            format!("{good}0"),
            good[..good.len() - 1].to_owned(),
            format!(" {good}"),
            good.replace('a', "g"),
            format!("p1.{}", "0".repeat(24)),
            format!("p1.{}", "é".repeat(12)),
        ] {
            if bad == good {
                continue;
            }
            assert_eq!(k.decode(&bad), Err(InvalidToken), "{bad:?}");
        }
    }

    #[test]
    fn keys_are_64_hex_digits_and_do_not_show_in_debug() {
        let k = PositionKey::from_hex(&"ab".repeat(32)).unwrap();
        assert_eq!(k.decode(&key(0xab).encode(99)), Ok(99));
        assert!(PositionKey::from_hex(&"ab".repeat(31)).is_err());
        assert!(PositionKey::from_hex(&"zz".repeat(32)).is_err());
        assert_eq!(format!("{k:?}"), "PositionKey(..)");
    }

    #[test]
    fn the_key_file_is_made_once_private_and_then_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("position.key");
        let first = load_or_create_key(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.trim().len(), 64);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");
        }
        let again = load_or_create_key(&path).unwrap();
        assert_eq!(again.decode(&first.encode(5)), Ok(5));
        // Nothing else was left in the folder.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        std::fs::write(&path, "not a key").unwrap();
        assert!(load_or_create_key(&path).is_err());
    }

    #[test]
    fn servers_starting_together_agree_on_one_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("position.key");
        let keys: Vec<PositionKey> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| s.spawn(|| load_or_create_key(&path).unwrap()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let token = keys[0].encode(77);
        for k in &keys {
            assert_eq!(k.decode(&token), Ok(77));
        }
    }
}
