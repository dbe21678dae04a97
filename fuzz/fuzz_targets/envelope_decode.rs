//! The envelope decoder on arbitrary bytes: as JSON, as MessagePack, and through the gzip
//! content encoding, under small limits. It may refuse anything; it must never panic,
//! hang or allocate past its limits.
#![no_main]

use aimbus_core::{Codec, DecodeLimits, Format, GZIP, IntegrationMessage};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let codec = Codec::new(DecodeLimits {
        max_bytes: 64 * 1024,
        max_depth: 32,
    });
    for format in [Format::Json, Format::MessagePack] {
        if let Ok(message) = codec.decode::<IntegrationMessage>(format, data) {
            let _ = message.validate();
            // What decodes encodes again, and that encoding is stable (bytes, not values:
            // a MessagePack NaN is not equal to itself).
            let again = codec
                .encode(format, &message)
                .expect("a decoded message encodes");
            let back: IntegrationMessage = codec.decode(format, &again).expect("and decodes");
            assert_eq!(codec.encode(format, &back).expect("encodes"), again);
        }
    }
    if let Ok(inflated) = codec.decompress(data, Some(GZIP)) {
        assert!(inflated.len() <= 64 * 1024);
        let _ = codec.decode::<IntegrationMessage>(Format::Json, &inflated);
    }
});
