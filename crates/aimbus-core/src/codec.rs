//! MessagePack (a map with named fields) and JSON, with the same field names, and decoding
//! of untrusted bytes that is bounded in size and nesting before any parser allocates.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Error;

/// serde_json stops at 128 levels on its own; a larger configured limit could never apply.
pub const MAX_SUPPORTED_DEPTH: usize = 128;

/// A wire format, chosen by content type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    MessagePack,
    Json,
}

impl Format {
    /// Parses a `Content-Type` value; parameters such as `charset` are ignored.
    pub fn from_content_type(content_type: &str) -> Result<Format, Error> {
        let essence = content_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        match essence.as_str() {
            "application/msgpack" | "application/x-msgpack" | "application/vnd.msgpack" => {
                Ok(Format::MessagePack)
            }
            "application/json" => Ok(Format::Json),
            _ => Err(Error::UnsupportedContentType(content_type.to_owned())),
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::MessagePack => "application/msgpack",
            Format::Json => "application/json",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Format::MessagePack => "msgpack",
            Format::Json => "json",
        }
    }
}

/// Bounds on what a decoder accepts from the outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    pub max_bytes: usize,
    /// Containers (maps, arrays) open at once; the message itself is level 1.
    pub max_depth: usize,
}

/// Encodes and decodes bus values under fixed [`DecodeLimits`].
#[derive(Debug, Clone, Copy)]
pub struct Codec {
    limits: DecodeLimits,
    compression: Option<Compression>,
}

/// When and how hard bodies are compressed on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compression {
    /// 1 (fastest) to 9 (smallest).
    pub level: u32,
    /// Bodies larger than this many bytes are compressed.
    pub threshold_bytes: usize,
}

/// The content encoding of a gzip-compressed body.
pub const GZIP: &str = "gzip";

impl Codec {
    pub fn new(limits: DecodeLimits) -> Codec {
        Codec {
            limits,
            compression: None,
        }
    }

    /// Compresses bodies above the threshold on the way out (`compress`); any codec
    /// decompresses (`decompress`), whatever its own setting.
    /// The size and depth limits it decodes under.
    pub fn limits(&self) -> DecodeLimits {
        self.limits
    }

    pub fn with_compression(mut self, compression: Option<Compression>) -> Codec {
        self.compression = compression;
        self
    }

    /// The body as it travels, and its content encoding when compressed.
    pub fn compress(&self, body: Vec<u8>) -> Result<(Vec<u8>, Option<&'static str>), Error> {
        let Some(compression) = self.compression.filter(|c| body.len() > c.threshold_bytes) else {
            return Ok((body, None));
        };
        let mut encoder = flate2::write::GzEncoder::new(
            Vec::with_capacity(body.len() / 2),
            flate2::Compression::new(compression.level),
        );
        let failed = |e: std::io::Error| Error::Encode {
            format: GZIP,
            reason: e.to_string(),
        };
        std::io::Write::write_all(&mut encoder, &body).map_err(failed)?;
        Ok((encoder.finish().map_err(failed)?, Some(GZIP)))
    }

    /// The body a sender compressed with `encoding`, inflated to at most the size limit,
    /// so a small hostile body cannot expand without bound.
    pub fn decompress<'a>(
        &self,
        body: &'a [u8],
        encoding: Option<&str>,
    ) -> Result<std::borrow::Cow<'a, [u8]>, Error> {
        match encoding {
            None | Some("identity") => Ok(std::borrow::Cow::Borrowed(body)),
            Some(GZIP) => {
                let limit = self.limits.max_bytes;
                let mut inflated = Vec::new();
                let mut reader =
                    std::io::Read::take(flate2::read::GzDecoder::new(body), limit as u64 + 1);
                std::io::Read::read_to_end(&mut reader, &mut inflated).map_err(|e| {
                    Error::Decode {
                        format: GZIP,
                        reason: e.to_string(),
                    }
                })?;
                if inflated.len() > limit {
                    return Err(Error::TooLarge {
                        size: inflated.len(),
                        limit,
                    });
                }
                Ok(std::borrow::Cow::Owned(inflated))
            }
            Some(other) => Err(Error::Decode {
                format: "content-encoding",
                reason: format!("`{other}` is not supported: use gzip or none"),
            }),
        }
    }

    pub fn encode<T: Serialize>(&self, format: Format, value: &T) -> Result<Vec<u8>, Error> {
        let encoded = match format {
            // Named fields, so any language's MessagePack library reads a plain map.
            Format::MessagePack => rmp_serde::to_vec_named(value).map_err(|e| e.to_string()),
            Format::Json => serde_json::to_vec(value).map_err(|e| e.to_string()),
        };
        encoded.map_err(|reason| Error::Encode {
            format: format.name(),
            reason,
        })
    }

    /// Decodes untrusted bytes. Size and depth are checked by a scan that allocates
    /// nothing, so a hostile input is refused before a parser sees it.
    pub fn decode<T: DeserializeOwned>(&self, format: Format, bytes: &[u8]) -> Result<T, Error> {
        if bytes.len() > self.limits.max_bytes {
            return Err(Error::TooLarge {
                size: bytes.len(),
                limit: self.limits.max_bytes,
            });
        }
        let decode_error = |reason: String| Error::Decode {
            format: format.name(),
            reason,
        };
        match format {
            Format::Json => {
                check_json_depth(bytes, self.limits.max_depth)?;
                serde_json::from_slice(bytes).map_err(|e| decode_error(e.to_string()))
            }
            Format::MessagePack => {
                check_msgpack_shape(bytes, self.limits.max_depth)?;
                rmp_serde::from_slice(bytes).map_err(|e| decode_error(e.to_string()))
            }
        }
    }
}

