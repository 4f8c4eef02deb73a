//! SCALE values decoded by a type registry (the runtime's own, from its metadata, or ours for
//! layouts a runtime does not describe), so a field that moves or grows between runtime specs is
//! read by name instead of by position. Decoding is bounded: nesting depth, sequence lengths by
//! the bytes that are left, so a lying length costs nothing, and the number of values produced
//! in all (zero-sized ones included: a metadata declaring arrays of them nested deep would
//! otherwise multiply without consuming a byte).

use parity_scale_codec::{Compact, Decode};
use scale_info::{PortableRegistry, TypeDef, TypeDefPrimitive};

use crate::chain::ChainError;

const MAX_DEPTH: usize = 48;
/// The most values one decode produces (a 4096-uid metagraph is about 10⁵).
pub const MAX_VALUES: usize = 2_000_000;

/// A decoded value. Named and unnamed fields keep their order; numbers keep their width's range.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Bool(bool),
    /// Every unsigned width (and compacts), up to u128; u256 is kept as bytes.
    Uint(u128),
    Int(i128),
    Str(String),
    /// Sequences, arrays and tuples.
    List(Vec<Value>),
    Composite(Vec<(Option<String>, Value)>),
    Variant {
        name: String,
        fields: Vec<(Option<String>, Value)>,
    },
    /// u256/i256 and bit sequences: raw little-endian bytes.
    Raw(Vec<u8>),
}

/// The registry type's name for errors: its path (`pallet_subtensor::rpc_info::NeuronInfoLite`)
/// or its shape.
pub fn type_name(types: &PortableRegistry, id: u32) -> String {
    match types.resolve(id) {
        Some(t) if !t.path.segments.is_empty() => t.path.segments.join("::"),
        Some(t) => match &t.type_def {
            TypeDef::Sequence(s) => format!("Vec<{}>", type_name(types, s.type_param.id)),
            TypeDef::Array(a) => format!("[{}; {}]", type_name(types, a.type_param.id), a.len),
            TypeDef::Compact(c) => format!("Compact<{}>", type_name(types, c.type_param.id)),
            TypeDef::Primitive(p) => format!("{p:?}").to_lowercase(),
            TypeDef::Tuple(t) => format!(
                "({})",
                t.fields
                    .iter()
                    .map(|f| type_name(types, f.id))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            _ => format!("type #{id}"),
        },
        None => format!("type #{id} (not in the registry)"),
    }
}

/// Decodes one value of type `id` and requires that nothing is left over.
pub fn decode_all(types: &PortableRegistry, id: u32, bytes: &[u8]) -> Result<Value, ChainError> {
    let mut input = bytes;
    let value = decode(types, id, &mut input).map_err(|e| match e {
        ChainError::Decode(inner) => {
            ChainError::Decode(format!("{}: {inner}", type_name(types, id)))
        }
        other => other,
    })?;
    if !input.is_empty() {
        return Err(ChainError::Decode(format!(
            "{} bytes left after {} (the runtime's layout is not the one its metadata describes)",
            input.len(),
            type_name(types, id)
        )));
    }
    Ok(value)
}

pub fn decode(types: &PortableRegistry, id: u32, input: &mut &[u8]) -> Result<Value, ChainError> {
    Decoder {
        types,
        depth: 0,
        values: 0,
    }
    .value(id, input)
}

struct Decoder<'a> {
    types: &'a PortableRegistry,
    depth: usize,
    values: usize,
}

