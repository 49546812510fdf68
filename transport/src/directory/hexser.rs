//! Serde helpers: fixed-size byte arrays as lowercase hex strings.

use data_encoding::HEXLOWER_PERMISSIVE as HEX;
use serde::{de::Error, Deserialize, Deserializer, Serializer};

/// Serialises `[u8; N]` as hex.
pub fn serialize<S: Serializer, const N: usize>(v: &[u8; N], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&HEX.encode(v))
}

/// Deserialises `[u8; N]` from hex, refusing wrong lengths.
pub fn deserialize<'de, D: Deserializer<'de>, const N: usize>(d: D) -> Result<[u8; N], D::Error> {
    let s = String::deserialize(d)?;
    let v = HEX.decode(s.as_bytes()).map_err(D::Error::custom)?;
    v.try_into()
        .map_err(|_| D::Error::custom("wrong key length"))
}
