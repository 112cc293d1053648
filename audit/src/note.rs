//! Signed notes (<https://c2sp.org/signed-note>) and transparency log
//! checkpoints (<https://c2sp.org/tlog-checkpoint>), with Ed25519 keys.
//!
//! A checkpoint is the signed statement "the log called *origin* had *size*
//! entries and this Merkle root":
//!
//! ```text
//! example.com/log
//! 20852163
//! CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=
//!
//! — example.com/log Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=
//! ```
//!
//! * The body (the note *text*): the origin line, the tree size in decimal
//!   (no leading zeros), the root in standard padded base64, each ending in
//!   a newline, then optional non-empty extension lines.
//! * A blank line.
//! * One or more signature lines: em dash (U+2014), space, key name, space,
//!   `base64(key id ‖ signature)`, newline. The Ed25519 signature is over
//!   the body exactly, final newline included.
//! * The key id of an Ed25519 key is the first 4 bytes, big-endian, of
//!   `SHA-256(key name ‖ 0x0A ‖ 0x01 ‖ 32-byte public key)` ([`key_id`]).
//!
//! Key encodings, as in `golang.org/x/mod/sumdb/note` so that its tools and
//! other implementations read them:
//!
//! * verifier key (public, what an auditor is configured with):
//!   `<name>+<key id, 8 hex digits>+<base64(0x01 ‖ 32-byte public key)>`;
//! * signer key (secret): `PRIVATE+KEY+<name>+<key id>+<base64(0x01 ‖
//!   32-byte Ed25519 seed)>`. The seed (RFC 8032 private key) is all the
//!   secret there is; [`Signer::from_seed`] takes it raw, [`Signer::seed`]
//!   gives it back. Generate one from 32 bytes of a CSPRNG (e.g.
//!   `rand::random::<[u8; 32]>()`); this crate does no I/O, randomness
//!   included.
//!
//! A [`Verifier`] follows the note spec: signatures by other keys (another
//! name, or another key id) are ignored; a signature by its key that fails
//! to verify rejects the whole note; a note with no valid signature by its
//! key is rejected.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::merkle::Hash;

/// The signature type byte of Ed25519 in key ids and key encodings.
pub const ALG_ED25519: u8 = 0x01;

/// The most signature lines a note may carry (the spec asks verifiers to
/// accept at least 16; Go's reader stops at 100).
pub const MAX_SIGNATURES: usize = 100;

/// Starts every signature line: em dash (U+2014) and a space.
const SIG_PREFIX: &str = "\u{2014} ";

/// Starts a signer key.
const SKEY_PREFIX: &str = "PRIVATE+KEY+";

