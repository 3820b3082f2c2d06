//! Signed checkpoints of the audit log's Merkle tree, in the C2SP `tlog-checkpoint` format
//! wrapped in a C2SP `signed-note` with an Ed25519 key.
//!
//! These are the formats Go's `golang.org/x/mod/sumdb/note` and the transparency-dev tools
//! read and write, so an auditor can check Warden's checkpoints with existing tooling and
//! publish or witness them like any other transparency log's. A checkpoint commits to the tree
//! size and root at a moment; with [`super::merkle`] proofs it lets anyone holding one check
//! that a record is in the log, and that a later checkpoint only appended to an earlier one.
//!
//! ```text
//! warden.example/audit
//! 1234
//! <base64 root>
//! time 2026-01-01T00:00:00.000000Z
//! chain <hex hash of record 1234 in the hash chain>
//!
//! — warden.example/audit <base64(key id || Ed25519 signature)>
//! ```

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::merkle;

/// The signature-type byte C2SP `signed-note` assigns to Ed25519.
const ALG_ED25519: u8 = 0x01;

/// Past this many signature lines a note is rejected unread; the spec asks verifiers to accept
/// at least 16, and cosigning witnesses rarely add more than a handful.
const MAX_SIGNATURES: usize = 100;

/// Starts every signature line: an em dash (U+2014) and a space.
const SIG_PREFIX: &str = "\u{2014} ";

/// Why a key, note or checkpoint was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CheckpointError {
    /// A signer or verifier key, or a key name, is not in the note format or does not match
    /// its own key hash.
    #[error("malformed key: {0}")]
    MalformedKey(String),
    /// The text is not a signed note.
    #[error("malformed note: {0}")]
    MalformedNote(String),
    /// The note is signed, but not by this verifier's key.
    #[error("the note has no signature by this key")]
    NoSignature,
    /// A signature line names this verifier's key but does not verify.
    #[error("the signature by this key does not verify")]
    BadSignature,
    /// The signed text is not a checkpoint body as Warden writes them.
    #[error("malformed checkpoint: {0}")]
    MalformedCheckpoint(String),
}

/// A commitment to the audit log's Merkle tree at one size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The log's identity, so that a checkpoint from one log is never taken for another's; by
    /// convention a schema-less URL such as `warden.example/audit`.
    pub origin: String,
    /// The number of leaves (audit records) in the tree.
    pub size: u64,
    /// The tree's root ([`merkle::root`] of the first `size` leaves).
    #[serde(with = "merkle::hex_hash")]
    pub root: merkle::Hash,
    /// When the checkpoint was made, RFC 3339 in UTC (as `clock::format_micros` writes it).
    pub time: String,
    /// The hash chain's head at `size` (the last record's chain hash), so the chain can be
    /// resumed from a checkpoint after the records before it were archived. One token.
    pub chain: String,
}

impl Checkpoint {
    /// The note text that is signed: origin, size, base64 root, then the `time` and `chain`
    /// extension lines, each ending in a newline.
    pub fn body(&self) -> String {
        format!(
            "{}\n{}\n{}\ntime {}\nchain {}\n",
            self.origin,
            self.size,
            BASE64.encode(self.root),
            self.time,
            self.chain
        )
    }

