//! Typed values: how a type becomes the bytes a galaxy caches, and back.

use bytes::Bytes;

use crate::{Error, ErrorKind};

/// A type that a galaxy can store and return: see [`Galaxy::get_as`](crate::Galaxy::get_as).
///
/// Implemented for [`Bytes`], `Vec<u8>` and `String`; `Json` (feature `json`) and
/// `Proto` (feature `protobuf`) wrap serde and prost types.
pub trait Codec: Sized {
    /// The bytes to cache.
    fn encode(&self) -> Result<Bytes, Error>;
    /// The value from cached bytes.
    fn decode(bytes: Bytes) -> Result<Self, Error>;
}

fn codec_error(what: &str, cause: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Codec, format!("{what}: {cause}"))
}

impl Codec for Bytes {
    fn encode(&self) -> Result<Bytes, Error> {
        Ok(self.clone())
    }
    fn decode(bytes: Bytes) -> Result<Self, Error> {
        Ok(bytes)
    }
}

impl Codec for Vec<u8> {
    fn encode(&self) -> Result<Bytes, Error> {
        Ok(Bytes::copy_from_slice(self))
    }
    fn decode(bytes: Bytes) -> Result<Self, Error> {
        Ok(bytes.to_vec())
    }
}

impl Codec for String {
    fn encode(&self) -> Result<Bytes, Error> {
        Ok(Bytes::copy_from_slice(self.as_bytes()))
    }
    fn decode(bytes: Bytes) -> Result<Self, Error> {
        String::from_utf8(bytes.to_vec()).map_err(|e| codec_error("value is not UTF-8", e))
    }
}

/// A serde type, cached as JSON.
#[cfg(feature = "json")]
#[cfg_attr(docsrs, doc(cfg(feature = "json")))]
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Json<T>(pub T);

#[cfg(feature = "json")]
impl<T: serde::Serialize + serde::de::DeserializeOwned> Codec for Json<T> {
    fn encode(&self) -> Result<Bytes, Error> {
        serde_json::to_vec(&self.0)
            .map(Bytes::from)
            .map_err(|e| codec_error("JSON encoding failed", e))
    }
    fn decode(bytes: Bytes) -> Result<Self, Error> {
        serde_json::from_slice(&bytes)
            .map(Json)
            .map_err(|e| codec_error("JSON decoding failed", e))
    }
}

/// A prost message, cached in its protobuf encoding.
#[cfg(feature = "protobuf")]
#[cfg_attr(docsrs, doc(cfg(feature = "protobuf")))]
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Proto<T>(pub T);

#[cfg(feature = "protobuf")]
impl<T: prost::Message + Default> Codec for Proto<T> {
    fn encode(&self) -> Result<Bytes, Error> {
        Ok(Bytes::from(self.0.encode_to_vec()))
    }
    fn decode(bytes: Bytes) -> Result<Self, Error> {
        T::decode(bytes)
            .map(Proto)
            .map_err(|e| codec_error("protobuf decoding failed", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_round_trip_and_bad_utf8_is_a_codec_error() {
        let s = "héllo".to_owned();
        assert_eq!(String::decode(s.encode().unwrap()).unwrap(), s);
        let err = String::decode(Bytes::from_static(&[0xff, 0xfe])).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Codec);
        let v = vec![1u8, 2, 3];
        assert_eq!(Vec::<u8>::decode(v.encode().unwrap()).unwrap(), v);
    }

    #[cfg(feature = "json")]
    #[test]
    fn json_round_trips() {
        #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
        struct User {
            id: u32,
            name: String,
        }
        let u = Json(User {
            id: 7,
            name: "ada".into(),
        });
        let back = Json::<User>::decode(u.encode().unwrap()).unwrap();
        assert_eq!(back.0, u.0);
        assert_eq!(
            Json::<User>::decode(Bytes::from_static(b"{"))
                .unwrap_err()
                .kind(),
            ErrorKind::Codec
        );
    }

    #[cfg(feature = "protobuf")]
    #[test]
    fn protobuf_round_trips() {
        #[derive(Clone, PartialEq, prost::Message)]
        struct Msg {
            #[prost(string, tag = "1")]
            name: String,
        }
        let m = Proto(Msg { name: "x".into() });
        assert_eq!(Proto::<Msg>::decode(m.encode().unwrap()).unwrap(), m);
    }
}
