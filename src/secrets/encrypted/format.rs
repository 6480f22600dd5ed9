//! The store's file format (version 1, see the parent module): the
//! header, the Argon2id key derivation and key check, the plaintext JSON;
//! and ToolHive's format, read for the import.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use rand::RngCore;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::io_err;
use crate::secrets::SecretsError;

/// The file magic.
pub const MAGIC: &[u8; 8] = b"BERTHSEC";
/// The format version this berth writes and reads.
pub const FORMAT_VERSION: u16 = 1;
/// KDF id of Argon2id (version 0x13).
pub const KDF_ARGON2ID: u8 = 1;

pub(super) const SALT_LEN: usize = 16;
pub(super) const KCV_LEN: usize = 16;
pub(super) const CHECKSUM_LEN: usize = 8;
pub(super) const NONCE_LEN: usize = 12;
pub(super) const TAG_LEN: usize = 16;
pub(super) const KCV_OFFSET: usize = 39;
pub(super) const CHECKSUM_OFFSET: usize = KCV_OFFSET + KCV_LEN; // 55
pub(super) const HEADER_LEN: usize = CHECKSUM_OFFSET + CHECKSUM_LEN; // 63
pub(super) const BODY_OFFSET: usize = HEADER_LEN + NONCE_LEN; // 75
pub(super) const MIN_FILE_LEN: usize = BODY_OFFSET + TAG_LEN;
/// The largest store file read: every secret at its largest would not fit,
/// but a store that large is no longer a small local store.
pub(super) const MAX_FILE_LEN: usize = 256 * 1024 * 1024;
pub(super) const KCV_CONTEXT: &[u8] = b"berth-secrets key check v1";
/// Refuse KDF parameters beyond these (a damaged or hostile header must not
/// make berth allocate gigabytes or spin for minutes): at most 1 GiB, 16
/// passes, 16 lanes, and 4 GiB of memory passes in all (a few seconds).
pub(super) const MAX_M_COST: u32 = 1024 * 1024; // KiB
pub(super) const MAX_T_COST: u32 = 16;
pub(super) const MAX_P_COST: u32 = 16;
pub(super) const MAX_WORK: u64 = 4 * 1024 * 1024; // m_cost × t_cost, KiB

/// Argon2id parameters, as recorded in a store's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KdfParams {
    /// Memory in KiB.
    pub m_cost: u32,
    /// Iterations.
    pub t_cost: u32,
    /// Lanes.
    pub p_cost: u32,
}

impl KdfParams {
    /// What berth uses for new stores: 96 MiB, 3 passes, 1 lane (above
    /// OWASP's Argon2id minimums). One unlock took about 0.2 s on a 2-core
    /// Xeon VM in a release build (`cargo bench --bench secrets`, results in
    /// `bench/results/2026-12-06-secrets.md`); 64 MiB took 0.12 s, too close
    /// to the 0.1 s floor.
    pub const PRODUCTION: KdfParams = KdfParams {
        m_cost: 96 * 1024,
        t_cost: 3,
        p_cost: 1,
    };

    pub(super) fn argon2(&self) -> Result<argon2::Argon2<'static>, String> {
        if self.m_cost > MAX_M_COST
            || self.t_cost > MAX_T_COST
            || self.p_cost > MAX_P_COST
            || u64::from(self.m_cost) * u64::from(self.t_cost) > MAX_WORK
        {
            return Err(format!(
                "Argon2 parameters out of range (m_cost {}, t_cost {}, p_cost {})",
                self.m_cost, self.t_cost, self.p_cost
            ));
        }
        let params = argon2::Params::new(self.m_cost, self.t_cost, self.p_cost, Some(32))
            .map_err(|e| format!("invalid Argon2 parameters: {e}"))?;
        Ok(argon2::Argon2::new(
            argon2::Algorithm::Argon2id,
            argon2::Version::V0x13,
            params,
        ))
    }
}

/// The parsed, checksummed header.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) struct Header {
    pub(super) kdf: KdfParams,
    pub(super) salt: [u8; SALT_LEN],
    pub(super) kcv: [u8; KCV_LEN],
}

impl Header {
    pub(super) fn encode(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[0..8].copy_from_slice(MAGIC);
        h[8..10].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        h[10] = KDF_ARGON2ID;
        h[11..15].copy_from_slice(&self.kdf.m_cost.to_le_bytes());
        h[15..19].copy_from_slice(&self.kdf.t_cost.to_le_bytes());
        h[19..23].copy_from_slice(&self.kdf.p_cost.to_le_bytes());
        h[23..39].copy_from_slice(&self.salt);
        h[KCV_OFFSET..CHECKSUM_OFFSET].copy_from_slice(&self.kcv);
        let sum = Sha256::digest(&h[..CHECKSUM_OFFSET]);
        h[CHECKSUM_OFFSET..].copy_from_slice(&sum[..CHECKSUM_LEN]);
        h
    }

