//! Reads the tensors of a checkpoint written by Python's `torch.save` (the zip format of torch
//! 1.6 and later): a pickle, `data.pkl`, that names raw storages kept beside it as `data/<key>`.
//! Only what a state dict needs is understood (dicts, lists, tuples, scalars, strings and
//! `_rebuild_tensor_v2`); anything else becomes an opaque value and is skipped. Nothing from
//! the file is ever executed.

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use tch::{Device, Kind, Tensor};

#[derive(Debug, thiserror::Error)]
pub enum TorchFileError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a torch checkpoint we can read: {reason}")]
    NotZip { path: PathBuf, reason: String },
    #[error("{path}: {reason}")]
    Malformed { path: PathBuf, reason: String },
}

#[derive(Debug, Clone)]
enum Value {
    None,
    Int(i64),
    Str(String),
    Tuple(Vec<Value>),
    List(Vec<Value>),
    Dict(Vec<(Value, Value)>),
    Global(String, String),
    /// A storage named by a persistent id: its element type and its file key.
    Storage(Kind, String),
    Tensor(TensorRef),
    /// Anything a state dict does not need: booleans, floats, bytes, an argparse namespace...
    Opaque,
}

#[derive(Debug, Clone)]
struct TensorRef {
    kind: Kind,
    storage: String,
    offset: i64,
    size: Vec<i64>,
    stride: Vec<i64>,
}

/// A state dict's pickle is a few MiB at most (names, shapes, storage keys).
const MAX_PICKLE_BYTES: u64 = 64 << 20;
/// One storage (one tensor's data): larger than any diffusion model's biggest tensor.
const MAX_STORAGE_BYTES: u64 = 16 << 30;

/// One zip entry, read no further than `limit` bytes whatever its header declares (a deflated
/// entry can inflate past its declared size).
fn read_entry<R: Read + std::io::Seek>(
    zip: &mut zip::ZipArchive<R>,
    name: &str,
    limit: u64,
) -> Result<Vec<u8>, String> {
    let entry = zip.by_name(name).map_err(|e| e.to_string())?;
    let declared = entry.size();
    if declared > limit {
        return Err(format!("{declared} bytes, over the {limit} byte limit"));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(declared).unwrap_or(0).min(1 << 20));
    entry
        .take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > limit {
        return Err(format!("inflates past the {limit} byte limit"));
    }
    Ok(bytes)
}