impl Decoder<'_> {
    fn fail(&self, id: u32, what: impl std::fmt::Display) -> ChainError {
        ChainError::Decode(format!("{}: {what}", type_name(self.types, id)))
    }

    fn value(&mut self, id: u32, input: &mut &[u8]) -> Result<Value, ChainError> {
        let ty = self
            .types
            .resolve(id)
            .ok_or_else(|| self.fail(id, "not in the registry"))?;
        if self.depth >= MAX_DEPTH {
            return Err(self.fail(id, format!("nested deeper than {MAX_DEPTH}")));
        }
        self.values = self.values.saturating_add(1);
        if self.values > MAX_VALUES {
            return Err(self.fail(id, format!("more than {MAX_VALUES} values")));
        }
        self.depth += 1;
        let value = match &ty.type_def {
            TypeDef::Composite(c) => Value::Composite(self.fields(
                id,
                c.fields.iter().map(|f| (f.name.clone(), f.ty.id)),
                input,
            )?),
            TypeDef::Variant(v) => {
                let index = u8::decode(input).map_err(|e| self.fail(id, e))?;
                let variant = v
                    .variants
                    .iter()
                    .find(|v| v.index == index)
                    .ok_or_else(|| self.fail(id, format!("no variant with index {index}")))?;
                Value::Variant {
                    name: variant.name.clone(),
                    fields: self.fields(
                        id,
                        variant.fields.iter().map(|f| (f.name.clone(), f.ty.id)),
                        input,
                    )?,
                }
            }
            TypeDef::Sequence(s) => {
                let len = Compact::<u32>::decode(input)
                    .map_err(|e| self.fail(id, e))?
                    .0;
                self.list(id, s.type_param.id, len as usize, input)?
            }
            TypeDef::Array(a) => self.list(id, a.type_param.id, a.len as usize, input)?,
            TypeDef::Tuple(t) => Value::List(
                t.fields
                    .iter()
                    .map(|f| self.value(f.id, input))
                    .collect::<Result<_, _>>()?,
            ),
            TypeDef::Primitive(p) => self.primitive(id, p, input)?,
            TypeDef::Compact(c) => self.compact(id, c.type_param.id, input)?,
            TypeDef::BitSequence(_) => {
                let bits = Compact::<u32>::decode(input)
                    .map_err(|e| self.fail(id, e))?
                    .0;
                Value::Raw(take(input, (bits as usize).div_ceil(8)).ok_or_else(|| {
                    self.fail(id, format!("{bits} bits claimed, fewer bytes left"))
                })?)
            }
        };
        self.depth -= 1;
        Ok(value)
    }

    fn fields(
        &mut self,
        _id: u32,
        fields: impl Iterator<Item = (Option<String>, u32)>,
        input: &mut &[u8],
    ) -> Result<Vec<(Option<String>, Value)>, ChainError> {
        fields
            .map(|(name, ty)| Ok((name, self.value(ty, input)?)))
            .collect()
    }

    fn list(
        &mut self,
        id: u32,
        element: u32,
        len: usize,
        input: &mut &[u8],
    ) -> Result<Value, ChainError> {
        // Every element of a non-empty type takes at least one byte: a length beyond the bytes
        // left is a lie, refused before anything is allocated for it.
        if len > input.len() && !is_zero_sized(self.types, element, 0) {
            return Err(self.fail(
                id,
                format!("{len} elements claimed, {} bytes left", input.len()),
            ));
        }
        if len > input.len().max(1 << 16) {
            return Err(self.fail(id, format!("{len} zero-sized elements")));
        }
        let mut items = Vec::with_capacity(len);
        for _ in 0..len {
            items.push(self.value(element, input)?);
        }
        Ok(Value::List(items))
    }

    fn primitive(
        &self,
        id: u32,
        p: &TypeDefPrimitive,
        input: &mut &[u8],
    ) -> Result<Value, ChainError> {
        let e = |err: parity_scale_codec::Error| self.fail(id, err);
        Ok(match p {
            TypeDefPrimitive::Bool => Value::Bool(bool::decode(input).map_err(e)?),
            TypeDefPrimitive::Char => {
                let c = u32::decode(input).map_err(e)?;
                Value::Str(
                    char::from_u32(c)
                        .ok_or_else(|| self.fail(id, format!("{c} is not a char")))?
                        .to_string(),
                )
            }
            TypeDefPrimitive::Str => {
                let len = Compact::<u32>::decode(input).map_err(e)?.0 as usize;
                let bytes = take(input, len).ok_or_else(|| {
                    self.fail(id, format!("{len} bytes claimed, fewer bytes left"))
                })?;
                Value::Str(String::from_utf8(bytes).map_err(|_| self.fail(id, "not UTF-8"))?)
            }
            TypeDefPrimitive::U8 => Value::Uint(u8::decode(input).map_err(e)?.into()),
            TypeDefPrimitive::U16 => Value::Uint(u16::decode(input).map_err(e)?.into()),
            TypeDefPrimitive::U32 => Value::Uint(u32::decode(input).map_err(e)?.into()),
            TypeDefPrimitive::U64 => Value::Uint(u64::decode(input).map_err(e)?.into()),
            TypeDefPrimitive::U128 => Value::Uint(u128::decode(input).map_err(e)?),
            TypeDefPrimitive::I8 => Value::Int(i8::decode(input).map_err(e)?.into()),
            TypeDefPrimitive::I16 => Value::Int(i16::decode(input).map_err(e)?.into()),
            TypeDefPrimitive::I32 => Value::Int(i32::decode(input).map_err(e)?.into()),
            TypeDefPrimitive::I64 => Value::Int(i64::decode(input).map_err(e)?.into()),
            TypeDefPrimitive::I128 => Value::Int(i128::decode(input).map_err(e)?),
            TypeDefPrimitive::U256 | TypeDefPrimitive::I256 => Value::Raw(
                take(input, 32).ok_or_else(|| self.fail(id, "fewer than 32 bytes left"))?,
            ),
        })
    }

    /// A compact of a primitive, or of a one-field wrapper around one (`Compact<AlphaCurrency>`).
    fn compact(&self, id: u32, inner: u32, input: &mut &[u8]) -> Result<Value, ChainError> {
        let mut target = inner;
        for _ in 0..MAX_DEPTH {
            match self.types.resolve(target).map(|t| &t.type_def) {
                Some(TypeDef::Composite(c)) if c.fields.len() == 1 => target = c.fields[0].ty.id,
                Some(TypeDef::Composite(c)) if c.fields.is_empty() => {
                    return Ok(Value::Composite(Vec::new()));
                }
                Some(TypeDef::Primitive(p)) => {
                    let e = |err: parity_scale_codec::Error| self.fail(id, err);
                    return Ok(Value::Uint(match p {
                        TypeDefPrimitive::U8 => Compact::<u8>::decode(input).map_err(e)?.0.into(),
                        TypeDefPrimitive::U16 => Compact::<u16>::decode(input).map_err(e)?.0.into(),
                        TypeDefPrimitive::U32 => Compact::<u32>::decode(input).map_err(e)?.0.into(),
                        TypeDefPrimitive::U64 => Compact::<u64>::decode(input).map_err(e)?.0.into(),
                        TypeDefPrimitive::U128 => Compact::<u128>::decode(input).map_err(e)?.0,
                        other => return Err(self.fail(id, format!("compact {other:?}"))),
                    }));
                }
                _ => break,
            }
        }
        Err(self.fail(id, "a compact of something that is not a number"))
    }
}

