//! The hotspot's Ed25519 identity: a PKCS#8 key file (mode 0600) behind the [`Signer`]
//! trait, so that a secure element can replace the file without touching the codecs.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};

/// File name of the key in the state directory.
pub const KEY_FILE_NAME: &str = "identity.pk8";

/// The largest key file read (an Ed25519 PKCS#8 v2 document is 83–85 bytes).
const MAX_KEY_FILE: u64 = 4096;

/// An Ed25519 public key: the hotspot's identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKey(pub [u8; 32]);

impl PublicKey {
    /// The hotspot address: the public key in lowercase hex (64 characters).
    pub fn address(&self) -> String {
        hex(&self.0)
    }

    /// Whether `signature` is this key's Ed25519 signature of `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8; 64]) -> bool {
        UnparsedPublicKey::new(&ED25519, &self.0)
            .verify(message, signature)
            .is_ok()
    }
}

impl std::fmt::Display for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.address())
    }
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Something that signs with the hotspot's key (a key file, a secure element).
pub trait Signer: Send + Sync {
    /// The public key.
    fn public_key(&self) -> PublicKey;
    /// Ed25519 signature of `message`.
    fn sign(&self, message: &[u8]) -> Result<[u8; 64], IdentityError>;
}

/// Why the identity could not be loaded, created or used.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// Reading, creating or writing the key file failed.
    #[error("key file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The file already exists (keys are never overwritten).
    #[error("key file {path} already exists; refusing to overwrite a key")]
    Exists {
        /// The file.
        path: PathBuf,
    },
    /// Group or others may read or write the key file.
    #[error(
        "key file {path} has mode {mode:04o}: group/others may access it; \
         run `chmod 600 {path}` (a leaked key lets anyone sign as this hotspot)"
    )]
    Permissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The file is not an Ed25519 PKCS#8 document.
    #[error(
        "key file {path} is not a valid Ed25519 key (PKCS#8, DER): {why}. \
         Restore it from a backup of this hotspot's key. Without a backup, move it aside \
         (mv {path} {path}.damaged) and start gatewayd again: it creates a new key, and the \
         hotspot then has a new identity (a new address to onboard; reports and receipts \
         of the old key do not carry over to it)"
    )]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// The signer (e.g. a secure element) failed.
    #[error("signing failed: {0}")]
    Signing(String),
}

/// A file-based Ed25519 key pair.
#[derive(Debug)]
pub struct KeyFileSigner {
    pair: Ed25519KeyPair,
    path: PathBuf,
}

impl KeyFileSigner {
    /// Load the key at `path`, creating it (mode 0600) if it does not exist yet.
    pub fn load_or_create(path: &Path) -> Result<KeyFileSigner, IdentityError> {
        match Self::generate(path) {
            Ok(s) => Ok(s),
            Err(IdentityError::Exists { .. }) => Self::load(path),
            Err(e) => Err(e),
        }
    }

    /// Create a new key at `path` with mode 0600; fails if the file exists.
    pub fn generate(path: &Path) -> Result<KeyFileSigner, IdentityError> {
        let io = |source| IdentityError::Io {
            path: path.to_owned(),
            source,
        };
        let rng = SystemRandom::new();
        let doc = Ed25519KeyPair::generate_pkcs8(&rng)
            .map_err(|_| IdentityError::Signing("the system RNG failed".into()))?;
        if path.exists() {
            return Err(IdentityError::Exists {
                path: path.to_owned(),
            });
        }
        // Written whole to a temp file and synced, then linked into place (which fails if the
        // key appeared meanwhile): a full disk or a crash never leaves a truncated key behind.
        let mut tmp_name = path.as_os_str().to_owned();
        tmp_name.push(".tmp");
        let tmp = PathBuf::from(tmp_name);
        let _ = std::fs::remove_file(&tmp);
        let written = crate::private_file::create_new(&tmp)
            .and_then(|mut file| {
                file.write_all(doc.as_ref())?;
                file.sync_all()
            })
            .and_then(|()| std::fs::hard_link(&tmp, path));
        let _ = std::fs::remove_file(&tmp);
        match written {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(IdentityError::Exists {
                    path: path.to_owned(),
                })
            }
            Err(e) => return Err(io(e)),
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
        }
        Self::from_pkcs8(path, doc.as_ref())
    }

    /// Load the key at `path`; refuses a file group or others may access.
    pub fn load(path: &Path) -> Result<KeyFileSigner, IdentityError> {
        let io = |source| IdentityError::Io {
            path: path.to_owned(),
            source,
        };
        let file = File::open(path).map_err(io)?;
        let meta = file.metadata().map_err(io)?;
        let mode = meta.mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(IdentityError::Permissions {
                path: path.to_owned(),
                mode,
            });
        }
        if meta.len() > MAX_KEY_FILE {
            return Err(IdentityError::Malformed {
                path: path.to_owned(),
                why: format!(
                    "it is {} bytes, far too long for a key (an Ed25519 key file is {V2_LEN})",
                    meta.len()
                ),
            });
        }
        let mut bytes = Vec::new();
        file.take(MAX_KEY_FILE)
            .read_to_end(&mut bytes)
            .map_err(io)?;
        Self::from_pkcs8(path, &bytes)
    }

    fn from_pkcs8(path: &Path, bytes: &[u8]) -> Result<KeyFileSigner, IdentityError> {
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(bytes).map_err(|e| {
            IdentityError::Malformed {
                path: path.to_owned(),
                why: what_is_wrong(bytes, &e.to_string()),
            }
        })?;
        Ok(KeyFileSigner {
            pair,
            path: path.to_owned(),
        })
    }

    /// The key file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Length of the PKCS#8 v2 document `ring` writes (with the public key).
