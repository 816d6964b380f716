//! golang/groupcache's `groupcachepb.GetResponse`, the body of a groupcache-dialect `200`.

use bytes::Bytes;

/// `message GetResponse { optional bytes value = 1; optional double minute_qps = 2; }`
/// (proto2), written by hand instead of generated: it is the only message this crate needs.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct GetResponse {
    /// The value's bytes.
    #[prost(bytes = "bytes", optional, tag = "1")]
    pub(crate) value: Option<Bytes>,
    /// The owner's recent request rate for the key; groupcache never sends it, nobody reads it.
    #[prost(double, optional, tag = "2")]
    pub(crate) minute_qps: Option<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn wire_bytes_match_groupcache() {
        let msg = GetResponse {
            value: Some(Bytes::from_static(b"hi")),
            minute_qps: None,
        };
        // field 1, wire type 2, length 2, "hi": what Go's proto.Marshal writes.
        assert_eq!(msg.encode_to_vec(), b"\x0a\x02hi");
        let with_qps = b"\x0a\x02hi\x11\x00\x00\x00\x00\x00\x00\xf0\x3f";
        let decoded = GetResponse::decode(&with_qps[..]).unwrap();
        assert_eq!(decoded.value.as_deref(), Some(&b"hi"[..]));
        assert_eq!(decoded.minute_qps, Some(1.0));
        assert!(GetResponse::decode(&b"\x0a\x05hi"[..]).is_err());
    }
}
