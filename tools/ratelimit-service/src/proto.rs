//! The few messages of Envoy's rate-limit service API (RLS v3) this service speaks, declared by
//! hand with prost (no protoc at build time). Field numbers follow
//! `envoy/service/ratelimit/v3/rls.proto`, `envoy/extensions/common/ratelimit/v3/ratelimit.proto`
//! and `envoy/config/core/v3/base.proto`; fields not declared here are skipped on decode, as
//! protobuf allows.

/// Full gRPC path of the one method served.
pub const SHOULD_RATE_LIMIT_PATH: &str =
    "/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit";
/// gRPC service name.
pub const SERVICE_NAME: &str = "envoy.service.ratelimit.v3.RateLimitService";

/// `envoy.service.ratelimit.v3.RateLimitRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RateLimitRequest {
    /// Becomes the limitador namespace.
    #[prost(string, tag = "1")]
    pub domain: String,
    #[prost(message, repeated, tag = "2")]
    pub descriptors: Vec<RateLimitDescriptor>,
    /// 0 (unset) counts as 1.
    #[prost(uint32, tag = "3")]
    pub hits_addend: u32,
}

/// `envoy.extensions.common.ratelimit.v3.RateLimitDescriptor`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RateLimitDescriptor {
    #[prost(message, repeated, tag = "1")]
    pub entries: Vec<rate_limit_descriptor::Entry>,
    /// Accepted on the wire and ignored (Limitador ignores it too).
    #[prost(message, optional, tag = "2")]
    pub limit: Option<rate_limit_descriptor::RateLimitOverride>,
    /// `google.protobuf.UInt64Value hits_addend = 3`: prost encodes `Option<u64>` as that
    /// wrapper message.
    #[prost(message, optional, tag = "3")]
    pub hits_addend: Option<u64>,
}

pub mod rate_limit_descriptor {
    /// One `key: value` entry of a descriptor.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Entry {
        #[prost(string, tag = "1")]
        pub key: String,
        #[prost(string, tag = "2")]
        pub value: String,
    }

    /// `RateLimitDescriptor.RateLimitOverride` (unit is `envoy.type.v3.RateLimitUnit`).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct RateLimitOverride {
        #[prost(uint32, tag = "1")]
        pub requests_per_unit: u32,
        #[prost(int32, tag = "2")]
        pub unit: i32,
    }
}

/// `envoy.service.ratelimit.v3.RateLimitResponse` (without `raw_body`, `dynamic_metadata`,
/// `quota`, which this service never sets).
#[derive(Clone, PartialEq, prost::Message)]
pub struct RateLimitResponse {
    #[prost(enumeration = "rate_limit_response::Code", tag = "1")]
    pub overall_code: i32,
    /// Always empty in replies from this service, as with Limitador.
    #[prost(message, repeated, tag = "2")]
    pub statuses: Vec<rate_limit_response::DescriptorStatus>,
    #[prost(message, repeated, tag = "3")]
    pub response_headers_to_add: Vec<HeaderValue>,
    #[prost(message, repeated, tag = "4")]
    pub request_headers_to_add: Vec<HeaderValue>,
}

pub mod rate_limit_response {
    /// `RateLimitResponse.Code`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
    #[repr(i32)]
    pub enum Code {
        Unknown = 0,
        Ok = 1,
        OverLimit = 2,
    }

    /// `RateLimitResponse.RateLimit` (unit: 0 unknown, 1 second, 2 minute, 3 hour, 4 day, ...).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct RateLimit {
        #[prost(string, tag = "3")]
        pub name: String,
        #[prost(uint32, tag = "1")]
        pub requests_per_unit: u32,
        #[prost(int32, tag = "2")]
        pub unit: i32,
    }

    /// `RateLimitResponse.DescriptorStatus` (declared so clients can decode a reply from a
    /// service that fills it, e.g. envoyproxy/ratelimit; `duration_until_reset` is skipped).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct DescriptorStatus {
        #[prost(enumeration = "Code", tag = "1")]
        pub code: i32,
        #[prost(message, optional, tag = "2")]
        pub current_limit: Option<RateLimit>,
        #[prost(uint32, tag = "3")]
        pub limit_remaining: u32,
    }
}

/// `envoy.config.core.v3.HeaderValue`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HeaderValue {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(string, tag = "2")]
    pub value: String,
    #[prost(bytes = "vec", tag = "3")]
    pub raw_value: Vec<u8>,
}

impl RateLimitDescriptor {
    /// A descriptor from `(key, value)` pairs, in order, without a descriptor-level hits_addend.
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        RateLimitDescriptor {
            entries: pairs
                .into_iter()
                .map(|(key, value)| rate_limit_descriptor::Entry {
                    key: key.into(),
                    value: value.into(),
                })
                .collect(),
            limit: None,
            hits_addend: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::rate_limit_response::Code;
    use super::*;
    use prost::Message;

    #[test]
    fn replies_on_the_wire() {
        let reply = |code: Code| RateLimitResponse {
            overall_code: code as i32,
            statuses: vec![],
            response_headers_to_add: vec![],
            request_headers_to_add: vec![],
        };
        // OK is field 1 = 1, OVER_LIMIT field 1 = 2, UNKNOWN (0, the default) is an empty body.
        assert_eq!(reply(Code::Ok).encode_to_vec(), [0x08, 0x01]);
        assert_eq!(reply(Code::OverLimit).encode_to_vec(), [0x08, 0x02]);
        assert!(reply(Code::Unknown).encode_to_vec().is_empty());
    }

    #[test]
    fn request_with_descriptor_hits_addend_on_the_wire() {
        let mut d = RateLimitDescriptor::from_pairs([("usage", "tokens")]);
        d.hits_addend = Some(300);
        let req = RateLimitRequest {
            domain: "d".into(),
            descriptors: vec![d],
            hits_addend: 0,
        };
        let bytes = req.encode_to_vec();
        #[rustfmt::skip]
        let expected: &[u8] = &[
            0x0a, 0x01, b'd',                              // domain = "d"
            0x12, 0x16,                                    // descriptors[0], 22 bytes
              0x0a, 0x0f,                                  //   entries[0], 15 bytes
                0x0a, 0x05, b'u', b's', b'a', b'g', b'e',  //     key = "usage"
                0x12, 0x06, b't', b'o', b'k', b'e', b'n', b's', // value = "tokens"
              0x1a, 0x03, 0x08, 0xac, 0x02,                //   hits_addend = UInt64Value{300}
        ];
        assert_eq!(bytes, expected);
        assert_eq!(RateLimitRequest::decode(expected).unwrap(), req);
    }
}