/// Every tensor of the checkpoint, keyed by its path through nested dicts joined with `.`
/// (a `{"model": {"conv.weight": t}}` file gives `model.conv.weight`), on the CPU in the
/// stored dtype.
pub fn read_torch_file(path: &Path) -> Result<Vec<(String, Tensor)>, TorchFileError> {
    let io = |source| TorchFileError::Io {
        path: path.to_path_buf(),
        source,
    };
    let malformed = |reason: String| TorchFileError::Malformed {
        path: path.to_path_buf(),
        reason,
    };
    let mut file = File::open(path).map_err(io)?;
    let mut head = [0u8; 16];
    let n = file.read(&mut head).map_err(io)?;
    let head = &head[..n];
    let mut zip = zip::ZipArchive::new(file).map_err(|e| TorchFileError::NotZip {
        path: path.to_path_buf(),
        reason: not_zip_reason(head, &e.to_string()),
    })?;
    let pickle_name = (0..zip.len())
        .filter_map(|i| zip.by_index(i).ok().map(|f| f.name().to_string()))
        .find(|n| n == "data.pkl" || n.ends_with("/data.pkl"))
        .ok_or_else(|| TorchFileError::NotZip {
            path: path.to_path_buf(),
            reason: "no data.pkl inside".into(),
        })?;
    let root = pickle_name.trim_end_matches("data.pkl").to_string();
    let pickle = read_entry(&mut zip, &pickle_name, MAX_PICKLE_BYTES)
        .map_err(|e| malformed(format!("{pickle_name}: {e}")))?;
    let value = Unpickler::new(&pickle).run().map_err(malformed)?;

    let byteorder = read_entry(&mut zip, &format!("{root}byteorder"), 16)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    if byteorder.trim() == "big" {
        return Err(malformed(
            "saved on a big-endian machine, which is not supported".into(),
        ));
    }
    let mut refs = Vec::new();
    flatten(String::new(), value, 0, &mut refs);
    if refs.is_empty() {
        return Err(malformed(
            "no tensors in data.pkl: a TorchScript archive or a pickled module rather than a state dict?"
                .into(),
        ));
    }
    let mut storages: HashMap<String, Tensor> = HashMap::new();
    let mut tensors = Vec::with_capacity(refs.len());
    for (name, r) in refs {
        if !storages.contains_key(&r.storage) {
            let bytes = read_entry(
                &mut zip,
                &format!("{root}data/{}", r.storage),
                MAX_STORAGE_BYTES,
            )
            .map_err(|e| malformed(format!("storage {} of {name}: {e}", r.storage)))?;
            let elements = bytes.len() / r.kind.elt_size_in_bytes();
            let storage = Tensor::f_from_data_size(&bytes, &[elements as i64], r.kind)
                .map_err(|e| malformed(format!("storage {}: {e}", r.storage)))?;
            storages.insert(r.storage.clone(), storage);
        }
        let storage = &storages[&r.storage];
        if storage.kind() != r.kind {
            return Err(malformed(format!(
                "{name} reads storage {} as {:?}, another tensor as {:?}",
                r.storage,
                r.kind,
                storage.kind()
            )));
        }
        if r.size.contains(&0) {
            let empty = Tensor::f_zeros(&r.size, (r.kind, Device::Cpu))
                .map_err(|e| malformed(format!("{name}: {e}")))?;
            tensors.push((name, empty));
            continue;
        }
        // The last element the view reaches, in saturating arithmetic: the numbers come from
        // the file.
        let reach = r.size.iter().zip(&r.stride).fold(r.offset, |acc, (s, st)| {
            acc.saturating_add((s - 1).saturating_mul(*st))
        });
        if r.offset < 0 || r.stride.iter().any(|&st| st < 0) || reach >= storage.numel() as i64 {
            return Err(malformed(format!(
                "{name} does not fit its storage (offset {}, size {:?}, stride {:?}, {} elements)",
                r.offset,
                r.size,
                r.stride,
                storage.numel()
            )));
        }
        let t = storage
            .f_as_strided(&r.size, &r.stride, Some(r.offset))
            .and_then(|t| t.f_contiguous())
            .map_err(|e| malformed(format!("{name}: {e}")))?;
        tensors.push((name, t));
    }
    Ok(tensors)
}

/// Nesting deeper than any checkpoint has is ignored rather than recursed into.
const MAX_DEPTH: usize = 64;

/// Why a file did not open as a zip, told from its first bytes.
fn not_zip_reason(head: &[u8], error: &str) -> String {
    if head.starts_with(b"PK\x03\x04") {
        format!("a damaged or truncated zip ({error}); download it again")
    } else if head.starts_with(&[0x80, 0x02, 0x8a, 0x0a]) {
        "the legacy format of torch before 1.6; re-save it with a newer torch (torch.save(torch.load(f), f))"
            .into()
    } else if head.len() >= 9 && head[8] == b'{' {
        "a safetensors file; give it the .safetensors extension".into()
    } else if head.starts_with(b"<") || head.starts_with(b"{") {
        "text (an HTML page or JSON error saved instead of the download?)".into()
    } else {
        format!("not a zip-format torch file ({error})")
    }
}

fn flatten(prefix: String, value: Value, depth: usize, out: &mut Vec<(String, TensorRef)>) {
    if depth > MAX_DEPTH {
        return;
    }
    let join = |k: &str| {
        if prefix.is_empty() {
            k.to_string()
        } else {
            format!("{prefix}.{k}")
        }
    };
    match value {
        Value::Tensor(t) => out.push((prefix, t)),
        Value::Dict(items) => {
            for (k, v) in items {
                let key = match k {
                    Value::Str(s) => s,
                    Value::Int(i) => i.to_string(),
                    _ => continue,
                };
                flatten(join(&key), v, depth + 1, out);
            }
        }
        Value::List(items) | Value::Tuple(items) => {
            for (i, v) in items.into_iter().enumerate() {
                flatten(join(&i.to_string()), v, depth + 1, out);
            }
        }
        _ => {}
    }
}