fn take(input: &mut &[u8], n: usize) -> Option<Vec<u8>> {
    if input.len() < n {
        return None;
    }
    let (head, rest) = input.split_at(n);
    *input = rest;
    Some(head.to_vec())
}

fn is_zero_sized(types: &PortableRegistry, id: u32, depth: usize) -> bool {
    if depth > MAX_DEPTH {
        return false;
    }
    match types.resolve(id).map(|t| &t.type_def) {
        Some(TypeDef::Composite(c)) => c
            .fields
            .iter()
            .all(|f| is_zero_sized(types, f.ty.id, depth + 1)),
        Some(TypeDef::Tuple(t)) => t
            .fields
            .iter()
            .all(|f| is_zero_sized(types, f.id, depth + 1)),
        Some(TypeDef::Array(a)) => a.len == 0 || is_zero_sized(types, a.type_param.id, depth + 1),
        _ => false,
    }
}

/// Reading a decoded value by field name, seeing through one-field wrappers (`NetUid(u16)`,
/// `AccountId32([u8; 32])`, `Compact<AlphaCurrency>`).
impl Value {
    fn unwrapped(&self) -> &Value {
        let mut v = self;
        while let Value::Composite(fields) = v
            && fields.len() == 1
        {
            v = &fields[0].1;
        }
        v
    }

