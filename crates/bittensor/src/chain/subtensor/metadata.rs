//! What we need from the runtime's metadata (V14/V15, decoded dynamically so runtime upgrades do
//! not strand us): pallet and call indices by name, error names by index, the transaction
//! extension list with whether each part is empty (to build extrinsics by hand), and the type
//! registry with the storage entries' and runtime-API results' types, so values are decoded by
//! the runtime's own layout (`dynamic`).

use std::collections::{BTreeMap, HashMap};

use frame_metadata::v14::{StorageEntryType, StorageHasher};
use frame_metadata::{RuntimeMetadata, RuntimeMetadataPrefixed};
use parity_scale_codec::Decode;
use scale_info::{PortableRegistry, TypeDef};

use crate::chain::ChainError;

#[derive(Debug, Clone, Default)]
pub struct PalletInfo {
    pub index: u8,
    pub calls: HashMap<String, u8>,
    pub errors: BTreeMap<u8, String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ExtensionInfo {
    pub identifier: String,
    /// The explicit part (sent in the extrinsic) encodes to nothing.
    pub extra_empty: bool,
    /// The implicit part (only signed over) encodes to nothing.
    pub additional_empty: bool,
    /// The two parts' types.
    pub extra_ty: u32,
    pub additional_ty: u32,
}

/// A storage item: how its key is hashed, its types, and the value an absent entry reads as.
#[derive(Debug, Clone)]
pub struct StorageEntry {
    pub hashers: Vec<StorageHasher>,
    /// The key's type (a tuple for a map with several hashers); `None` for a plain value.
    pub key: Option<u32>,
    pub value: u32,
    pub default: Vec<u8>,
    /// An absent entry is no value (`OptionQuery`), not the default.
    pub optional: bool,
}

#[derive(Debug, Clone)]
pub struct ChainMetadata {
    pub version: u32,
    pub pallets: HashMap<String, PalletInfo>,
    pub extensions: Vec<ExtensionInfo>,
    pub types: PortableRegistry,
    /// `(pallet, item)` → entry.
    pub storage: HashMap<(String, String), StorageEntry>,
    /// `Api_method` (the `state_call` name) → its output type; V15 and V16.
    pub apis: HashMap<String, u32>,
    /// `(pallet, constant)` → its type and SCALE value.
    pub constants: HashMap<(String, String), (u32, Vec<u8>)>,
}

impl ChainMetadata {
    pub fn pallet(&self, name: &str) -> Result<&PalletInfo, ChainError> {
        self.pallets
            .get(name)
            .ok_or_else(|| ChainError::Unsupported(format!("the chain has no {name} pallet")))
    }

    /// `[pallet index, call index]`.
    pub fn call_index(&self, pallet: &str, call: &str) -> Result<[u8; 2], ChainError> {
        let p = self.pallet(pallet)?;
        let c = p.calls.get(call).ok_or_else(|| {
            ChainError::Unsupported(format!("{pallet} has no call {call} in this runtime"))
        })?;
        Ok([p.index, *c])
    }

    pub fn has_call(&self, pallet: &str, call: &str) -> bool {
        self.call_index(pallet, call).is_ok()
    }

    pub fn storage_entry(&self, pallet: &str, item: &str) -> Result<&StorageEntry, ChainError> {
        self.storage
            .get(&(pallet.to_string(), item.to_string()))
            .ok_or_else(|| {
                ChainError::Unsupported(format!("this runtime has no storage {pallet}.{item}"))
            })
    }

    /// A constant decoded as an unsigned integer (`None` where absent or not a number).
    pub fn constant_u64(&self, pallet: &str, name: &str) -> Option<u64> {
        let (ty, value) = self
            .constants
            .get(&(pallet.to_string(), name.to_string()))?;
        super::dynamic::decode_all(&self.types, *ty, value)
            .ok()?
            .as_u64()
            .ok()
    }

