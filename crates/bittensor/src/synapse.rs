//! The Synapse envelope as Python bittensor puts it on the wire: a JSON body with `dendrite` and
//! `axon` terminal infos plus the subclass fields, mirrored in `bt_header_*` headers.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha3::{Digest, Sha3_256};

/// sha3-256 of the empty string: the body hash of every synapse without `required_hash_fields`
/// (all of SN23's).
pub const EMPTY_BODY_HASH: &str =
    "a7ffc6f8bf1ed76651c14756a061d662f580ff4de43b49fa82d80a4b80f8434a";

/// One side of a call (`dendrite` = caller, `axon` = server), as bittensor's `TerminalInfo`.
/// Python dumps every field, `null` when unset; numbers arrive as numbers in bodies and as strings
/// in headers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TerminalInfo {
    #[serde(deserialize_with = "lenient::int")]
    pub status_code: Option<i64>,
    pub status_message: Option<String>,
    #[serde(deserialize_with = "lenient::float")]
    pub process_time: Option<f64>,
    pub ip: Option<String>,
    #[serde(deserialize_with = "lenient::int")]
    pub port: Option<i64>,
    #[serde(deserialize_with = "lenient::int")]
    pub version: Option<i64>,
    #[serde(deserialize_with = "lenient::uint")]
    pub nonce: Option<u64>,
    pub uuid: Option<String>,
    pub hotkey: Option<String>,
    pub signature: Option<String>,
}

/// Header names in the order Python emits them (TerminalInfo field order).
pub const TERMINAL_FIELDS: [&str; 10] = [
    "status_code",
    "status_message",
    "process_time",
    "ip",
    "port",
    "version",
    "nonce",
    "uuid",
    "hotkey",
    "signature",
];

impl TerminalInfo {
    fn field_text(&self, field: &str) -> Option<String> {
        match field {
            "status_code" => self.status_code.map(|v| v.to_string()),
            "status_message" => self.status_message.clone(),
            "process_time" => self.process_time.map(py_float),
            "ip" => self.ip.clone(),
            "port" => self.port.map(|v| v.to_string()),
            "version" => self.version.map(|v| v.to_string()),
            "nonce" => self.nonce.map(|v| v.to_string()),
            "uuid" => self.uuid.clone(),
            "hotkey" => self.hotkey.clone(),
            "signature" => self.signature.clone(),
            _ => None,
        }
    }

    /// `bt_header_<side>_<field>` pairs for every set field.
    pub fn to_headers(&self, side: &str) -> Vec<(String, String)> {
        TERMINAL_FIELDS
            .iter()
            .filter_map(|f| {
                self.field_text(f)
                    .map(|v| (format!("bt_header_{side}_{f}"), v))
            })
            .collect()
    }

    /// Reads `bt_header_<side>_*` headers; unparsable numbers count as absent.
    pub fn from_headers(headers: &http::HeaderMap, side: &str) -> Self {
        let get = |field: &str| {
            headers
                .get(format!("bt_header_{side}_{field}"))
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        Self {
            status_code: get("status_code").and_then(|v| v.parse().ok()),
            status_message: get("status_message"),
            process_time: get("process_time")
                .and_then(|v| v.parse::<f64>().ok())
                .filter(|t| t.is_finite()),
            ip: get("ip"),
            port: get("port").and_then(|v| v.parse().ok()),
            version: get("version").and_then(|v| v.parse().ok()),
            nonce: get("nonce").and_then(|v| v.parse().ok()),
            uuid: get("uuid"),
            hotkey: get("hotkey"),
            signature: get("signature"),
        }
    }
}

/// Python's `str(float)` for the values we send (`12.0`, `0.25`).
pub fn py_float(value: f64) -> String {
    if value.is_finite() && value.fract() == 0.0 && value.abs() < 1e16 {
        format!("{value:.1}")
    } else {
        format!("{value}")
    }
}

/// The whole synapse body: envelope fields plus the subclass's own fields in `fields`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Envelope {
    pub name: Option<String>,
    #[serde(deserialize_with = "lenient::float")]
    pub timeout: Option<f64>,
    #[serde(deserialize_with = "lenient::int")]
    pub total_size: Option<i64>,
    #[serde(deserialize_with = "lenient::int")]
    pub header_size: Option<i64>,
    pub dendrite: TerminalInfo,
    pub axon: TerminalInfo,
    pub computed_body_hash: String,
    #[serde(flatten)]
    pub fields: Map<String, Value>,
}

impl Envelope {
    /// Drops keys of the v6 era that are not synapse data.
    pub fn strip_protocol_keys(&mut self) {
        self.fields.remove("required_hash_fields");
    }
}

/// A synapse type with a route name. Fields default when missing and unknown keys are kept
/// (each implementation flattens them into an `extra` map).
pub trait Synapse: Serialize + serde::de::DeserializeOwned + Default + Send + 'static {
    const NAME: &'static str;
    /// Other route names the same type answers to.
    const ALIASES: &'static [&'static str] = &[];
}