fn storage_kind(name: &str) -> Option<Kind> {
    Some(match name {
        "FloatStorage" => Kind::Float,
        "HalfStorage" => Kind::Half,
        "BFloat16Storage" => Kind::BFloat16,
        "DoubleStorage" => Kind::Double,
        "LongStorage" => Kind::Int64,
        "IntStorage" => Kind::Int,
        "ShortStorage" => Kind::Int16,
        "CharStorage" => Kind::Int8,
        "ByteStorage" => Kind::Uint8,
        "BoolStorage" => Kind::Bool,
        _ => return None,
    })
}

struct Unpickler<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: HashMap<u32, Value>,
}

impl<'a> Unpickler<'a> {
    fn new(data: &'a [u8]) -> Self {
        Self {
            data,
            pos: 0,
            stack: Vec::new(),
            marks: Vec::new(),
            memo: HashMap::new(),
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len());
        let end = end.ok_or("the pickle ends early")?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn line(&mut self) -> Result<String, String> {
        let rest = &self.data[self.pos..];
        let n = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or("unterminated line in the pickle")?;
        let s = String::from_utf8_lossy(&rest[..n]).into_owned();
        self.pos += n + 1;
        Ok(s)
    }

    fn pop(&mut self) -> Result<Value, String> {
        self.stack
            .pop()
            .ok_or_else(|| "pickle stack underflow".into())
    }

    fn pop_mark(&mut self) -> Result<Vec<Value>, String> {
        let mark = self.marks.pop().ok_or("pickle mark missing")?;
        if mark > self.stack.len() {
            return Err("pickle mark past the stack".into());
        }
        Ok(self.stack.split_off(mark))
    }

    fn top(&mut self) -> Result<&mut Value, String> {
        self.stack
            .last_mut()
            .ok_or_else(|| "pickle stack underflow".into())
    }

    fn string(&mut self, n: usize) -> Result<Value, String> {
        let b = self.take(n)?;
        Ok(Value::Str(String::from_utf8_lossy(b).into_owned()))
    }

    fn run(mut self) -> Result<Value, String> {
        loop {
            let op = self.u8()?;
            match op {
                0x80 => {
                    self.u8()?; // PROTO
                }
                0x95 => {
                    self.take(8)?; // FRAME
                }
                b'.' => return self.pop(),
                b'(' => self.marks.push(self.stack.len()),
                b'N' => self.stack.push(Value::None),
                0x88 => self.stack.push(Value::Opaque),
                0x89 => self.stack.push(Value::Opaque),
                b'J' => {
                    let v = self.u32()? as i32;
                    self.stack.push(Value::Int(v.into()));
                }
                b'K' => {
                    let v = self.u8()?;
                    self.stack.push(Value::Int(v.into()));
                }
                b'M' => {
                    let b = self.take(2)?;
                    self.stack
                        .push(Value::Int(u16::from_le_bytes([b[0], b[1]]).into()));
                }
                0x8a => {
                    let n = self.u8()? as usize;
                    let b = self.take(n)?;
                    if n > 8 {
                        return Err("integer too large in the pickle".into());
                    }
                    let mut buf = if b.last().is_some_and(|&x| x & 0x80 != 0) {
                        [0xff; 8]
                    } else {
                        [0; 8]
                    };
                    buf[..n].copy_from_slice(b);
                    self.stack.push(Value::Int(i64::from_le_bytes(buf)));
                }
                b'G' => {
                    self.take(8)?;
                    self.stack.push(Value::Opaque);
                }
                b'X' => {
                    let n = self.u32()? as usize;
                    let v = self.string(n)?;
                    self.stack.push(v);
                }
                0x8c => {
                    let n = self.u8()? as usize;
                    let v = self.string(n)?;
                    self.stack.push(v);
                }
                b'T' => {
                    let n = self.u32()? as usize;
                    let v = self.string(n)?;
                    self.stack.push(v);
                }
                b'U' => {
                    let n = self.u8()? as usize;
                    let v = self.string(n)?;
                    self.stack.push(v);
                }
                b'B' => {
                    let n = self.u32()? as usize;
                    self.take(n)?;
                    self.stack.push(Value::Opaque);
                }
                b'C' => {
                    let n = self.u8()? as usize;
                    self.take(n)?;
                    self.stack.push(Value::Opaque);
                }
                b'}' => self.stack.push(Value::Dict(Vec::new())),
                b']' => self.stack.push(Value::List(Vec::new())),
                b')' => self.stack.push(Value::Tuple(Vec::new())),
                b't' => {
                    let items = self.pop_mark()?;
                    check_nesting(&items)?;
                    self.stack.push(Value::Tuple(items));
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    if self.stack.len() < n {
                        return Err("pickle stack underflow".into());
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    check_nesting(&items)?;
                    self.stack.push(Value::Tuple(items));
                }
                b'q' => {
                    let i = self.u8()?.into();
                    let v = memo_copy(self.top()?);
                    self.memo.insert(i, v);
                }
                b'r' => {
                    let i = self.u32()?;
                    let v = memo_copy(self.top()?);
                    self.memo.insert(i, v);
                }
                0x94 => {
                    let i = self.memo.len() as u32;
                    let v = memo_copy(self.top()?);
                    self.memo.insert(i, v);
                }
                b'h' => {
                    let i = self.u8()?.into();
                    let v = self.memo.get(&i).cloned().ok_or("unknown memo entry")?;
                    self.stack.push(v);
                }
                b'j' => {
                    let i = self.u32()?;
                    let v = self.memo.get(&i).cloned().ok_or("unknown memo entry")?;
                    self.stack.push(v);
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.stack.push(Value::Global(module, name));
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (module, name) {
                        (Value::Str(m), Value::Str(n)) => self.stack.push(Value::Global(m, n)),
                        _ => return Err("STACK_GLOBAL without two strings".into()),
                    }
                }
                b'Q' => {
                    let pid = self.pop()?;
                    self.stack.push(persistent(pid)?);
                }
                b'R' => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    self.stack.push(reduce(callable, args)?);
                }
                0x81 => {
                    let _args = self.pop()?;
                    let class = self.pop()?;
                    self.stack.push(match class {
                        Value::Global(m, n) if m == "collections" && n == "OrderedDict" => {
                            Value::Dict(Vec::new())
                        }
                        _ => Value::Opaque,
                    });
                }
                b'b' => {
                    // BUILD: state for an object; a state dict's `_metadata` is not needed.
                    self.pop()?;
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    check_nesting(std::slice::from_ref(&v))?;
                    if let Value::Dict(items) = self.top()? {
                        items.push((k, v));
                    }
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    check_nesting(&items)?;
                    if let Value::Dict(d) = self.top()? {
                        let mut it = items.into_iter();
                        while let (Some(k), Some(v)) = (it.next(), it.next()) {
                            d.push((k, v));
                        }
                    }
                }
                b'a' => {
                    let v = self.pop()?;
                    check_nesting(std::slice::from_ref(&v))?;
                    if let Value::List(l) = self.top()? {
                        l.push(v);
                    }
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    check_nesting(&items)?;
                    if let Value::List(l) = self.top()? {
                        l.extend(items);
                    }
                }
                other => return Err(format!("unsupported pickle opcode 0x{other:02x}")),
            }
        }
    }
}

/// Containers nested deeper than this are refused: no state dict comes close, and it keeps the
/// (recursive) drop and clone of values shallow whatever the file says.
const MAX_NESTING: usize = 32;
/// Memo entries bigger than this are kept as opaque: state dicts re-reference only globals,
/// strings and storage ids, and copying big values at every memo put would let a small file
/// take unbounded memory.
const MAX_MEMO_NODES: usize = 256;

/// How many nodes `v` has (counting stops past `limit`; a string counts one node per KiB) and
/// how deep it nests (stops past [`MAX_NESTING`]), without recursion.
fn measure(v: &Value, limit: usize) -> (usize, usize) {
    let (mut nodes, mut deepest) = (0usize, 0);
    let mut todo = vec![(v, 1usize)];
    while let Some((v, depth)) = todo.pop() {
        nodes = nodes.saturating_add(match v {
            Value::Str(s) | Value::Global(s, _) => 1 + s.len() / 1024,
            _ => 1,
        });
        deepest = deepest.max(depth);
        if nodes > limit || deepest > MAX_NESTING {
            break;
        }
        match v {
            Value::Tuple(items) | Value::List(items) => {
                todo.extend(items.iter().map(|i| (i, depth + 1)));
            }
            Value::Dict(items) => {
                for (k, v) in items {
                    todo.push((k, depth + 1));
                    todo.push((v, depth + 1));
                }
            }
            _ => {}
        }
    }
    (nodes, deepest)
}

fn check_nesting(items: &[Value]) -> Result<(), String> {
    if items
        .iter()
        .any(|i| measure(i, usize::MAX).1 >= MAX_NESTING)
    {
        return Err(format!("values nested deeper than {MAX_NESTING} levels"));
    }
    Ok(())
}

fn memo_copy(v: &Value) -> Value {
    // Text counts one node per KiB, so a memoised value holds at most 256 KiB of it.
    if measure(v, MAX_MEMO_NODES).0 > MAX_MEMO_NODES {
        Value::Opaque
    } else {
        v.clone()
    }
}

fn persistent(pid: Value) -> Result<Value, String> {
    let Value::Tuple(items) = pid else {
        return Err("a persistent id that is not a tuple".into());
    };
    match items.as_slice() {
        [
            Value::Str(tag),
            Value::Global(_, class),
            Value::Str(key),
            ..,
        ] if tag == "storage" => {
            let kind = storage_kind(class).ok_or_else(|| format!("unsupported storage {class}"))?;
            Ok(Value::Storage(kind, key.clone()))
        }
        _ => Err("an unknown persistent id".into()),
    }
}

fn ints(v: &Value) -> Option<Vec<i64>> {
    match v {
        Value::Tuple(items) | Value::List(items) => items
            .iter()
            .map(|i| match i {
                Value::Int(n) => Some(*n),
                _ => None,
            })
            .collect(),
        _ => None,
    }
}

fn reduce(callable: Value, args: Value) -> Result<Value, String> {
    let Value::Global(module, name) = callable else {
        return Ok(Value::Opaque);
    };
    let args = match args {
        Value::Tuple(a) => a,
        _ => return Ok(Value::Opaque),
    };
    match (module.as_str(), name.as_str()) {
        ("collections", "OrderedDict") => Ok(Value::Dict(Vec::new())),
        ("torch._utils", "_rebuild_tensor_v2") | ("torch._utils", "_rebuild_tensor") => {
            let (Some(Value::Storage(kind, storage)), Some(Value::Int(offset))) =
                (args.first(), args.get(1))
            else {
                return Err("_rebuild_tensor without a storage and an offset".into());
            };
            let size = args.get(2).and_then(ints).ok_or("tensor size missing")?;
            let stride = args.get(3).and_then(ints).ok_or("tensor stride missing")?;
            if size.len() != stride.len() || size.iter().any(|&s| s < 0) {
                return Err("tensor size and stride disagree".into());
            }
            Ok(Value::Tensor(TensorRef {
                kind: *kind,
                storage: storage.clone(),
                offset: *offset,
                size,
                stride,
            }))
        }
        // A parameter wraps its tensor.
        ("torch._utils", "_rebuild_parameter") => {
            Ok(args.into_iter().next().unwrap_or(Value::None))
        }
        _ => Ok(Value::Opaque),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long1_reads_negative_and_positive_integers() {
        // PROTO 2, LONG1 2 bytes (-2), STOP
        let v = Unpickler::new(&[0x80, 2, 0x8a, 2, 0xfe, 0xff, b'.'])
            .run()
            .unwrap();
        assert!(matches!(v, Value::Int(-2)));
        let v = Unpickler::new(&[0x80, 2, 0x8a, 1, 0x7f, b'.'])
            .run()
            .unwrap();
        assert!(matches!(v, Value::Int(127)));
    }

    #[test]
    fn deep_nesting_and_memo_blow_ups_are_bounded() {
        // 100 000 nested lists: refused, not a stack overflow.
        let mut deep = vec![0x80, 2];
        deep.extend(std::iter::repeat_n(b']', 100_000));
        deep.extend(std::iter::repeat_n(b'a', 99_999));
        deep.push(b'.');
        let err = Unpickler::new(&deep).run().unwrap_err();
        assert!(err.contains("nested deeper"), "{err}");
        // A list doubled through the memo 40 times would be 2^40 items if copied.
        let mut wide = vec![0x80, 2, b']', b'K', 1, b'a'];
        for _ in 0..40 {
            wide.extend([b'q', 0, b'h', 0, b'h', 0, 0x86]);
        }
        wide.push(b'.');
        assert!(Unpickler::new(&wide).run().is_ok());
    }

    #[test]
    fn a_truncated_pickle_is_an_error_not_a_panic() {
        assert!(
            Unpickler::new(&[0x80, 2, b'X', 10, 0, 0, 0, b'a'])
                .run()
                .is_err()
        );
        assert!(Unpickler::new(b".").run().is_err());
        assert!(Unpickler::new(b"u").run().is_err());
    }

    /// A zip-format checkpoint holding `{"w": tensor}` whose view is `size` over a 4-float
    /// storage, written by hand.
    fn checkpoint(size: u8, stride: u8) -> tempfile::NamedTempFile {
        let floats: Vec<u8> = [1f32, 2.0, 3.0, 4.0]
            .iter()
            .flat_map(|f| f.to_le_bytes())
            .collect();
        let bytes =
            crate::tiny::torch_zip(&crate::tiny::state_dict_pickle(size, stride), &floats).unwrap();
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), bytes).unwrap();
        file
    }