    /// The error's name for a pallet index and error index.
    pub fn error_name(&self, pallet_index: u8, error: u8) -> String {
        self.pallets
            .iter()
            .find(|(_, p)| p.index == pallet_index)
            .and_then(|(pallet, p)| p.errors.get(&error).map(|e| format!("{pallet}::{e}")))
            .unwrap_or_else(|| format!("pallet {pallet_index} error {error}"))
    }
}

fn variants(types: &PortableRegistry, id: u32) -> Vec<(u8, String)> {
    match types.resolve(id).map(|t| &t.type_def) {
        Some(TypeDef::Variant(v)) => v
            .variants
            .iter()
            .map(|v| (v.index, v.name.clone()))
            .collect(),
        _ => Vec::new(),
    }
}

/// Whether a type encodes to zero bytes (empty structs, unit tuples, zero-length arrays).
fn is_empty(types: &PortableRegistry, id: u32) -> bool {
    match types.resolve(id).map(|t| &t.type_def) {
        Some(TypeDef::Composite(c)) => c.fields.iter().all(|f| is_empty(types, f.ty.id)),
        Some(TypeDef::Tuple(t)) => t.fields.iter().all(|f| is_empty(types, f.id)),
        Some(TypeDef::Array(a)) => a.len == 0 || is_empty(types, a.type_param.id),
        _ => false,
    }
}

fn pallets_of(
    types: &PortableRegistry,
    pallets: impl Iterator<Item = (String, u8, Option<u32>, Option<u32>)>,
) -> HashMap<String, PalletInfo> {
    pallets
        .map(|(name, index, calls, errors)| {
            let calls = calls
                .map(|id| {
                    variants(types, id)
                        .into_iter()
                        .map(|(i, n)| (n, i))
                        .collect()
                })
                .unwrap_or_default();
            let errors = errors
                .map(|id| variants(types, id).into_iter().collect())
                .unwrap_or_default();
            (
                name,
                PalletInfo {
                    index,
                    calls,
                    errors,
                },
            )
        })
        .collect()
}

pub fn parse(bytes: &[u8]) -> Result<ChainMetadata, ChainError> {
    let prefixed = RuntimeMetadataPrefixed::decode(&mut &bytes[..])
        .map_err(|e| ChainError::Decode(format!("runtime metadata: {e}")))?;
    // V14, V15 and V16 hold pallets in fields of the same names but different types; V16 names
    // the extensions differently (`transaction_extensions`, `implicit`), so the caller lists them.
    macro_rules! read {
        ($m:expr, $extensions:expr) => {{
            let types = &$m.types;
            let pallets = $m.pallets.iter().map(|p| {
                let calls = p.calls.as_ref().map(|c| c.ty.id);
                (
                    p.name.clone(),
                    p.index,
                    calls,
                    p.error.as_ref().map(|e| e.ty.id),
                )
            });
            let constants = $m
                .pallets
                .iter()
                .flat_map(|p| {
                    p.constants.iter().map(move |c| {
                        ((p.name.clone(), c.name.clone()), (c.ty.id, c.value.clone()))
                    })
                })
                .collect();
            let storage = $m
                .pallets
                .iter()
                .filter_map(|p| p.storage.as_ref().map(|s| (&p.name, s)))
                .flat_map(|(pallet, s)| {
                    s.entries.iter().map(move |e| {
                        let (hashers, key, value) = match &e.ty {
                            StorageEntryType::Plain(v) => (Vec::new(), None, v.id),
                            StorageEntryType::Map {
                                hashers,
                                key,
                                value,
                            } => (hashers.clone(), Some(key.id), value.id),
                        };
                        (
                            (pallet.clone(), e.name.clone()),
                            StorageEntry {
                                hashers,
                                key,
                                value,
                                default: e.default.clone(),
                                optional: e.modifier
                                    == frame_metadata::v14::StorageEntryModifier::Optional,
                            },
                        )
                    })
                })
                .collect();
            ChainMetadata {
                version: prefixed.1.version(),
                pallets: pallets_of(types, pallets),
                extensions: $extensions,
                types: types.clone(),
                storage,
                apis: HashMap::new(),
                constants,
            }
        }};
    }
    macro_rules! signed_extensions {
        ($m:expr) => {
            $m.extrinsic
                .signed_extensions
                .iter()
                .map(|e| extension(&$m.types, &e.identifier, e.ty.id, e.additional_signed.id))
                .collect()
        };
    }
    macro_rules! apis {
        ($m:expr) => {
            $m.apis
                .iter()
                .flat_map(|api| {
                    api.methods
                        .iter()
                        .map(move |f| (format!("{}_{}", api.name, f.name), f.output.id))
                })
                .collect()
        };
    }
    match &prefixed.1 {
        RuntimeMetadata::V14(m) => Ok(read!(m, signed_extensions!(m))),
        RuntimeMetadata::V15(m) => {
            let mut meta = read!(m, signed_extensions!(m));
            meta.apis = apis!(m);
            Ok(meta)
        }
        RuntimeMetadata::V16(m) => {
            // Signed (v4) extrinsics use the extensions listed for extension version 0, in that
            // order; without such a list, all of them in metadata order.
            let all = &m.extrinsic.transaction_extensions;
            let order: Vec<usize> = match m.extrinsic.transaction_extensions_by_version.get(&0) {
                Some(list) => list.iter().map(|i| i.0 as usize).collect(),
                None => (0..all.len()).collect(),
            };
            let mut extensions = Vec::with_capacity(order.len());
            for i in order {
                let e = all.get(i).ok_or_else(|| {
                    ChainError::Decode(format!("transaction extension index {i} is not listed"))
                })?;
                extensions.push(extension(&m.types, &e.identifier, e.ty.id, e.implicit.id));
            }
            let mut meta = read!(m, extensions);
            meta.apis = apis!(m);
            Ok(meta)
        }
        other => Err(ChainError::Unsupported(format!(
            "runtime metadata version {} (need 14, 15 or 16)",
            other.version()
        ))),
    }
}

fn extension(
    types: &PortableRegistry,
    identifier: &str,
    extra: u32,
    additional: u32,
) -> ExtensionInfo {
    ExtensionInfo {
        identifier: identifier.to_string(),
        extra_empty: is_empty(types, extra),
        additional_empty: is_empty(types, additional),
        extra_ty: extra,
        additional_ty: additional,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use frame_metadata::v14::{
        ExtrinsicMetadata, PalletCallMetadata, PalletErrorMetadata, PalletMetadata,
        PalletStorageMetadata, RuntimeMetadataV14, SignedExtensionMetadata, StorageEntryMetadata,
        StorageEntryModifier,
    };
    use parity_scale_codec::Encode;
    use scale_info::{TypeInfo, meta_type};

    #[allow(non_camel_case_types, dead_code)]
    #[derive(TypeInfo)]
    enum Calls {
        #[codec(index = 0)]
        set_weights(u16),
        #[codec(index = 4)]
        serve_axon(u16),
    }

    #[allow(dead_code)]
    #[derive(TypeInfo)]
    enum Errors {
        RootNetworkDoesNotExist,
        InvalidIpType,
        #[codec(index = 29)]
        SettingWeightsTooFast,
    }

    #[derive(TypeInfo)]
    struct Empty;

    #[allow(dead_code)]
    #[derive(TypeInfo)]
    struct Tip(#[codec(compact)] u64);

    #[allow(dead_code)]
    #[derive(TypeInfo)]
    struct Era(u16);

    #[allow(dead_code)]
    #[derive(TypeInfo)]
    struct NonceField(#[codec(compact)] u32);

    /// A small V14 metadata with SubtensorModule at index 7 and subtensor's extension shapes.
    pub(crate) fn sample_metadata() -> Vec<u8> {
        // Per-netuid values with the runtime's defaults.
        fn by_netuid<T: TypeInfo + Encode + 'static>(
            name: &'static str,
            default: T,
        ) -> StorageEntryMetadata {
            StorageEntryMetadata {
                name,
                modifier: StorageEntryModifier::Default,
                ty: StorageEntryType::Map {
                    hashers: vec![StorageHasher::Identity],
                    key: meta_type::<u16>(),
                    value: meta_type::<T>(),
                },
                default: default.encode(),
                docs: vec![],
            }
        }
        let pallet = PalletMetadata {
            name: "SubtensorModule",
            storage: Some(PalletStorageMetadata {
                prefix: "SubtensorModule",
                entries: vec![
                    by_netuid("Tempo", 360u16),
                    by_netuid("WeightsSetRateLimit", 100u64),
                    by_netuid("WeightsVersionKey", 0u64),
                    by_netuid("CommitRevealWeightsEnabled", true),
                    by_netuid("ImmunityPeriod", 4096u16),
                    by_netuid("Burn", 1_000_000_000u64),
                ],
            }),
            calls: Some(PalletCallMetadata {
                ty: meta_type::<Calls>(),
            }),
            event: None,
            constants: vec![],
            error: Some(PalletErrorMetadata {
                ty: meta_type::<Errors>(),
            }),
            index: 7,
        };
        let ext = |identifier, ty, additional_signed| SignedExtensionMetadata {
            identifier,
            ty,
            additional_signed,
        };
        let extensions = vec![
            ext(
                "CheckNonZeroSender",
                meta_type::<Empty>(),
                meta_type::<()>(),
            ),
            ext("CheckSpecVersion", meta_type::<()>(), meta_type::<u32>()),
            ext("CheckTxVersion", meta_type::<()>(), meta_type::<u32>()),
            ext("CheckGenesis", meta_type::<()>(), meta_type::<[u8; 32]>()),
            ext(
                "CheckMortality",
                meta_type::<Era>(),
                meta_type::<[u8; 32]>(),
            ),
            ext("CheckNonce", meta_type::<NonceField>(), meta_type::<()>()),
            ext("CheckWeight", meta_type::<()>(), meta_type::<()>()),
            ext(
                "ChargeTransactionPaymentWrapper",
                meta_type::<Tip>(),
                meta_type::<()>(),
            ),
            ext(
                "SudoTransactionExtension",
                meta_type::<Empty>(),
                meta_type::<()>(),
            ),
            ext("DrandPriority", meta_type::<Empty>(), meta_type::<()>()),
            ext(
                "CheckMetadataHash",
                meta_type::<u8>(),
                meta_type::<Option<[u8; 32]>>(),
            ),
        ];
        let extrinsic = ExtrinsicMetadata {
            ty: meta_type::<()>(),
            version: 4,
            signed_extensions: extensions,
        };
        RuntimeMetadataPrefixed::from(RuntimeMetadataV14::new(
            vec![pallet],
            extrinsic,
            meta_type::<()>(),
        ))
        .encode()
    }

    #[test]
    fn reads_indices_errors_and_extension_shapes() {
        let meta = parse(&sample_metadata()).unwrap();
        assert_eq!(
            meta.call_index("SubtensorModule", "serve_axon").unwrap(),
            [7, 4]
        );
        assert!(meta.call_index("SubtensorModule", "nope").is_err());
        assert_eq!(meta.error_name(7, 1), "SubtensorModule::InvalidIpType");
        assert_eq!(
            meta.error_name(7, 29),
            "SubtensorModule::SettingWeightsTooFast"
        );
        let first = &meta.extensions[0];
        assert_eq!(
            (
                first.identifier.as_str(),
                first.extra_empty,
                first.additional_empty
            ),
            ("CheckNonZeroSender", true, true)
        );
        assert!(!meta.extensions[7].extra_empty);
        assert!(meta.extensions[9].extra_empty && meta.extensions[9].additional_empty);
        assert!(parse(&[1, 2, 3]).is_err());
    }
}
