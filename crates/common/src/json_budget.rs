//! How much JSON a peer may make us build. serde_json turns a body of many small objects into a
//! tree 100–200 times its size; every peer document (axon bodies, miners' answers, reward
//! batches, endpoint and proxy requests) is first walked once without building anything, and
//! refused when it holds more values than its kind needs.

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use std::cell::Cell;

/// Values one peer document may hold: an image answer or request has a few dozen, a reward
/// batch a few hundred.
pub const MAX_VALUES: usize = 10_000;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct OverBudget(String);

/// `Ok` when `bytes` is one JSON document of at most `max_values` values (objects, arrays,
/// keys and scalars each count one); otherwise why not. Allocates nothing for the document.
pub fn check(bytes: &[u8], max_values: usize) -> Result<(), OverBudget> {
    let seen = Cell::new(0usize);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    Counter {
        seen: &seen,
        max: max_values,
    }
    .deserialize(&mut de)
    .and_then(|()| de.end())
    .map_err(|e| OverBudget(e.to_string()))
}

/// `bytes` parsed as `T` after [`check`]: the one way a peer's JSON is read. The budget's
/// refusal comes back as a JSON error with its reason.
pub fn parse<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    max_values: usize,
) -> Result<T, serde_json::Error> {
    check(bytes, max_values).map_err(|e| serde::de::Error::custom(e.0))?;
    serde_json::from_slice(bytes)
}

#[derive(Clone, Copy)]
struct Counter<'a> {
    seen: &'a Cell<usize>,
    max: usize,
}

impl Counter<'_> {
    fn count<E: serde::de::Error>(&self) -> Result<(), E> {
        let n = self.seen.get().saturating_add(1);
        self.seen.set(n);
        if n > self.max {
            return Err(E::custom(format!(
                "more than {} JSON values (objects, arrays, keys and scalars)",
                self.max
            )));
        }
        Ok(())
    }
}

impl<'de> DeserializeSeed<'de> for Counter<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Counter<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<(), E> {
        self.count()
    }
    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<(), E> {
        self.count()
    }
    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<(), E> {
        self.count()
    }
    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<(), E> {
        self.count()
    }
    fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<(), E> {
        self.count()
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        self.count()
    }
    fn visit_none<E: serde::de::Error>(self) -> Result<(), E> {
        self.count()
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.count()?;
        while seq.next_element_seed(self)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.count()?;
        while map.next_key_seed(self)?.is_some() {
            map.next_value_seed(self)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_values_without_building_them() {
        assert_eq!(check(br#"{"a":[1,2,{"b":null}],"c":"x"}"#, 10), Ok(()));
        assert!(check(br#"{"a":[1,2,{"b":null}],"c":"x"}"#, 9).is_err());
        // 8 MiB of tiny objects: refused after MAX_VALUES, long before the end.
        let bomb = format!("[{}{{}}]", "{},".repeat(4 << 20));
        let started = std::time::Instant::now();
        let refused = check(bomb.as_bytes(), MAX_VALUES).unwrap_err();
        assert!(refused.to_string().contains("more than 10000"), "{refused}");
        assert!(started.elapsed() < std::time::Duration::from_millis(200));
        // A big string is one value.
        let image = format!(r#"{{"image":"{}"}}"#, "A".repeat(8 << 20));
        assert_eq!(check(image.as_bytes(), 10), Ok(()));
        assert!(check(b"{} trailing", 10).is_err());
        assert!(check(b"[[[[", 10).is_err());
    }
}