const V2_LEN: usize = 83;
/// Length of a PKCS#8 v1 document (no public key, as `openssl genpkey` writes it).
const V1_LEN: usize = 48;

/// What is wrong with the key file `bytes` that `ring` rejected with `rejected`, in words.
fn what_is_wrong(bytes: &[u8], rejected: &str) -> String {
    let len = bytes.len();
    if len == 0 {
        return "the file is empty (0 bytes)".into();
    }
    if bytes.starts_with(b"-----BEGIN") {
        return "it is PEM text; gatewayd reads the binary DER form \
                (`openssl pkey -in FILE -outform DER -out identity.pk8` converts it)"
            .into();
    }
    if bytes[0] != 0x30 {
        return format!(
            "it does not start like a DER document (first byte 0x{:02x}, not 0x30): it is not \
             a key file",
            bytes[0]
        );
    }
    // Short-form DER length: the whole document is 2 + bytes[1] long.
    let short_len = bytes.get(1).copied().unwrap_or(0);
    let declared = usize::from(short_len) + 2;
    if short_len < 0x80 && declared != len {
        let what = if len < declared {
            "truncated"
        } else {
            "followed by other data"
        };
        let plural = if len == 1 { "" } else { "s" };
        return format!(
            "it is {len} byte{plural} where its DER header announces {declared} \
             (an Ed25519 key file is {V2_LEN}, or {V1_LEN} without its public key): it is {what}"
        );
    }
    match rejected {
        "WrongAlgorithm" => "it holds a key of another algorithm, not Ed25519".into(),
        "InconsistentComponents" => {
            "its public key does not belong to its private key: the file is corrupted".into()
        }
        "VersionNotSupported" => "its PKCS#8 version is not one gatewayd reads (1 or 2)".into(),
        "InvalidEncoding" => format!(
            "its {len} bytes are not a well-formed PKCS#8 document of an Ed25519 key \
             (corrupted, or another kind of file)"
        ),
        other => format!("the Ed25519 key reader rejected it ({other})"),
    }
}

impl Signer for KeyFileSigner {
    fn public_key(&self) -> PublicKey {
        let mut k = [0u8; 32];
        k.copy_from_slice(self.pair.public_key().as_ref());
        PublicKey(k)
    }

    fn sign(&self, message: &[u8]) -> Result<[u8; 64], IdentityError> {
        let sig = self.pair.sign(message);
        let mut out = [0u8; 64];
        out.copy_from_slice(sig.as_ref());
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::OpenOptions;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};

    #[test]
    fn created_with_mode_0600_and_reloaded_with_the_same_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(KEY_FILE_NAME);
        let a = KeyFileSigner::load_or_create(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let b = KeyFileSigner::load_or_create(&path).unwrap();
        assert_eq!(a.public_key(), b.public_key());
        let sig = b.sign(b"hello").unwrap();
        assert!(a.public_key().verify(b"hello", &sig));
        assert!(!a.public_key().verify(b"hellO", &sig));
        assert_eq!(a.public_key().address().len(), 64);
    }