    /// The named field of a struct (or of a struct wrapped in one-field wrappers).
    pub fn field(&self, name: &str) -> Result<&Value, ChainError> {
        let mut v = self;
        for _ in 0..MAX_DEPTH {
            let fields = match v {
                Value::Composite(fields) | Value::Variant { fields, .. } => fields,
                other => {
                    return Err(ChainError::Decode(format!(
                        "expected a struct with field {name}, got {}",
                        other.kind()
                    )));
                }
            };
            if let Some((_, found)) = fields.iter().find(|(n, _)| n.as_deref() == Some(name)) {
                return Ok(found);
            }
            match fields.as_slice() {
                [(_, only)] => v = only,
                _ => break,
            }
        }
        Err(ChainError::Decode(format!(
            "no field {name} in the runtime's type"
        )))
    }

    fn kind(&self) -> &'static str {
        match self {
            Value::Bool(_) => "a bool",
            Value::Uint(_) => "an unsigned number",
            Value::Int(_) => "a signed number",
            Value::Str(_) => "a string",
            Value::List(_) => "a list",
            Value::Composite(_) => "a struct",
            Value::Variant { .. } => "an enum",
            Value::Raw(_) => "raw bytes",
        }
    }

    fn wrong(&self, want: &str) -> ChainError {
        ChainError::Decode(format!("expected {want}, got {}", self.kind()))
    }

    pub fn as_u128(&self) -> Result<u128, ChainError> {
        match self.unwrapped() {
            Value::Uint(n) => Ok(*n),
            other => Err(other.wrong("a number")),
        }
    }

    pub fn as_u64(&self) -> Result<u64, ChainError> {
        u64::try_from(self.as_u128()?).map_err(|_| ChainError::Decode("number past u64".into()))
    }

    pub fn as_u16(&self) -> Result<u16, ChainError> {
        u16::try_from(self.as_u128()?).map_err(|_| ChainError::Decode("number past u16".into()))
    }

    pub fn as_u8(&self) -> Result<u8, ChainError> {
        u8::try_from(self.as_u128()?).map_err(|_| ChainError::Decode("number past u8".into()))
    }

    pub fn as_bool(&self) -> Result<bool, ChainError> {
        match self.unwrapped() {
            Value::Bool(b) => Ok(*b),
            other => Err(other.wrong("a bool")),
        }
    }

    pub fn as_list(&self) -> Result<&[Value], ChainError> {
        match self.unwrapped() {
            Value::List(items) => Ok(items),
            other => Err(other.wrong("a list")),
        }
    }

    /// A byte string (`Vec<u8>`, `[u8; N]`, or a wrapper of one).
    pub fn as_bytes(&self) -> Result<Vec<u8>, ChainError> {
        self.as_list()?.iter().map(Value::as_u8).collect()
    }

    /// A 32-byte account id or hash.
    pub fn as_bytes32(&self) -> Result<[u8; 32], ChainError> {
        self.as_bytes()?
            .try_into()
            .map_err(|_| ChainError::Decode("expected 32 bytes".into()))
    }

    /// `Some(inner)` or `None` of an `Option`.
    pub fn as_option(&self) -> Result<Option<&Value>, ChainError> {
        match self {
            Value::Variant { name, fields } if name == "None" && fields.is_empty() => Ok(None),
            Value::Variant { name, fields } if name == "Some" && fields.len() == 1 => {
                Ok(Some(&fields[0].1))
            }
            other => Err(other.wrong("an Option")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_zero_sized_arrays_cannot_multiply_without_bound() {
        let mut registry = scale_info::Registry::new();
        let id = registry
            .register_type(&scale_info::meta_type::<[[[(); 65536]; 65536]; 65536]>())
            .id;
        let types: PortableRegistry = registry.into();
        let started = std::time::Instant::now();
        let refused = decode_all(&types, id, &[]).unwrap_err();
        assert!(refused.to_string().contains("values"), "{refused}");
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }
    use parity_scale_codec::Encode;
    use scale_info::{MetaType, Registry, TypeInfo};

    fn registry_of(ty: MetaType) -> (PortableRegistry, u32) {
        let mut registry = Registry::new();
        let id = registry.register_type(&ty).id;
        (registry.into(), id)
    }

    #[derive(TypeInfo, Encode)]
    struct Balance(u64);

    #[derive(TypeInfo, Encode)]
    struct Inner {
        #[codec(compact)]
        uid: u16,
        stake: Vec<([u8; 32], Compact<u64>)>,
        wrapped: Balance,
        who: Option<[u8; 4]>,
        name: String,
    }

    #[test]
    fn decodes_by_name_through_wrappers() {
        let (types, id) = registry_of(scale_info::meta_type::<Vec<Inner>>());
        let bytes = vec![Inner {
            uid: 300,
            stake: vec![([7; 32], Compact(1 << 40))],
            wrapped: Balance(9),
            who: Some([1, 2, 3, 4]),
            name: "ü".into(),
        }]
        .encode();
        let value = decode_all(&types, id, &bytes).unwrap();
        let first = &value.as_list().unwrap()[0];
        assert_eq!(first.field("uid").unwrap().as_u16().unwrap(), 300);
        assert_eq!(first.field("wrapped").unwrap().as_u64().unwrap(), 9);
        let stake = first.field("stake").unwrap().as_list().unwrap();
        let pair = stake[0].as_list().unwrap();
        assert_eq!(pair[0].as_bytes32().unwrap(), [7; 32]);
        assert_eq!(pair[1].as_u64().unwrap(), 1 << 40);
        let who = first.field("who").unwrap().as_option().unwrap().unwrap();
        assert_eq!(who.as_bytes().unwrap(), vec![1, 2, 3, 4]);
        assert!(first.field("nope").is_err());
        assert!(first.field("uid").unwrap().as_bool().is_err());
    }

    #[test]
    fn lying_lengths_trailing_bytes_and_truncation_are_errors_naming_the_type() {
        let (types, id) = registry_of(scale_info::meta_type::<Vec<Inner>>());
        // A length of 2^30 elements with four bytes behind it.
        let lie = [0xfe, 0xff, 0xff, 0xff, 1, 2, 3, 4];
        let err = decode_all(&types, id, &lie).unwrap_err().to_string();
        assert!(err.contains("elements claimed"), "{err}");
        let mut good = Vec::<Inner>::new().encode();
        good.push(0);
        let err = decode_all(&types, id, &good).unwrap_err().to_string();
        assert!(err.contains("1 bytes left after"), "{err}");
        let (types, id) = registry_of(scale_info::meta_type::<Inner>());
        let err = decode_all(&types, id, &[4]).unwrap_err().to_string();
        assert!(err.contains("Inner"), "{err}");
        for cut in 0..40 {
            let bytes = Inner {
                uid: 1,
                stake: vec![([1; 32], Compact(2))],
                wrapped: Balance(3),
                who: None,
                name: String::new(),
            }
            .encode();
            assert!(decode_all(&types, id, &bytes[..cut.min(bytes.len() - 1)]).is_err());
        }
    }

    #[test]
    fn deep_nesting_is_refused() {
        #[derive(TypeInfo)]
        #[allow(dead_code)]
        struct Node(Vec<Node>);
        let (types, id) = registry_of(scale_info::meta_type::<Node>());
        // Compact 1 at every level: one element, nested again.
        let bytes = vec![4u8; 100];
        let err = decode_all(&types, id, &bytes).unwrap_err().to_string();
        assert!(err.contains("nested deeper"), "{err}");
    }
}