    /// Reads a body as [`Checkpoint::body`] writes it.
    ///
    /// Strict on purpose: a body that parses must be the one `body` would write for the result,
    /// so no two different texts can carry the same signed claim.
    pub fn parse_body(text: &str) -> Result<Checkpoint, CheckpointError> {
        let bad = |why: &str| CheckpointError::MalformedCheckpoint(why.to_string());
        let Some(text) = text.strip_suffix('\n') else {
            return Err(bad("the body must end in a newline"));
        };
        let lines: Vec<&str> = text.split('\n').collect();
        let [origin, size, root, time, chain] = lines.as_slice() else {
            return Err(bad(
                "expected five lines: origin, tree size, root hash, time and chain",
            ));
        };
        let chain = match chain.strip_prefix("chain ") {
            Some(c) if !c.is_empty() && !c.chars().any(|c| c.is_whitespace() || c.is_control()) => {
                c
            }
            _ => return Err(bad("expected a `chain` extension line with one token")),
        };
        if origin.is_empty() || origin.chars().any(char::is_control) {
            return Err(bad("the origin line must be non-empty text"));
        }
        // Decimal without sign or leading zeroes, as the spec requires.
        let canonical_size = !size.is_empty()
            && size.bytes().all(|b| b.is_ascii_digit())
            && (*size == "0" || !size.starts_with('0'));
        let size: u64 = match size.parse() {
            Ok(n) if canonical_size => n,
            _ => return Err(bad("the tree size must be a decimal number")),
        };
        let root: merkle::Hash = BASE64
            .decode(root)
            .ok()
            .and_then(|raw| raw.try_into().ok())
            .ok_or_else(|| bad("the root hash must be 32 bytes in standard base64"))?;
        let Some(time) = time.strip_prefix("time ") else {
            return Err(bad("expected a `time` extension line"));
        };
        if !time.ends_with('Z') || crate::clock::parse_micros(time).is_none() {
            return Err(bad("the time must be RFC 3339 in UTC"));
        }
        let cp = Checkpoint {
            origin: origin.to_string(),
            size,
            root,
            time: time.to_string(),
            chain: chain.to_string(),
        };
        Ok(cp)
    }
}

/// Key names are non-empty and contain neither Unicode white space nor `+`, so that they
/// survive in key text and in signature lines.
fn valid_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(|c| c.is_whitespace() || c == '+')
}

/// The note key ID: the first 4 bytes (big-endian) of SHA-256(name || "\n" || 0x01 || public key).
fn key_id(name: &str, public: &VerifyingKey) -> u32 {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([ALG_ED25519]);
    h.update(public.as_bytes());
    let digest = h.finalize();
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
}

/// The key-hash field of key text: exactly 8 hex digits.
fn parse_key_hash(text: &str) -> Option<u32> {
    (text.len() == 8 && text.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| u32::from_str_radix(text, 16).ok())
        .flatten()
}

/// The key-data field of key text: base64 of the algorithm byte and 32 key bytes.
fn parse_key_data(text: &str) -> Result<[u8; 32], CheckpointError> {
    let raw = BASE64
        .decode(text)
        .map_err(|_| CheckpointError::MalformedKey("key data is not standard base64".into()))?;
    match raw.split_first() {
        Some((&ALG_ED25519, key)) => key
            .try_into()
            .map_err(|_| CheckpointError::MalformedKey("an Ed25519 key is 32 bytes".into())),
        Some(_) => Err(CheckpointError::MalformedKey(
            "unknown signature algorithm".into(),
        )),
        None => Err(CheckpointError::MalformedKey("empty key data".into())),
    }
}

fn key_data(bytes: &[u8; 32]) -> String {
    let mut raw = Vec::with_capacity(33);
    raw.push(ALG_ED25519);
    raw.extend_from_slice(bytes);
    BASE64.encode(raw)
}

/// A log's signing key: the key name and Ed25519 private key that sign checkpoints.
pub struct Signer {
    name: String,
    key: SigningKey,
    id: u32,
}