/// What is wrong with a key, a note or a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    /// Key names must be non-empty, without spaces, `+` or control
    /// characters.
    #[error(
        "invalid key name {0:?}: it must be non-empty, without spaces, '+' or control characters"
    )]
    InvalidKeyName(String),
    /// Not `<name>+<hex id>+<base64 key>`.
    #[error("malformed verifier key: {0}")]
    MalformedVerifierKey(&'static str),
    /// Not `PRIVATE+KEY+<name>+<hex id>+<base64 key>`.
    #[error("malformed signer key: {0}")]
    MalformedSignerKey(&'static str),
    /// A key of another signature type than Ed25519.
    #[error("unknown signature algorithm {0:#04x}")]
    UnknownAlgorithm(u8),
    /// The key id written in the key is not the one of its name and key.
    #[error("key id {claimed:08x} does not belong to this name and key (that is {actual:08x})")]
    KeyIdMismatch { claimed: u32, actual: u32 },
    /// Not an Ed25519 public key, or a weak (small-order) one.
    #[error("invalid Ed25519 public key")]
    InvalidPublicKey,
    /// Not a signed note.
    #[error("malformed note: {0}")]
    MalformedNote(&'static str),
    /// A signature by the verifier's key that does not verify.
    #[error("invalid signature for key {name}+{key_id:08x}")]
    InvalidSignature { name: String, key_id: u32 },
    /// The note carries no signature by the verifier's key.
    #[error("no signature by key {name}+{key_id:08x}")]
    NotSignedByKey { name: String, key_id: u32 },
    /// The note text is not a checkpoint.
    #[error("malformed checkpoint: {0}")]
    MalformedCheckpoint(&'static str),
}

/// The key id of an Ed25519 key: the first 4 bytes (big-endian) of
/// `SHA-256(name ‖ 0x0A ‖ 0x01 ‖ public key)`.
pub fn key_id(name: &str, public_key: &[u8; 32]) -> u32 {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([b'\n', ALG_ED25519]);
    h.update(public_key);
    let digest = h.finalize();
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
}

fn check_key_name(name: &str) -> Result<(), NoteError> {
    let bad = |c: char| c.is_whitespace() || c == '+' || c < ' ';
    if name.is_empty() || name.chars().any(bad) {
        return Err(NoteError::InvalidKeyName(name.to_string()));
    }
    Ok(())
}

/// Whether `s` holds an ASCII control character other than newline (which
/// no note may).
fn has_control(s: &str) -> bool {
    s.bytes().any(|b| b < 0x20 && b != b'\n')
}

/// Eight hex digits, either case (as Go's `strconv.ParseUint(s, 16, 32)`
/// with a length check reads them).
fn parse_key_id(hex: &str) -> Option<u32> {
    if hex.len() != 8 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(hex, 16).ok()
}

/// A checkpoint: the tree head of a log (RFC 6962 / RFC 9162 Merkle tree)
/// at a size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's identity, e.g. `example.com/log`.
    pub origin: String,
    /// The number of leaves.
    pub size: u64,
    /// The Merkle tree root at that size.
    pub root: Hash,
    /// Extension lines, opaque (the spec does not recommend them).
    pub extensions: Vec<String>,
}

impl Checkpoint {
    /// A checkpoint without extension lines.
    pub fn new(origin: impl Into<String>, size: u64, root: Hash) -> Self {
        Self {
            origin: origin.into(),
            size,
            root,
            extensions: Vec::new(),
        }
    }

    /// The note text: origin, size and root lines, then the extension
    /// lines, each followed by a newline. Use [`Checkpoint::validate`] (as
    /// [`Signer::sign`] does) to know it parses back.
    pub fn body(&self) -> String {
        let mut body = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            BASE64.encode(self.root)
        );
        for line in &self.extensions {
            body.push_str(line);
            body.push('\n');
        }
        body
    }

    /// Whether [`Checkpoint::body`] is a well-formed checkpoint: a non-empty
    /// origin and non-empty extension lines, none with a newline or another
    /// control character.
    pub fn validate(&self) -> Result<(), NoteError> {
        let line_ok = |l: &str| !l.is_empty() && !l.contains('\n') && !has_control(l);
        if !line_ok(&self.origin) {
            return Err(NoteError::MalformedCheckpoint(
                "the origin must be one non-empty line without control characters",
            ));
        }
        if !self.extensions.iter().all(|l| line_ok(l)) {
            return Err(NoteError::MalformedCheckpoint(
                "extension lines must be non-empty lines without control characters",
            ));
        }
        Ok(())
    }

    /// Reads a checkpoint body (a note text, final newline included).
    pub fn parse(body: &str) -> Result<Self, NoteError> {
        use NoteError::MalformedCheckpoint as Bad;
        if has_control(body) {
            return Err(Bad("control character"));
        }
        let Some(body) = body.strip_suffix('\n') else {
            return Err(Bad("the last line does not end with a newline"));
        };
        let mut lines = body.split('\n');
        let (Some(origin), Some(size), Some(root_text)) =
            (lines.next(), lines.next(), lines.next())
        else {
            return Err(Bad("fewer than three lines"));
        };
        if origin.is_empty() {
            return Err(Bad("empty origin"));
        }
        if size.is_empty()
            || !size.bytes().all(|b| b.is_ascii_digit())
            || (size.len() > 1 && size.starts_with('0'))
        {
            return Err(Bad(
                "the size is not a decimal number without leading zeros",
            ));
        }
        let size: u64 = size.parse().map_err(|_| Bad("the size is too large"))?;
        let root_bytes = BASE64
            .decode(root_text)
            .map_err(|_| Bad("the root hash is not standard base64"))?;
        let root: Hash = root_bytes
            .try_into()
            .map_err(|_| Bad("the root hash is not 32 bytes"))?;
        if BASE64.encode(root) != root_text {
            return Err(Bad("the root hash is not in canonical base64"));
        }
        let extensions: Vec<String> = lines.map(str::to_string).collect();
        if extensions.iter().any(String::is_empty) {
            return Err(Bad("empty extension line"));
        }
        Ok(Self {
            origin: origin.to_string(),
            size,
            root,
            extensions,
        })
    }
}

/// An Ed25519 note signer: a key name and a private key.
#[derive(Clone)]
pub struct Signer {
    name: String,
    key: SigningKey,
    key_id: u32,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the seed.
        f.debug_struct("Signer")
            .field("vkey", &self.vkey())
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// The signer of key `name` with this Ed25519 seed (RFC 8032 private
    /// key).
    pub fn from_seed(seed: [u8; 32], name: &str) -> Result<Self, NoteError> {
        check_key_name(name)?;
        let key = SigningKey::from_bytes(&seed);
        let key_id = key_id(name, &key.verifying_key().to_bytes());
        Ok(Self {
            name: name.to_string(),
            key,
            key_id,
        })
    }

    /// Reads a signer key `PRIVATE+KEY+<name>+<hex id>+<base64(0x01 ‖
    /// seed)>`, checking that the id is that of the name and the derived
    /// public key.
    pub fn from_skey(skey: &str) -> Result<Self, NoteError> {
        use NoteError::MalformedSignerKey as Bad;
        let rest = skey
            .strip_prefix(SKEY_PREFIX)
            .ok_or(Bad("it does not start with PRIVATE+KEY+"))?;
        let (name, claimed, seed) = split_key(rest, Bad)?;
        let signer = Self::from_seed(seed, name)?;
        if signer.key_id != claimed {
            return Err(NoteError::KeyIdMismatch {
                claimed,
                actual: signer.key_id,
            });
        }
        Ok(signer)
    }

    /// The signer key text (secret): `PRIVATE+KEY+<name>+<hex id>+<base64(0x01
    /// ‖ seed)>`.
    pub fn skey(&self) -> String {
        let mut key = vec![ALG_ED25519];
        key.extend_from_slice(&self.key.to_bytes());
        format!(
            "{SKEY_PREFIX}{}+{:08x}+{}",
            self.name,
            self.key_id,
            BASE64.encode(key)
        )
    }

    /// The 32-byte Ed25519 seed (secret).
    pub fn seed(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key id.
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// The Ed25519 public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    /// The verifier key text to hand to auditors.
    pub fn vkey(&self) -> String {
        self.verifier().vkey()
    }

    /// The verifier of this signer's signatures.
    pub fn verifier(&self) -> Verifier {
        Verifier {
            name: self.name.clone(),
            key_id: self.key_id,
            key: self.key.verifying_key(),
        }
    }

    /// Signs a note text (ending in a newline, without control characters
    /// other than newlines) and returns the whole signed note.
    pub fn sign_note(&self, text: &str) -> Result<String, NoteError> {
        if !text.ends_with('\n') {
            return Err(NoteError::MalformedNote(
                "the text does not end with a newline",
            ));
        }
        if has_control(text) {
            return Err(NoteError::MalformedNote("control character in the text"));
        }
        let signature = self.key.sign(text.as_bytes());
        let mut blob = Vec::with_capacity(4 + 64);
        blob.extend_from_slice(&self.key_id.to_be_bytes());
        blob.extend_from_slice(&signature.to_bytes());
        Ok(format!(
            "{text}\n{SIG_PREFIX}{} {}\n",
            self.name,
            BASE64.encode(blob)
        ))
    }

    /// Signs a checkpoint: its [`body`](Checkpoint::body), a blank line and
    /// this key's signature line.
    pub fn sign(&self, checkpoint: &Checkpoint) -> Result<String, NoteError> {
        checkpoint.validate()?;
        self.sign_note(&checkpoint.body())
    }
}

/// An Ed25519 note verifier: a key name, a key id and a public key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verifier {
    name: String,
    key_id: u32,
    key: VerifyingKey,
}

/// Splits `<name>+<hex id>+<base64(0x01 ‖ 32-byte key)>` (the tail of a
/// signer key, or a verifier key) into the name, the claimed key id and the
/// key; `bad` names what is malformed. The base64 key may itself contain
/// '+': the text is split at the first two.
fn split_key(
    text: &str,
    bad: fn(&'static str) -> NoteError,
) -> Result<(&str, u32, [u8; 32]), NoteError> {
    let (name, rest) = text.split_once('+').ok_or(bad("no key id"))?;
    let (hex, key64) = rest.split_once('+').ok_or(bad("no key"))?;
    check_key_name(name)?;
    let claimed = parse_key_id(hex).ok_or(bad("the key id is not 8 hex digits"))?;
    let key = BASE64
        .decode(key64)
        .map_err(|_| bad("the key is not standard base64"))?;
    let (&alg, key) = key.split_first().ok_or(bad("empty key"))?;
    if alg != ALG_ED25519 {
        return Err(NoteError::UnknownAlgorithm(alg));
    }
    let key: [u8; 32] = key
        .try_into()
        .map_err(|_| bad("an Ed25519 key is 32 bytes"))?;
    Ok((name, claimed, key))
}

impl Verifier {
    /// Reads a verifier key `<name>+<hex id>+<base64(0x01 ‖ public key)>`,
    /// checking that the id is that of the name and key.
    pub fn from_vkey(vkey: &str) -> Result<Self, NoteError> {
        use NoteError::MalformedVerifierKey as Bad;
        let (name, claimed, public_key) = split_key(vkey, Bad)?;
        let verifier = Self::from_public_key(name, public_key)?;
        if verifier.key_id != claimed {
            return Err(NoteError::KeyIdMismatch {
                claimed,
                actual: verifier.key_id,
            });
        }
        Ok(verifier)
    }

    /// The verifier of key `name` with this Ed25519 public key.
    pub fn from_public_key(name: &str, public_key: [u8; 32]) -> Result<Self, NoteError> {
        check_key_name(name)?;
        let key = VerifyingKey::from_bytes(&public_key).map_err(|_| NoteError::InvalidPublicKey)?;
        if key.is_weak() {
            return Err(NoteError::InvalidPublicKey);
        }
        Ok(Self {
            name: name.to_string(),
            key_id: key_id(name, &public_key),
            key,
        })
    }

    /// The verifier key text.
    pub fn vkey(&self) -> String {
        let mut key = vec![ALG_ED25519];
        key.extend_from_slice(self.key.as_bytes());
        format!("{}+{:08x}+{}", self.name, self.key_id, BASE64.encode(key))
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key id.
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// The Ed25519 public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// Checks a signed note and returns its text (final newline included)
    /// when it carries a valid signature by this key.
    ///
    /// Refused: malformed notes (no blank line before the signatures, a
    /// signature line not of the form `— <name> <base64>`, a control
    /// character, more than [`MAX_SIGNATURES`] signatures), a signature by
    /// this key (same name and key id) that does not verify, and notes with
    /// no signature by this key. Signatures by other keys are not checked.
    /// Verification is RFC 8032 strict (`verify_strict`): no
    /// non-canonical encodings, no small-order components.
    pub fn open<'n>(&self, note: &'n str) -> Result<&'n str, NoteError> {
        use NoteError::MalformedNote as Bad;
        if has_control(note) {
            return Err(Bad("control character"));
        }
        // The text ends at the last blank line.
        let split = note
            .rfind("\n\n")
            .ok_or(Bad("no blank line before the signatures"))?;
        let (text, signatures) = (&note[..split + 1], &note[split + 2..]);
        let Some(signatures) = signatures.strip_suffix('\n') else {
            return Err(Bad("no signature line, or the last one has no newline"));
        };
        let mut signed = false;
        for (count, line) in signatures.split('\n').enumerate() {
            if count == MAX_SIGNATURES {
                return Err(Bad("too many signatures"));
            }
            let line = line.strip_prefix(SIG_PREFIX).ok_or(Bad(
                "a signature line does not start with an em dash and a space",
            ))?;
            let (name, blob64) = line
                .split_once(' ')
                .ok_or(Bad("a signature line has no space after the key name"))?;
            if check_key_name(name).is_err() {
                return Err(Bad("invalid key name in a signature line"));
            }
            let blob = BASE64
                .decode(blob64)
                .map_err(|_| Bad("a signature is not standard base64"))?;
            if blob.len() < 5 {
                return Err(Bad("a signature is shorter than a key id and one byte"));
            }
            let id = u32::from_be_bytes([blob[0], blob[1], blob[2], blob[3]]);
            if name != self.name || id != self.key_id {
                // Another key's: not ours to judge.
                continue;
            }
            let invalid = || NoteError::InvalidSignature {
                name: self.name.clone(),
                key_id: self.key_id,
            };
            let signature = Signature::from_slice(&blob[4..]).map_err(|_| invalid())?;
            self.key
                .verify_strict(text.as_bytes(), &signature)
                .map_err(|_| invalid())?;
            signed = true;
        }
        if !signed {
            return Err(NoteError::NotSignedByKey {
                name: self.name.clone(),
                key_id: self.key_id,
            });
        }
        Ok(text)
    }

    /// Checks a signed checkpoint (as [`Verifier::open`]) and reads its
    /// body.
    ///
    /// The origin is not compared with anything: the caller knows which log
    /// it expects (the spec recommends the key name to equal the origin, but
    /// does not require it).
    pub fn verify(&self, note: &str) -> Result<Checkpoint, NoteError> {
        Checkpoint::parse(self.open(note)?)
    }
}