    #[test]
    fn generate_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pk8");
        let a = KeyFileSigner::generate(&path).unwrap();
        let err = KeyFileSigner::generate(&path).unwrap_err();
        assert!(matches!(err, IdentityError::Exists { .. }), "{err}");
        assert_eq!(
            KeyFileSigner::load(&path).unwrap().public_key(),
            a.public_key()
        );
    }

    #[test]
    fn group_or_world_accessible_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pk8");
        KeyFileSigner::generate(&path).unwrap();
        for mode in [0o640, 0o604, 0o660, 0o644] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let err = KeyFileSigner::load(&path).unwrap_err();
            assert!(matches!(err, IdentityError::Permissions { .. }), "{err}");
            let msg = err.to_string();
            assert!(msg.contains("k.pk8") && msg.contains("chmod 600"), "{msg}");
        }
    }

    /// A valid key file's bytes.
    fn key_bytes(dir: &Path) -> Vec<u8> {
        let path = dir.join("good.pk8");
        KeyFileSigner::generate(&path).unwrap();
        std::fs::read(path).unwrap()
    }

    #[test]
    fn a_damaged_key_file_is_described_in_words_with_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let good = key_bytes(dir.path());
        assert_eq!(good.len(), V2_LEN);
        let changed = |at: usize, to: &[u8]| {
            let mut b = good.clone();
            b[at..at + to.len()].copy_from_slice(to);
            b
        };
        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            ("empty", vec![], "the file is empty (0 bytes)"),
            (
                "one-byte",
                vec![0x30],
                "it is 1 byte where its DER header announces 2",
            ),
            (
                "truncated",
                good[..40].to_vec(),
                "it is 40 bytes where its DER header announces 83 (an Ed25519 key file is 83, \
                 or 48 without its public key): it is truncated",
            ),
            (
                "one-byte-short",
                good[..82].to_vec(),
                "it is 82 bytes where its DER header announces 83",
            ),
            (
                "extra-bytes",
                [&good[..], b"\n"].concat(),
                "it is 84 bytes where its DER header announces 83 (an Ed25519 key file is 83, \
                 or 48 without its public key): it is followed by other data",
            ),
            ("text", b"not a key".to_vec(), "first byte 0x6e, not 0x30"),
            (
                "PEM",
                b"-----BEGIN PRIVATE KEY-----\nMC4CAQAw...\n".to_vec(),
                "it is PEM text",
            ),
            // The algorithm OID 1.3.101.112 (Ed25519) made 1.3.101.110 (X25519).
            (
                "X25519",
                changed(9, &[0x2b, 0x65, 0x6e]),
                "another algorithm, not Ed25519",
            ),
            // The last byte of the public key.
            (
                "public-key",
                changed(82, &[good[82] ^ 1]),
                "its public key does not belong to its private key",
            ),
            // The PKCS#8 version INTEGER made a BIT STRING.
            (
                "structure",
                changed(2, &[0x03]),
                "its 83 bytes are not a well-formed PKCS#8 document",
            ),
        ];
        for (name, bytes, why) in cases {
            let path = dir.path().join(format!("{name}.pk8"));
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .unwrap()
                .write_all(&bytes)
                .unwrap();
            let err = KeyFileSigner::load(&path).unwrap_err();
            let msg = err.to_string();
            assert!(
                matches!(err, IdentityError::Malformed { .. }),
                "{name}: {msg}"
            );
            let p = path.display();
            for part in [
                &format!("key file {p} is not a valid Ed25519 key (PKCS#8, DER): "),
                why,
                "Restore it from a backup",
                &format!("mv {p} {p}.damaged"),
                "new identity",
            ] {
                assert!(msg.contains(part), "{name}: {part:?} not in {msg}");
            }
            assert!(!msg.contains("InvalidEncoding"), "{name}: {msg}");
        }
    }

    #[test]
    fn malformed_file_is_refused_with_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.pk8");
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .unwrap()
            .write_all(b"not a key")
            .unwrap();
        let err = KeyFileSigner::load_or_create(&path).unwrap_err();
        assert!(matches!(err, IdentityError::Malformed { .. }), "{err}");
        assert!(err.to_string().contains("bad.pk8"));
        // Unchanged: the bad file is not replaced by a new key.
        assert_eq!(std::fs::read(&path).unwrap(), b"not a key");
    }
}