    /// Parses the header of `bytes` (a whole, non-empty file).
    pub(super) fn decode(bytes: &[u8], path: &Path) -> Result<Header, SecretsError> {
        let bad = |what: &str| {
            SecretsError::Unavailable(format!(
                "the secrets store {} is corrupt: {what}; the file was left untouched",
                path.display()
            ))
        };
        if bytes.len() < 8 || &bytes[0..8] != MAGIC {
            return Err(bad("it is not a berth secrets file (bad magic)"));
        }
        if bytes.len() < 10 {
            return Err(bad("it is truncated"));
        }
        let version = u16::from_le_bytes([bytes[8], bytes[9]]);
        if version != FORMAT_VERSION {
            return Err(SecretsError::Unavailable(format!(
                "the secrets store {} has format version {version}; this berth reads version \
                 {FORMAT_VERSION} only (written by a newer berth?); the file was left untouched",
                path.display()
            )));
        }
        if bytes.len() < MIN_FILE_LEN {
            return Err(bad("it is truncated"));
        }
        let sum = Sha256::digest(&bytes[..CHECKSUM_OFFSET]);
        if bytes[CHECKSUM_OFFSET..HEADER_LEN] != sum[..CHECKSUM_LEN] {
            return Err(bad("the header checksum does not match"));
        }
        if bytes[10] != KDF_ARGON2ID {
            return Err(bad(&format!("unknown KDF id {}", bytes[10])));
        }
        let u32_at =
            |o: usize| u32::from_le_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]);
        let mut salt = [0u8; SALT_LEN];
        salt.copy_from_slice(&bytes[23..39]);
        let mut kcv = [0u8; KCV_LEN];
        kcv.copy_from_slice(&bytes[KCV_OFFSET..CHECKSUM_OFFSET]);
        Ok(Header {
            kdf: KdfParams {
                m_cost: u32_at(11),
                t_cost: u32_at(15),
                p_cost: u32_at(19),
            },
            salt,
            kcv,
        })
    }
}

/// A derived key, with the header parameters it belongs to.
pub(super) struct DerivedKey {
    pub(super) kdf: KdfParams,
    pub(super) salt: [u8; SALT_LEN],
    pub(super) key: Zeroizing<[u8; 32]>,
}

impl DerivedKey {
    pub(super) fn derive(
        password: &[u8],
        kdf: KdfParams,
        salt: [u8; SALT_LEN],
    ) -> Result<Self, String> {
        let mut key = Zeroizing::new([0u8; 32]);
        kdf.argon2()?
            .hash_password_into(password, &salt, &mut key[..])
            .map_err(|e| format!("key derivation failed: {e}"))?;
        Ok(DerivedKey { kdf, salt, key })
    }

    pub(super) fn kcv(&self) -> [u8; KCV_LEN] {
        let mut h = Sha256::new();
        h.update(KCV_CONTEXT);
        h.update(&self.key[..]);
        let d = h.finalize();
        let mut out = [0u8; KCV_LEN];
        out.copy_from_slice(&d[..KCV_LEN]);
        out
    }
}

/// Name → value, sorted by name.
pub(super) type SecretMap = BTreeMap<String, Zeroizing<String>>;

pub(super) fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    rand::rng().fill_bytes(&mut b);
    b
}

pub(super) fn parse_plaintext(plain: &[u8], path: &Path) -> Result<SecretMap, SecretsError> {
    #[derive(serde::Deserialize)]
    struct Doc {
        secrets: BTreeMap<String, String>,
    }
    let doc: Doc = serde_json::from_slice(plain).map_err(|e| {
        SecretsError::Unavailable(format!(
            "the secrets store {} decrypted but its content is not valid (line {}, column {}); \
             the file was left untouched",
            path.display(),
            e.line(),
            e.column()
        ))
    })?;
    Ok(doc
        .secrets
        .into_iter()
        .map(|(k, v)| (k, Zeroizing::new(v)))
        .collect())
}

pub(super) fn serialize_plaintext(map: &SecretMap) -> Zeroizing<Vec<u8>> {
    // Reserve enough up front that the buffer is not reallocated (which would
    // leave an un-zeroized copy behind) in the common case.
    let estimate: usize = map.iter().map(|(k, v)| 2 * (k.len() + v.len()) + 8).sum();
    let mut buf = Zeroizing::new(Vec::with_capacity(estimate + 32));
    // Borrowed strings: no unzeroized copy of a value (a `serde_json::Value`
    // would make one).
    #[derive(serde::Serialize)]
    struct Doc<'a> {
        secrets: BTreeMap<&'a str, &'a str>,
    }
    let doc = Doc {
        secrets: map.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect(),
    };
    serde_json::to_writer(&mut *buf, &doc).expect("serializing strings cannot fail");
    buf
}

/// Decrypts a ToolHive `encrypted` store.
pub(super) fn read_toolhive(file: &Path, password: &str) -> Result<SecretMap, SecretsError> {
    let meta =
        fs::metadata(file).map_err(|e| io_err("cannot read the ToolHive secrets file", file, e))?;
    if meta.len() > MAX_FILE_LEN as u64 {
        return Err(SecretsError::Invalid(format!(
            "the ToolHive secrets file {} is larger than {} MiB",
            file.display(),
            MAX_FILE_LEN >> 20
        )));
    }
    let bytes = Zeroizing::new(
        fs::read(file).map_err(|e| io_err("cannot read the ToolHive secrets file", file, e))?,
    );
    if bytes.is_empty() {
        return Ok(SecretMap::new());
    }
    if bytes.len() < NONCE_LEN + TAG_LEN {
        return Err(SecretsError::Invalid(format!(
            "the ToolHive secrets file {} is truncated",
            file.display()
        )));
    }
    let key = Zeroizing::new(<[u8; 32]>::from(Sha256::digest(password.as_bytes())));
    let cipher = Aes256Gcm::new_from_slice(&key[..]).expect("32-byte key");
    let mut buf = Zeroizing::new(bytes[NONCE_LEN..].to_vec());
    cipher
        .decrypt_in_place(Nonce::from_slice(&bytes[..NONCE_LEN]), b"", &mut *buf)
        .map_err(|_| {
            SecretsError::Denied(format!(
                "wrong password for the ToolHive secrets file {} (or the file is damaged)",
                file.display()
            ))
        })?;
    parse_plaintext(&buf, file)
}