// By hand, so that the private key never reaches a log line.
impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("name", &self.name)
            .field("key_id", &format_args!("{:08x}", self.id))
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// A new random key named `name` (by convention the log's origin).
    ///
    /// Fails only for a name that cannot appear in key text or signature lines (empty, or with
    /// white space or `+`).
    pub fn generate(name: &str) -> Result<Signer, CheckpointError> {
        let seed: [u8; 32] = rand::random();
        Signer::from_seed(name, seed)
    }

    fn from_seed(name: &str, seed: [u8; 32]) -> Result<Signer, CheckpointError> {
        if !valid_name(name) {
            return Err(CheckpointError::MalformedKey(format!(
                "invalid key name {name:?}"
            )));
        }
        let key = SigningKey::from_bytes(&seed);
        let id = key_id(name, &key.verifying_key());
        Ok(Signer {
            name: name.to_string(),
            key,
            id,
        })
    }

    /// Reads signer key text, `PRIVATE+KEY+<name>+<8 hex key hash>+<base64(0x01 || seed)>`, as
    /// Go's `note.NewSigner` does; the key hash must match the key.
    pub fn parse(skey: &str) -> Result<Signer, CheckpointError> {
        let mut fields = skey.splitn(5, '+');
        let (Some("PRIVATE"), Some("KEY"), Some(name), Some(hash), Some(data)) = (
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
        ) else {
            return Err(CheckpointError::MalformedKey(
                "expected PRIVATE+KEY+<name>+<hash>+<key>".into(),
            ));
        };
        let hash = parse_key_hash(hash)
            .ok_or_else(|| CheckpointError::MalformedKey("key hash is not 8 hex digits".into()))?;
        let signer = Signer::from_seed(name, parse_key_data(data)?)?;
        // The hash covers the public key, which only exists once the seed is expanded.
        if signer.id != hash {
            return Err(CheckpointError::MalformedKey(
                "key hash does not match the key".into(),
            ));
        }
        Ok(signer)
    }

    /// The signer key text to store (secret: it signs as this log).
    pub fn to_skey(&self) -> String {
        format!(
            "PRIVATE+KEY+{}+{:08x}+{}",
            self.name,
            self.id,
            key_data(self.key.as_bytes())
        )
    }

    /// The verifier key text to hand to auditors, `<name>+<8 hex key hash>+<base64(0x01 ||
    /// public key)>`.
    pub fn vkey(&self) -> String {
        format!(
            "{}+{:08x}+{}",
            self.name,
            self.id,
            key_data(self.key.verifying_key().as_bytes())
        )
    }

    /// The key name that signature lines carry.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The signed note for `cp`: its body, a blank line and this key's signature line.
    ///
    /// Signs whatever `cp` holds; [`NoteVerifier::open`] rejects a checkpoint whose fields do
    /// not survive [`Checkpoint::parse_body`], so build checkpoints from trusted values.
    pub fn sign(&self, cp: &Checkpoint) -> String {
        let body = cp.body();
        let line = self.signature_line(&body);
        format!("{body}\n{line}")
    }

    fn signature_line(&self, text: &str) -> String {
        let signature = self.key.sign(text.as_bytes());
        let mut raw = Vec::with_capacity(4 + Signature::BYTE_SIZE);
        raw.extend_from_slice(&self.id.to_be_bytes());
        raw.extend_from_slice(&signature.to_bytes());
        format!("{SIG_PREFIX}{} {}\n", self.name, BASE64.encode(raw))
    }
}

/// A log's public key, for checking its signed notes.
#[derive(Debug, Clone)]
pub struct NoteVerifier {
    name: String,
    id: u32,
    key: VerifyingKey,
}

impl NoteVerifier {
    /// Reads verifier key text, `<name>+<8 hex key hash>+<base64(0x01 || public key)>`, as
    /// Go's `note.NewVerifier` does; the key hash must match the key.
    pub fn parse(vkey: &str) -> Result<NoteVerifier, CheckpointError> {
        let mut fields = vkey.splitn(3, '+');
        let (Some(name), Some(hash), Some(data)) = (fields.next(), fields.next(), fields.next())
        else {
            return Err(CheckpointError::MalformedKey(
                "expected <name>+<hash>+<key>".into(),
            ));
        };
        if !valid_name(name) {
            return Err(CheckpointError::MalformedKey(format!(
                "invalid key name {name:?}"
            )));
        }
        let hash = parse_key_hash(hash)
            .ok_or_else(|| CheckpointError::MalformedKey("key hash is not 8 hex digits".into()))?;
        let key = VerifyingKey::from_bytes(&parse_key_data(data)?)
            .map_err(|_| CheckpointError::MalformedKey("not an Ed25519 public key".into()))?;
        if key_id(name, &key) != hash {
            return Err(CheckpointError::MalformedKey(
                "key hash does not match the key".into(),
            ));
        }
        Ok(NoteVerifier {
            name: name.to_string(),
            id: hash,
            key,
        })
    }

    /// The key name this verifier looks for in signature lines.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Checks `note`'s signature by this key (among any others, which are ignored, as the
    /// signed-note spec requires) and returns the checkpoint it signs.
    pub fn open(&self, note: &str) -> Result<Checkpoint, CheckpointError> {
        Checkpoint::parse_body(self.verify(note)?)
    }