/// NicheImage's `NicheImageProtocol`, renamed `ImageGenerating` upstream; same fields.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct ImageGenerating {
    pub prompt: String,
    pub seed: i64,
    pub model_name: String,
    pub conditional_image: String,
    pub pipeline_type: String,
    pub pipeline_params: Map<String, Value>,
    pub request_dict: Map<String, Value>,
    pub response_dict: Map<String, Value>,
    /// Untyped in Python; a base64 PNG when answered.
    pub image: Value,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Default for ImageGenerating {
    fn default() -> Self {
        Self {
            prompt: String::new(),
            seed: 0,
            model_name: String::new(),
            conditional_image: String::new(),
            pipeline_type: "txt2img".into(),
            pipeline_params: Map::new(),
            request_dict: Map::new(),
            response_dict: Map::new(),
            image: Value::String(String::new()),
            extra: Map::new(),
        }
    }
}

impl Synapse for ImageGenerating {
    const NAME: &'static str = "ImageGenerating";
    const ALIASES: &'static [&'static str] = &["NicheImageProtocol"];
}

/// sha3-256 hex of the synapse's hash fields; none of ours declare any.
pub fn body_hash() -> &'static str {
    EMPTY_BODY_HASH
}

/// sha3-256 lowercase hex.
pub fn sha3_hex(data: &[u8]) -> String {
    hex::encode(Sha3_256::digest(data))
}

/// What a dendrite signs: `"{nonce}.{dendrite_hotkey}.{axon_hotkey}.{uuid}.{body_hash}"`.
pub fn dendrite_message(nonce: u64, dendrite: &str, axon: &str, uuid: &str, hash: &str) -> String {
    format!("{nonce}.{dendrite}.{axon}.{uuid}.{hash}")
}

/// What an axon signs into its reply: `"{axon_nonce}.{dendrite_hotkey}.{axon_hotkey}.{axon_uuid}"`.
pub fn axon_message(nonce: u64, dendrite: &str, axon: &str, uuid: &str) -> String {
    format!("{nonce}.{dendrite}.{axon}.{uuid}")
}

/// Accepts numbers or numeric strings; anything else reads as absent (Python is that lenient).
mod lenient {
    use serde::{Deserialize, Deserializer};
    use serde_json::Value;

    fn value<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
        Option::<Value>::deserialize(d)
    }

    pub fn int<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        Ok(match value(d)? {
            Some(Value::Number(n)) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
            Some(Value::String(s)) => s.trim().parse().ok(),
            _ => None,
        })
    }

    pub fn uint<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        Ok(match value(d)? {
            Some(Value::Number(n)) => n.as_u64(),
            Some(Value::String(s)) => s.trim().parse().ok(),
            _ => None,
        })
    }

    /// A finite number only: `"NaN"` or `"inf"` from a peer would be written back as `null`.
    pub fn float<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
        Ok(match value(d)? {
            Some(Value::Number(n)) => n.as_f64(),
            Some(Value::String(s)) => s.trim().parse().ok(),
            _ => None,
        }
        .filter(|f: &f64| f.is_finite()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_match_the_spec_vectors() {
        assert_eq!(sha3_hex(b""), EMPTY_BODY_HASH);
        // Upstream's worked example: fields a=1, b=2, d=['foobar'].
        let joined: String = ["1", "2", "['foobar']"]
            .iter()
            .map(|s| sha3_hex(s.as_bytes()))
            .collect();
        assert_eq!(
            sha3_hex(joined.as_bytes()),
            "ae06397d08f30f75c91395c59f05c62ac3b62b88250eb78b109213258e6ced0c"
        );
    }

    #[test]
    fn minimal_bodies_default_and_unknown_keys_survive() {
        let envelope: Envelope =
            serde_json::from_str(r#"{"prompt":"a cat","seed":7,"future_field":[1]}"#).unwrap();
        let synapse: ImageGenerating =
            serde_json::from_value(Value::Object(envelope.fields)).unwrap();
        assert_eq!(synapse.prompt, "a cat");
        assert_eq!(synapse.pipeline_type, "txt2img");
        assert_eq!(synapse.extra["future_field"], serde_json::json!([1]));
        let back = serde_json::to_value(&synapse).unwrap();
        assert_eq!(back["future_field"], serde_json::json!([1]));
    }

    #[test]
    fn terminal_info_reads_python_bodies_and_round_trips_headers() {
        let info: TerminalInfo = serde_json::from_str(
            r#"{"status_code":null,"process_time":"0.5","port":8091,"nonce":17,"version":10002000,"hotkey":"5F"}"#,
        )
        .unwrap();
        assert_eq!(info.process_time, Some(0.5));
        assert_eq!(info.nonce, Some(17));
        let mut headers = http::HeaderMap::new();
        for (k, v) in info.to_headers("dendrite") {
            headers.insert(http::HeaderName::try_from(k).unwrap(), v.parse().unwrap());
        }
        assert_eq!(TerminalInfo::from_headers(&headers, "dendrite"), info);
        assert_eq!(py_float(12.0), "12.0");
        assert_eq!(py_float(0.25), "0.25");
    }
}