fn check_json_depth(bytes: &[u8], max_depth: usize) -> Result<(), Error> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in bytes {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > max_depth {
                    return Err(Error::TooDeep { limit: max_depth });
                }
            }
            // Unbalanced brackets are the parser's to report.
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// Walks MessagePack markers without decoding: checks nesting depth, that every declared
/// length fits in the bytes that remain (so no parser pre-allocates for a lie), and that
/// exactly one value is present.
fn check_msgpack_shape(mut input: &[u8], max_depth: usize) -> Result<(), Error> {
    use rmp::Marker;

    let malformed = |reason: &str| Error::Decode {
        format: Format::MessagePack.name(),
        reason: reason.to_owned(),
    };
    // Values still to read in each open container, innermost last.
    let mut open: Vec<u64> = Vec::new();
    loop {
        let (&first, rest) = input
            .split_first()
            .ok_or_else(|| malformed("unexpected end of input"))?;
        input = rest;
        let mut take = |n: usize| -> Result<u64, Error> {
            if input.len() < n {
                return Err(malformed("unexpected end of input"));
            }
            let (head, rest) = input.split_at(n);
            input = rest;
            Ok(head.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
        };
        let (skip, children) = match Marker::from_u8(first) {
            Marker::FixPos(_) | Marker::FixNeg(_) | Marker::Null | Marker::True | Marker::False => {
                (0, 0)
            }
            Marker::U8 | Marker::I8 => (1, 0),
            Marker::U16 | Marker::I16 => (2, 0),
            Marker::U32 | Marker::I32 | Marker::F32 => (4, 0),
            Marker::U64 | Marker::I64 | Marker::F64 => (8, 0),
            Marker::FixStr(n) => (u64::from(n), 0),
            Marker::Str8 | Marker::Bin8 => (take(1)?, 0),
            Marker::Str16 | Marker::Bin16 => (take(2)?, 0),
            Marker::Str32 | Marker::Bin32 => (take(4)?, 0),
            Marker::FixExt1 => (2, 0),
            Marker::FixExt2 => (3, 0),
            Marker::FixExt4 => (5, 0),
            Marker::FixExt8 => (9, 0),
            Marker::FixExt16 => (17, 0),
            Marker::Ext8 => (take(1)? + 1, 0),
            Marker::Ext16 => (take(2)? + 1, 0),
            Marker::Ext32 => (take(4)? + 1, 0),
            Marker::FixArray(n) => (0, u64::from(n)),
            Marker::Array16 => (0, take(2)?),
            Marker::Array32 => (0, take(4)?),
            Marker::FixMap(n) => (0, 2 * u64::from(n)),
            Marker::Map16 => (0, 2 * take(2)?),
            Marker::Map32 => (0, 2 * take(4)?),
            Marker::Reserved => return Err(malformed("reserved marker 0xc1")),
        };
        let skip = usize::try_from(skip).unwrap_or(usize::MAX);
        if skip > input.len() {
            return Err(malformed("a length exceeds the remaining input"));
        }
        input = &input[skip..];
        if let Some(remaining) = open.last_mut() {
            *remaining -= 1;
        }
        let is_container = matches!(
            Marker::from_u8(first),
            Marker::FixArray(_)
                | Marker::Array16
                | Marker::Array32
                | Marker::FixMap(_)
                | Marker::Map16
                | Marker::Map32
        );
        if is_container && children > 0 {
            // Each value takes at least one byte.
            if children > input.len() as u64 {
                return Err(malformed(
                    "a container declares more items than bytes remain",
                ));
            }
            open.push(children);
        }
        if is_container && open.len() + usize::from(children == 0) > max_depth {
            return Err(Error::TooDeep { limit: max_depth });
        }
        while open.last() == Some(&0) {
            open.pop();
        }
        if open.is_empty() {
            return if input.is_empty() {
                Ok(())
            } else {
                Err(malformed("trailing bytes after the message"))
            };
        }
    }
}

/// The bytes `value` takes as JSON, counted as it is written, with nothing allocated:
/// what the caches and dedup windows weigh an answer by (its in-memory form follows its
/// JSON closely; its wire form may be compressed and say little of the memory).
pub fn json_len(value: &impl serde::Serialize) -> usize {
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    // Only a value whose Serialize fails can fail here: weigh it as nothing.
    match serde_json::to_writer(&mut counter, value) {
        Ok(()) => counter.0,
        Err(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_len_is_the_length_of_the_json_without_writing_it_out() {
        let value = serde_json::json!({"a": [1, 2.5, "é\u{1F600}"], "b": {"c": null}});
        assert_eq!(json_len(&value), serde_json::to_vec(&value).unwrap().len());
        assert_eq!(json_len(&serde_json::Map::new()), 2);
    }

    #[test]
    fn bodies_above_the_threshold_travel_gzipped_and_come_back_whole() {
        let limits = DecodeLimits {
            max_bytes: 100_000,
            max_depth: 8,
        };
        let codec = Codec::new(limits).with_compression(Some(Compression {
            level: 6,
            threshold_bytes: 100,
        }));
        let small = vec![b'a'; 100];
        assert_eq!(codec.compress(small.clone()).unwrap(), (small, None));
        let large = b"abcdefgh".repeat(1000);
        let (wire, encoding) = codec.compress(large.clone()).unwrap();
        assert_eq!(encoding, Some(GZIP));
        assert!(wire.len() < large.len() / 10, "{}", wire.len());
        // Any codec opens it, compression on or not.
        let plain = Codec::new(limits);
        assert_eq!(&*plain.decompress(&wire, Some(GZIP)).unwrap(), &large[..]);
        assert_eq!(&*plain.decompress(&large, None).unwrap(), &large[..]);
    }

    #[test]
    fn a_gzip_bomb_stops_at_the_size_limit_and_odd_encodings_are_refused() {
        let big = Codec::new(DecodeLimits {
            max_bytes: 10_000_000,
            max_depth: 8,
        })
        .with_compression(Some(Compression {
            level: 9,
            threshold_bytes: 0,
        }));
        let (bomb, _) = big.compress(vec![0u8; 5_000_000]).unwrap();
        assert!(bomb.len() < 10_000, "{}", bomb.len());
        let small = Codec::new(DecodeLimits {
            max_bytes: 64 * 1024,
            max_depth: 8,
        });
        let error = small.decompress(&bomb, Some(GZIP)).unwrap_err();
        assert!(matches!(error, Error::TooLarge { .. }), "{error}");
        assert!(small.decompress(b"not gzip", Some(GZIP)).is_err());
        let error = small.decompress(b"x", Some("br")).unwrap_err();
        assert!(
            error.to_string().contains("`br` is not supported"),
            "{error}"
        );
    }
    use crate::IntegrationMessage;
    use proptest::prelude::*;
    use serde_json::{Value, json};

    const LIMITS: DecodeLimits = DecodeLimits {
        max_bytes: 64 * 1024,
        max_depth: 8,
    };

    fn codec() -> Codec {
        Codec::new(LIMITS)
    }

    fn nested(levels: usize) -> Value {
        (0..levels).fold(json!(1), |inner, _| json!([inner]))
    }

    #[test]
    fn content_types() {
        let f = Format::from_content_type;
        assert_eq!(f("application/json; charset=utf-8").unwrap(), Format::Json);
        assert_eq!(f("Application/MsgPack").unwrap(), Format::MessagePack);
        assert_eq!(f("application/x-msgpack").unwrap(), Format::MessagePack);
        assert!(matches!(
            f("text/plain"),
            Err(Error::UnsupportedContentType(_))
        ));
    }

    #[test]
    fn msgpack_is_a_map_with_named_fields() {
        let m = IntegrationMessage::new(
            "cmc",
            "hhni",
            "data_request",
            json!({"q": 1}).as_object().unwrap().clone(),
        );
        let bytes = codec().encode(Format::MessagePack, &m).unwrap();
        // Decoded as a generic value, the keys are the field names a JSON reader sees.
        let generic: Value = rmp_serde::from_slice(&bytes).unwrap();
        let json: Value = serde_json::to_value(&m).unwrap();
        assert_eq!(generic, json);
        let back: IntegrationMessage = codec().decode(Format::MessagePack, &bytes).unwrap();
        assert_eq!(back, m);
    }

    #[test]
    fn size_is_bounded() {
        let big = vec![b' '; LIMITS.max_bytes + 1];
        for format in [Format::Json, Format::MessagePack] {
            assert!(matches!(
                codec().decode::<Value>(format, &big),
                Err(Error::TooLarge { size, limit }) if size == LIMITS.max_bytes + 1 && limit == LIMITS.max_bytes
            ));
        }
    }

    #[test]
    fn depth_is_bounded_in_both_formats() {
        for format in [Format::Json, Format::MessagePack] {
            let ok = codec().encode(format, &nested(LIMITS.max_depth)).unwrap();
            assert_eq!(
                codec().decode::<Value>(format, &ok).unwrap(),
                nested(LIMITS.max_depth)
            );
            let deep = codec()
                .encode(format, &nested(LIMITS.max_depth + 1))
                .unwrap();
            assert!(
                matches!(
                    codec().decode::<Value>(format, &deep),
                    Err(Error::TooDeep { limit: 8 })
                ),
                "{format:?}"
            );
        }
        // Empty containers count as a level too.
        let empty_innermost = json!([[[[[[[[[]]]]]]]]]);
        let bytes = codec()
            .encode(Format::MessagePack, &empty_innermost)
            .unwrap();
        assert!(matches!(
            codec().decode::<Value>(Format::MessagePack, &bytes),
            Err(Error::TooDeep { .. })
        ));
        // Brackets inside strings are not nesting.
        let quoted = br#"{"a": "[[[[[[[[[[[[[[[[[[[[ \" [[[[[["}"#;
        codec().decode::<Value>(Format::Json, quoted).unwrap();
    }

    #[test]
    fn lying_lengths_are_refused_before_allocation() {
        // array32 declaring 4 billion items, map32 likewise, str32 of 4 GiB.
        for bytes in [
            &[0xdd, 0xff, 0xff, 0xff, 0xff, 0x01][..],
            &[0xdf, 0xff, 0xff, 0xff, 0xff, 0x01, 0x01][..],
            &[0xdb, 0xff, 0xff, 0xff, 0xff, b'a'][..],
            &[0xc6, 0xff, 0xff, 0xff, 0xff][..],
        ] {
            assert!(matches!(
                codec().decode::<Value>(Format::MessagePack, bytes),
                Err(Error::Decode { .. })
            ));
        }
    }

    #[test]
    fn malformed_input_is_a_typed_error() {
        for (format, bytes) in [
            (Format::Json, &b"{\"a\":"[..]),
            (Format::Json, &b""[..]),
            (Format::MessagePack, &[][..]),
            (Format::MessagePack, &[0xc1][..]),
            (Format::MessagePack, &[0x01, 0x02][..]),
            (Format::MessagePack, &[0x81, 0xa1][..]),
        ] {
            let err = codec()
                .decode::<IntegrationMessage>(format, bytes)
                .unwrap_err();
            assert!(
                matches!(err, Error::Decode { .. }),
                "{format:?} {bytes:?}: {err:?}"
            );
        }
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("JSON has no NaN or infinity", |f| f.is_finite())
                .prop_map(Value::from),
            ".{0,12}".prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
                prop::collection::btree_map(".{0,8}", inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn json_to_msgpack_round_trip_is_lossless(value in json_value()) {
            let codec = Codec::new(DecodeLimits { max_bytes: 1 << 20, max_depth: 16 });
            let json = codec.encode(Format::Json, &value).unwrap();
            let from_json: Value = codec.decode(Format::Json, &json).unwrap();
            let msgpack = codec.encode(Format::MessagePack, &from_json).unwrap();
            let from_msgpack: Value = codec.decode(Format::MessagePack, &msgpack).unwrap();
            prop_assert_eq!(&from_msgpack, &value);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            for format in [Format::Json, Format::MessagePack] {
                let _ = codec().decode::<IntegrationMessage>(format, &bytes);
                let _ = codec().decode::<Value>(format, &bytes);
            }
        }
    }
}