    /// The note's signed text, once this key's signature on it is checked.
    ///
    /// Every line carrying this key's name and ID must verify: one that does not means the
    /// note was tampered with, even if another line for the same key is good.
    fn verify<'a>(&self, note: &'a str) -> Result<&'a str, CheckpointError> {
        let bad = |why: &str| CheckpointError::MalformedNote(why.to_string());
        if note.chars().any(|c| c < ' ' && c != '\n') {
            return Err(bad("control character"));
        }
        let Some(split) = note.rfind("\n\n") else {
            return Err(bad("no blank line before the signatures"));
        };
        let (text, signatures) = (&note[..split + 1], &note[split + 2..]);
        let Some(signatures) = signatures.strip_suffix('\n') else {
            return Err(bad("the signatures must end in a newline"));
        };
        if signatures.is_empty() {
            return Err(bad("no signature lines"));
        }
        let mut found = false;
        for (n, line) in signatures.split('\n').enumerate() {
            if n >= MAX_SIGNATURES {
                return Err(bad("too many signatures"));
            }
            let Some((name, encoded)) = line
                .strip_prefix(SIG_PREFIX)
                .and_then(|rest| rest.split_once(' '))
            else {
                return Err(bad("a signature line is not `— <name> <signature>`"));
            };
            let raw = BASE64
                .decode(encoded)
                .map_err(|_| bad("a signature is not standard base64"))?;
            if !valid_name(name) || raw.len() < 5 {
                return Err(bad("a signature line is not `— <name> <signature>`"));
            }
            let (id, signature) = raw.split_at(4);
            let id = u32::from_be_bytes([id[0], id[1], id[2], id[3]]);
            if name != self.name || id != self.id {
                continue;
            }
            let signature =
                Signature::from_slice(signature).map_err(|_| CheckpointError::BadSignature)?;
            self.key
                .verify_strict(text.as_bytes(), &signature)
                .map_err(|_| CheckpointError::BadSignature)?;
            found = true;
        }
        if found {
            Ok(text)
        } else {
            Err(CheckpointError::NoSignature)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checkpoint() -> Checkpoint {
        Checkpoint {
            origin: "warden.example/audit".into(),
            size: 1234,
            root: merkle::root(&[[7; 32], [9; 32], [11; 32]]),
            time: "2026-03-01T12:30:00.000000Z".into(),
            chain: "ab".repeat(32),
        }
    }

    /// The key, note text and signature published in golang.org/x/mod/sumdb/note
    /// (note.go's package documentation and note_test.go).
    const PETER_SKEY: &str =
        "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
    const PETER_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    const PETER_TEXT: &str = "If you think cryptography is the answer to your problem,\n\
                              then you don't know what your problem is.\n";
    const PETER_SIG: &str = "\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
    const ENOCH_VKEY: &str = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop";
    const ENOCH_SIG: &str = "\u{2014} EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n";

    #[test]
    fn matches_the_go_note_package_vectors() {
        let signer = Signer::parse(PETER_SKEY).unwrap();
        assert_eq!(signer.name(), "PeterNeumann");
        assert_eq!(signer.vkey(), PETER_VKEY);
        assert_eq!(signer.to_skey(), PETER_SKEY);
        // Ed25519 is deterministic, so signing the same text reproduces Go's line exactly.
        assert_eq!(signer.signature_line(PETER_TEXT), PETER_SIG);

        let peter = NoteVerifier::parse(PETER_VKEY).unwrap();
        let enoch = NoteVerifier::parse(ENOCH_VKEY).unwrap();
        assert_eq!(peter.name(), "PeterNeumann");
        let both = format!("{PETER_TEXT}\n{PETER_SIG}{ENOCH_SIG}");
        assert_eq!(peter.verify(&both), Ok(PETER_TEXT));
        assert_eq!(enoch.verify(&both), Ok(PETER_TEXT));
        let only_peter = format!("{PETER_TEXT}\n{PETER_SIG}");
        assert_eq!(enoch.verify(&only_peter), Err(CheckpointError::NoSignature));
        // The text is a note but not a checkpoint.
        assert!(matches!(
            peter.open(&only_peter),
            Err(CheckpointError::MalformedCheckpoint(_))
        ));
        // note_test.go's "invalid signature": four base64 digits spliced into the signature.
        let sig = format!("{}ABCD{}", &PETER_SIG[..60], &PETER_SIG[60..]);
        let spliced = format!("{PETER_TEXT}\n{sig}");
        assert_eq!(peter.verify(&spliced), Err(CheckpointError::BadSignature));
    }

    #[test]
    fn sign_then_open_round_trips() {
        let signer = Signer::generate("warden.example/audit").unwrap();
        let verifier = NoteVerifier::parse(&signer.vkey()).unwrap();
        let cp = checkpoint();
        let note = signer.sign(&cp);
        assert!(note.starts_with(&format!("{}\n\u{2014} warden.example/audit ", cp.body())));
        assert_eq!(verifier.open(&note), Ok(cp.clone()));
        assert_eq!(Checkpoint::parse_body(&cp.body()), Ok(cp.clone()));

        let empty = Checkpoint {
            size: 0,
            root: merkle::root(&[]),
            ..cp
        };
        assert_eq!(verifier.open(&signer.sign(&empty)), Ok(empty));
    }

    #[test]
    fn body_is_the_c2sp_checkpoint_text() {
        let cp = checkpoint();
        let root = BASE64.encode(cp.root);
        assert_eq!(
            cp.body(),
            format!(
                "warden.example/audit\n1234\n{root}\ntime 2026-03-01T12:30:00.000000Z\nchain {}\n",
                "ab".repeat(32)
            )
        );
        let json = serde_json::to_value(&cp).unwrap();
        assert_eq!(json["root"], merkle::to_hex(&cp.root));
        assert_eq!(serde_json::from_value::<Checkpoint>(json).unwrap(), cp);
    }

    #[test]
    fn tampering_is_caught() {
        let signer = Signer::generate("warden.example/audit").unwrap();
        let verifier = NoteVerifier::parse(&signer.vkey()).unwrap();
        let note = signer.sign(&checkpoint());
        let body_len = checkpoint().body().len();

        for i in 0..body_len {
            let mut bytes = note.clone().into_bytes();
            bytes[i] = if bytes[i] == b'x' { b'y' } else { b'x' };
            let edited = String::from_utf8(bytes).unwrap();
            let want = if i == body_len - 1 {
                // The body's last newline is half of the blank line before the signatures.
                matches!(
                    verifier.open(&edited),
                    Err(CheckpointError::MalformedNote(_))
                )
            } else {
                verifier.open(&edited) == Err(CheckpointError::BadSignature)
            };
            assert!(want, "edit at {i}: {:?}", verifier.open(&edited));
        }

        // Each byte of the signature; the first four are the key ID, so a changed one makes
        // the line someone else's.
        let (text, line) = note.split_at(body_len + 1);
        let encoded = line
            .strip_prefix("\u{2014} warden.example/audit ")
            .unwrap()
            .trim_end();
        let raw = BASE64.decode(encoded).unwrap();
        assert_eq!(raw.len(), 68);
        for i in 0..raw.len() {
            let mut changed = raw.clone();
            changed[i] ^= 0x01;
            let edited = format!(
                "{text}\u{2014} warden.example/audit {}\n",
                BASE64.encode(changed)
            );
            let want = if i < 4 {
                CheckpointError::NoSignature
            } else {
                CheckpointError::BadSignature
            };
            assert_eq!(verifier.open(&edited), Err(want), "signature byte {i}");
        }

        // A good signature alongside a bad one from the same key is still tampering.
        let mut changed = raw.clone();
        changed[10] ^= 0x01;
        let twice = format!(
            "{note}\u{2014} warden.example/audit {}\n",
            BASE64.encode(changed)
        );
        assert_eq!(verifier.open(&twice), Err(CheckpointError::BadSignature));
    }

    #[test]
    fn other_keys_do_not_open_the_note() {
        let signer = Signer::generate("warden.example/audit").unwrap();
        let note = signer.sign(&checkpoint());
        let other = Signer::generate("warden.example/audit").unwrap();
        let other_verifier = NoteVerifier::parse(&other.vkey()).unwrap();
        assert_eq!(
            other_verifier.open(&note),
            Err(CheckpointError::NoSignature)
        );
        let renamed = Signer::generate("someone.else").unwrap();
        let renamed_verifier = NoteVerifier::parse(&renamed.vkey()).unwrap();
        assert_eq!(
            renamed_verifier.open(&note),
            Err(CheckpointError::NoSignature)
        );

        // The key ID covers the name: the same key under another name is another key, and its
        // key text with the old ID does not parse.
        let seed = *signer.key.as_bytes();
        let alias = Signer::from_seed("alias.example", seed).unwrap();
        let alias_verifier = NoteVerifier::parse(&alias.vkey()).unwrap();
        assert_eq!(
            alias_verifier.open(&note),
            Err(CheckpointError::NoSignature)
        );
        let renamed_skey = signer
            .to_skey()
            .replacen("warden.example/audit", "alias.example", 1);
        assert!(matches!(
            Signer::parse(&renamed_skey),
            Err(CheckpointError::MalformedKey(_))
        ));
    }

    #[test]
    fn a_note_signed_by_two_keys_opens_with_either() {
        let log = Signer::generate("warden.example/audit").unwrap();
        let witness = Signer::generate("witness.example").unwrap();
        let cp = checkpoint();
        let note = log.sign(&cp);
        let cosigned = format!("{note}{}", witness.signature_line(&cp.body()));
        for signer in [&log, &witness] {
            let verifier = NoteVerifier::parse(&signer.vkey()).unwrap();
            assert_eq!(verifier.open(&cosigned), Ok(cp.clone()));
        }
    }

    #[test]
    fn keys_round_trip() {
        let signer = Signer::generate("warden.example/audit").unwrap();
        let again = Signer::parse(&signer.to_skey()).unwrap();
        assert_eq!(again.to_skey(), signer.to_skey());
        assert_eq!(again.vkey(), signer.vkey());
        assert_eq!(again.name(), "warden.example/audit");
        let verifier = NoteVerifier::parse(&signer.vkey()).unwrap();
        assert_eq!(verifier.name(), "warden.example/audit");
        assert_eq!(verifier.open(&again.sign(&checkpoint())), Ok(checkpoint()));
        let vkey = signer.vkey();
        let hash = vkey.split('+').nth(1).unwrap();
        assert_eq!(hash.len(), 8);
        assert!(
            hash.bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
        );
        // The key data is the fifth part; base64 may itself hold `+`, so split only four times.
        let skey = signer.to_skey();
        let secret = skey.splitn(5, '+').nth(4).unwrap();
        assert!(secret.len() >= 40, "{skey}");
        assert!(!format!("{signer:?}").contains(secret));
    }

    #[test]
    fn malformed_keys_are_rejected() {
        for name in ["", "has space", "a+b", "tab\there", "new\nline"] {
            assert!(
                matches!(
                    Signer::generate(name),
                    Err(CheckpointError::MalformedKey(_))
                ),
                "{name:?}"
            );
        }
        let malformed = |r: Result<NoteVerifier, CheckpointError>| {
            matches!(r, Err(CheckpointError::MalformedKey(_)))
        };
        // Every proper substring and every single-byte change of the Go example key, as
        // note_test.go checks.
        let vkey = PETER_VKEY.as_bytes();
        for i in 0..=vkey.len() {
            for j in i + 1..=vkey.len() {
                if (i, j) != (0, vkey.len()) {
                    let s = std::str::from_utf8(&vkey[i..j]).unwrap();
                    assert!(malformed(NoteVerifier::parse(s)), "{s:?}");
                }
            }
        }
        for i in 0..vkey.len() {
            let mut b = vkey.to_vec();
            b[i] += 1;
            let s = String::from_utf8(b).unwrap();
            assert!(malformed(NoteVerifier::parse(&s)), "{s:?}");
        }
        // From note_test.go: the wrong key length and an unknown algorithm, each with a
        // matching key hash.
        assert!(malformed(NoteVerifier::parse(
            "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY=="
        )));
        assert!(malformed(NoteVerifier::parse(
            "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
        )));

        let skey = PETER_SKEY.as_bytes();
        for i in 0..=skey.len() {
            for j in i + 1..=skey.len() {
                if (i, j) != (0, skey.len()) {
                    let s = std::str::from_utf8(&skey[i..j]).unwrap();
                    assert!(
                        matches!(Signer::parse(s), Err(CheckpointError::MalformedKey(_))),
                        "{s:?}"
                    );
                }
            }
        }
        for i in 0..skey.len() {
            let mut b = skey.to_vec();
            b[i] += 1;
            let s = String::from_utf8(b).unwrap();
            assert!(
                matches!(Signer::parse(&s), Err(CheckpointError::MalformedKey(_))),
                "{s:?}"
            );
        }
        // A verifier key is not a signer key, and the other way round.
        assert!(Signer::parse(PETER_VKEY).is_err());
        assert!(NoteVerifier::parse(PETER_SKEY).is_err());
    }

    #[test]
    fn malformed_notes_are_rejected() {
        let signer = Signer::parse(PETER_SKEY).unwrap();
        let verifier = NoteVerifier::parse(PETER_VKEY).unwrap();
        let note = signer.sign(&checkpoint());
        assert_eq!(verifier.open(&note), Ok(checkpoint()));
        let body = checkpoint().body();
        let sig = &note[body.len() + 1..];
        // The malformed notes of note_test.go, with a checkpoint body.
        for bad in [
            body.clone(),
            format!("{body}\n"),
            format!("{body}\n{}", sig.trim_end()),
            format!("\x01{body}\n{sig}"),
            format!(
                "{body}\n\u{2014} Bad Name {}",
                sig.rsplit(' ').next().unwrap()
            ),
            format!("{body}\n{sig}Unexpected line.\n"),
            format!("{body}\n{}", sig.repeat(101)),
            format!("{body}\n- PeterNeumann {}", sig.rsplit(' ').next().unwrap()),
            format!("{body}\n\u{2014} PeterNeumann !!!!\n"),
            format!("{body}\n\u{2014} PeterNeumann AAAA\n"),
        ] {
            assert!(
                matches!(verifier.open(&bad), Err(CheckpointError::MalformedNote(_))),
                "{bad:?}: {:?}",
                verifier.open(&bad)
            );
        }
        // Duplicate good signature lines are fine.
        assert_eq!(verifier.open(&format!("{note}{sig}")), Ok(checkpoint()));
    }

    #[test]
    fn malformed_bodies_are_rejected() {
        let root = BASE64.encode([3u8; 32]);
        let t = "time 2026-03-01T12:30:00Z\nchain 00ff";
        let ok = format!("o\n5\n{root}\n{t}\n");
        assert!(Checkpoint::parse_body(&ok).is_ok());
        for bad in [
            format!("o\n5\n{root}\n{t}"),
            format!("\n5\n{root}\n{t}\n"),
            format!("o\n05\n{root}\n{t}\n"),
            format!("o\n+5\n{root}\n{t}\n"),
            format!("o\n-5\n{root}\n{t}\n"),
            format!("o\n\n{root}\n{t}\n"),
            format!("o\n18446744073709551616\n{root}\n{t}\n"),
            format!("o\n5\n{}\n{t}\n", BASE64.encode([3u8; 31])),
            format!("o\n5\n{}\n{t}\n", merkle::to_hex(&[3; 32])),
            format!("o\n5\n{root}\n"),
            format!("o\n5\n{root}\n{t}\nextra\n"),
            format!("o\n5\n{root}\ntime yesterday\nchain 00\n"),
            format!("o\n5\n{root}\ntime 2026-03-01T12:30:00+01:00\nchain 00\n"),
            format!("o\n5\n{root}\nwhen 2026-03-01T12:30:00Z\nchain 00\n"),
            format!("o\n5\n{root}\ntime 2026-03-01T12:30:00Z\n"),
            format!("o\n5\n{root}\ntime 2026-03-01T12:30:00Z\nchain \n"),
            format!("o\n5\n{root}\ntime 2026-03-01T12:30:00Z\nchain a b\n"),
        ] {
            assert!(
                matches!(
                    Checkpoint::parse_body(&bad),
                    Err(CheckpointError::MalformedCheckpoint(_))
                ),
                "{bad:?}"
            );
        }
        assert!(
            Checkpoint::parse_body(
                "o\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\ntime 2026-03-01T12:30:00Z\nchain 0\n"
            )
            .is_ok()
        );
    }
}