    #[test]
    fn views_are_read_and_views_past_their_storage_are_refused() {
        let ok = read_torch_file(checkpoint(2, 2).path()).unwrap();
        assert_eq!(ok.len(), 1);
        assert_eq!(ok[0].0, "w");
        assert_eq!(Vec::<f32>::try_from(&ok[0].1).unwrap(), vec![1.0, 3.0]);
        for (size, stride) in [(5, 1), (3, 2), (2, 200)] {
            let err = read_torch_file(checkpoint(size, stride).path())
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("does not fit its storage"),
                "{size} {stride}: {err}"
            );
        }
    }

    #[test]
    fn a_file_that_is_not_a_zip_is_refused_with_the_reason() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("old.pt");
        let cases: [(&[u8], &str); 4] = [
            (b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20", "legacy format"),
            (b"<!DOCTYPE html><html>", "HTML page"),
            (b"PK\x03\x04truncated", "damaged or truncated zip"),
            (
                b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":1}",
                "a safetensors file",
            ),
        ];
        for (bytes, reason) in cases {
            std::fs::write(&path, bytes).unwrap();
            let err = read_torch_file(&path).unwrap_err().to_string();
            assert!(err.contains("not a torch checkpoint we can read"), "{err}");
            assert!(err.contains(reason), "{reason}: {err}");
        }
    }

    #[test]
    fn zip_entries_are_read_no_further_than_their_limit() {
        let file = tempfile::NamedTempFile::new().unwrap();
        let mut zip = zip::ZipWriter::new(file.reopen().unwrap());
        let stored =
            zip::write::FileOptions::default().compression_method(zip::CompressionMethod::Stored);
        zip.start_file("big", stored).unwrap();
        std::io::Write::write_all(&mut zip, &[7u8; 2000]).unwrap();
        zip.finish().unwrap();
        let mut archive = zip::ZipArchive::new(file.reopen().unwrap()).unwrap();
        let refused = read_entry(&mut archive, "big", 1000).unwrap_err();
        assert!(refused.contains("over the 1000 byte limit"), "{refused}");
        assert_eq!(read_entry(&mut archive, "big", 2000).unwrap().len(), 2000);
    }

    #[test]
    fn a_huge_memoised_string_is_not_copied() {
        let big = Value::Str("x".repeat(1 << 20));
        assert!(matches!(memo_copy(&big), Value::Opaque));
        assert!(matches!(memo_copy(&Value::Str("w".into())), Value::Str(_)));
    }
}
