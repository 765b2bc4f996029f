//! Reads a PyTorch state dict saved in the legacy (pre-1.6, non-zip) format,
//! without Python or PyTorch.
//!
//! The legacy format is five pickles followed by raw storages:
//!
//! 1. a magic number, 2. a protocol version (1001), 3. `sys_info`
//!    (endianness, type sizes),
//! 4. the object itself: here an `OrderedDict` of name → tensor, where each
//!    tensor is `torch._utils._rebuild_tensor_v2(storage, offset, size,
//!    stride, ...)` and `storage` is a *persistent id*
//!    `('storage', torch.FloatStorage, key, location, numel, view)`,
//! 5. the list of storage keys, in the order their data follows,
//!
//! then, for each key, an `i64` element count and the elements, little-endian.
//!
//! [`Pickle`] is a small pickle machine that knows only the opcodes such
//! files use and builds plain [`Value`]s; it never runs code. Unknown
//! opcodes, unknown storage types and out-of-range views are errors, so a
//! damaged or unexpected file fails with a reason instead of loading garbage.

use std::collections::HashMap;

/// Why a file could not be read as a legacy state dict.
#[derive(Debug, thiserror::Error)]
#[error("not a legacy PyTorch state dict: {0}")]
pub struct TorchError(String);

fn bad(message: impl Into<String>) -> TorchError {
    TorchError(message.into())
}

/// One tensor of a state dict, made contiguous (row-major).
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    /// The dimensions.
    pub shape: Vec<usize>,
    /// The elements in row-major order, as `f32` (integer tensors converted).
    pub data: Vec<f32>,
}

impl Tensor {
    /// The number of elements.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether it has no elements.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

/// A state dict: tensors by name, in the file's order.
#[derive(Debug, Clone, Default)]
pub struct StateDict {
    entries: Vec<(String, Tensor)>,
    index: HashMap<String, usize>,
}

impl StateDict {
    /// The tensor called `name`.
    pub fn get(&self, name: &str) -> Result<&Tensor, TorchError> {
        self.index
            .get(name)
            .map(|&i| &self.entries[i].1)
            .ok_or_else(|| bad(format!("it has no tensor `{name}`")))
    }

    /// Whether a tensor called `name` exists.
    pub fn contains(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    /// All names, in the file's order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(n, _)| n.as_str())
    }

    /// The number of tensors.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it holds no tensors.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// A pickled value, as far as state dicts need.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `None`
    None,
    /// `True` / `False`
    Bool(bool),
    /// An int that fits in 64 bits.
    Int(i64),
    /// A float.
    Float(f64),
    /// A str.
    Str(String),
    /// A tuple.
    Tuple(Vec<Value>),
    /// A list.
    List(Vec<Value>),
    /// A dict or `OrderedDict`, in insertion order.
    Dict(Vec<(Value, Value)>),
    /// A reference to `module.name` (never resolved or called).
    Global(String, String),
    /// A persistent id (how storages are referenced).
    Persistent(Box<Value>),
    /// `_rebuild_tensor_v2(...)`, not yet backed by data.
    TensorView(TensorView),
    /// Any other call `callable(*args)`, kept as data.
    Call(Box<Value>, Box<Value>),
}

/// A tensor as the pickle describes it: a view into a storage.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorView {
    /// The storage's key.
    pub storage_key: String,
    /// `FloatStorage`, `LongStorage`, ...
    pub storage_type: String,
    /// The offset of element 0, in elements.
    pub offset: usize,
    /// The dimensions.
    pub shape: Vec<usize>,
    /// The strides, in elements.
    pub stride: Vec<usize>,
}

/// A minimal, code-free pickle reader over a byte slice.
pub struct Pickle<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Pickle<'a> {
    /// Starts reading at the beginning of `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Pickle { data, pos: 0 }
    }

    /// Where the next pickle (or the raw data after the last) starts.
    pub fn position(&self) -> usize {
        self.pos
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], TorchError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.data.len())
            .ok_or_else(|| bad("the file ends in the middle of a pickle"))?;
        let bytes = &self.data[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    fn byte(&mut self) -> Result<u8, TorchError> {
        Ok(self.take(1)?[0])
    }

    fn u32_le(&mut self) -> Result<u32, TorchError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn line(&mut self) -> Result<String, TorchError> {
        let rest = &self.data[self.pos..];
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| bad("unterminated GLOBAL"))?;
        let text = String::from_utf8(rest[..end].to_vec()).map_err(|_| bad("GLOBAL not UTF-8"))?;
        self.pos += end + 1;
        Ok(text)
    }

    fn string(&mut self, len: usize) -> Result<String, TorchError> {
        String::from_utf8(self.take(len)?.to_vec()).map_err(|_| bad("a string is not UTF-8"))
    }

    /// Reads one whole pickle (up to its STOP) and returns its value.
    pub fn load(&mut self) -> Result<Value, TorchError> {
        let mut stack: Vec<Value> = Vec::new();
        let mut marks: Vec<usize> = Vec::new();
        let mut memo: HashMap<u32, Value> = HashMap::new();
        fn pop(stack: &mut Vec<Value>) -> Result<Value, TorchError> {
            stack.pop().ok_or_else(|| bad("pickle stack underflow"))
        }
        fn pop_mark(
            stack: &mut Vec<Value>,
            marks: &mut Vec<usize>,
        ) -> Result<Vec<Value>, TorchError> {
            let mark = marks.pop().ok_or_else(|| bad("pickle MARK missing"))?;
            if mark > stack.len() {
                return Err(bad("pickle MARK past the stack"));
            }
            Ok(stack.split_off(mark))
        }
        fn top(stack: &mut [Value]) -> Result<&mut Value, TorchError> {
            stack
                .last_mut()
                .ok_or_else(|| bad("pickle stack underflow"))
        }
        loop {
            let op = self.byte()?;
            match op {
                0x80 => {
                    self.byte()?; // PROTO n
                }
                0x95 => {
                    self.take(8)?; // FRAME
                }
                b'.' => return pop(&mut stack),
                b'(' => marks.push(stack.len()),
                b'N' => stack.push(Value::None),
                0x88 => stack.push(Value::Bool(true)),
                0x89 => stack.push(Value::Bool(false)),
                b'J' => {
                    let v = self.u32_le()? as i32;
                    stack.push(Value::Int(i64::from(v)));
                }
                b'K' => {
                    let v = self.byte()?;
                    stack.push(Value::Int(i64::from(v)));
                }
                b'M' => {
                    let b = self.take(2)?;
                    stack.push(Value::Int(i64::from(u16::from_le_bytes([b[0], b[1]]))));
                }
                0x8a => {
                    // LONG1: little-endian two's complement of n bytes.
                    let n = usize::from(self.byte()?);
                    let bytes = self.take(n)?;
                    if n > 8 {
                        // Magic numbers are wider than 64 bits; keep them opaque.
                        stack.push(Value::Int(i64::MIN));
                    } else {
                        let mut v: i64 = 0;
                        for (i, &b) in bytes.iter().enumerate() {
                            v |= i64::from(b) << (8 * i);
                        }
                        if n > 0 && n < 8 && bytes[n - 1] & 0x80 != 0 {
                            v -= 1i64 << (8 * n);
                        }
                        stack.push(Value::Int(v));
                    }
                }
                b'G' => {
                    let b = self.take(8)?;
                    let mut a = [0u8; 8];
                    a.copy_from_slice(b);
                    stack.push(Value::Float(f64::from_be_bytes(a)));
                }
                b'X' => {
                    let n = self.u32_le()? as usize;
                    stack.push(Value::Str(self.string(n)?));
                }
                0x8c => {
                    let n = usize::from(self.byte()?);
                    stack.push(Value::Str(self.string(n)?));
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    stack.push(Value::Global(module, name));
                }
                0x93 => {
                    let name = pop(&mut stack)?;
                    let module = pop(&mut stack)?;
                    match (module, name) {
                        (Value::Str(m), Value::Str(n)) => stack.push(Value::Global(m, n)),
                        _ => return Err(bad("STACK_GLOBAL needs two strings")),
                    }
                }
                b')' => stack.push(Value::Tuple(Vec::new())),
                b't' => {
                    let items = pop_mark(&mut stack, &mut marks)?;
                    stack.push(Value::Tuple(items));
                }
                0x85..=0x87 => {
                    let n = usize::from(op - 0x84);
                    if stack.len() < n {
                        return Err(bad("pickle stack underflow"));
                    }
                    let items = stack.split_off(stack.len() - n);
                    stack.push(Value::Tuple(items));
                }
                b'}' => stack.push(Value::Dict(Vec::new())),
                b']' => stack.push(Value::List(Vec::new())),
                b'd' => {
                    let items = pop_mark(&mut stack, &mut marks)?;
                    stack.push(Value::Dict(pairs(items)?));
                }
                b'l' => {
                    let items = pop_mark(&mut stack, &mut marks)?;
                    stack.push(Value::List(items));
                }
                b's' => {
                    let value = pop(&mut stack)?;
                    let key = pop(&mut stack)?;
                    match top(&mut stack)? {
                        Value::Dict(entries) => entries.push((key, value)),
                        _ => return Err(bad("SETITEM on a non-dict")),
                    }
                }
                b'u' => {
                    let items = pop_mark(&mut stack, &mut marks)?;
                    let items = pairs(items)?;
                    match top(&mut stack)? {
                        Value::Dict(entries) => entries.extend(items),
                        _ => return Err(bad("SETITEMS on a non-dict")),
                    }
                }
                b'a' => {
                    let value = pop(&mut stack)?;
                    match top(&mut stack)? {
                        Value::List(items) => items.push(value),
                        _ => return Err(bad("APPEND on a non-list")),
                    }
                }
                b'e' => {
                    let values = pop_mark(&mut stack, &mut marks)?;
                    match top(&mut stack)? {
                        Value::List(items) => items.extend(values),
                        _ => return Err(bad("APPENDS on a non-list")),
                    }
                }
                b'q' => {
                    let key = u32::from(self.byte()?);
                    memo.insert(key, top(&mut stack)?.clone());
                }
                b'r' => {
                    let key = self.u32_le()?;
                    memo.insert(key, top(&mut stack)?.clone());
                }
                0x94 => {
                    let key = memo.len() as u32;
                    memo.insert(key, top(&mut stack)?.clone());
                }
                b'h' | b'j' => {
                    let key = if op == b'h' {
                        u32::from(self.byte()?)
                    } else {
                        self.u32_le()?
                    };
                    let value = memo
                        .get(&key)
                        .ok_or_else(|| bad(format!("pickle memo {key} is unset")))?;
                    stack.push(value.clone());
                }
                b'Q' => {
                    let pid = pop(&mut stack)?;
                    stack.push(Value::Persistent(Box::new(pid)));
                }
                b'R' => {
                    let args = pop(&mut stack)?;
                    let callable = pop(&mut stack)?;
                    stack.push(reduce(callable, args)?);
                }
                b'b' => {
                    // BUILD sets an object's state; state dicts only use it for
                    // `_metadata`, which conversion does not need.
                    pop(&mut stack)?;
                }
                b'0' => {
                    pop(&mut stack)?;
                }
                b'1' => {
                    pop_mark(&mut stack, &mut marks)?;
                }
                b'2' => {
                    let v = top(&mut stack)?.clone();
                    stack.push(v);
                }
                other => {
                    return Err(bad(format!(
                        "unsupported pickle opcode 0x{other:02x} at byte {}",
                        self.pos - 1
                    )));
                }
            }
        }
    }
}

fn pairs(items: Vec<Value>) -> Result<Vec<(Value, Value)>, TorchError> {
    if !items.len().is_multiple_of(2) {
        return Err(bad("odd number of dict items"));
    }
    let mut out = Vec::with_capacity(items.len() / 2);
    let mut it = items.into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        out.push((k, v));
    }
    Ok(out)
}

fn usizes(value: &Value, what: &str) -> Result<Vec<usize>, TorchError> {
    match value {
        Value::Tuple(items) => items
            .iter()
            .map(|v| match v {
                Value::Int(i) => usize::try_from(*i).map_err(|_| bad(format!("negative {what}"))),
                _ => Err(bad(format!("{what} must be ints"))),
            })
            .collect(),
        _ => Err(bad(format!("{what} must be a tuple"))),
    }
}

/// The only calls a state dict needs: an `OrderedDict` and tensor rebuilds.
fn reduce(callable: Value, args: Value) -> Result<Value, TorchError> {
    match (&callable, &args) {
        (Value::Global(m, n), _) if m == "collections" && n == "OrderedDict" => {
            Ok(Value::Dict(Vec::new()))
        }
        (Value::Global(m, n), Value::Tuple(a))
            if m == "torch._utils" && n == "_rebuild_tensor_v2" =>
        {
            let [storage, offset, shape, stride, ..] = a.as_slice() else {
                return Err(bad("_rebuild_tensor_v2 has too few arguments"));
            };
            let Value::Persistent(pid) = storage else {
                return Err(bad("a tensor's storage is not a persistent id"));
            };
            let Value::Tuple(pid) = pid.as_ref() else {
                return Err(bad("a storage id is not a tuple"));
            };
            let (storage_type, storage_key) = match pid.as_slice() {
                [Value::Str(tag), Value::Global(_, ty), Value::Str(key), ..]
                    if tag == "storage" =>
                {
                    (ty.clone(), key.clone())
                }
                _ => return Err(bad("a storage id is not ('storage', type, key, ...)")),
            };
            let Value::Int(offset) = offset else {
                return Err(bad("a storage offset is not an int"));
            };
            let shape = usizes(shape, "sizes")?;
            let stride = usizes(stride, "strides")?;
            if shape.len() != stride.len() {
                return Err(bad("sizes and strides differ in length"));
            }
            Ok(Value::TensorView(TensorView {
                storage_key,
                storage_type,
                offset: usize::try_from(*offset).map_err(|_| bad("negative storage offset"))?,
                shape,
                stride,
            }))
        }
        _ => Ok(Value::Call(Box::new(callable), Box::new(args))),
    }
}

/// Reads a legacy-format state dict of float (and integer) tensors.
pub fn read_state_dict(bytes: &[u8]) -> Result<StateDict, TorchError> {
    let mut pickle = Pickle::new(bytes);
    let _magic = pickle.load()?;
    match pickle.load()? {
        Value::Int(1001) => {}
        other => return Err(bad(format!("protocol version {other:?}, expected 1001"))),
    }
    if let Value::Dict(info) = pickle.load()? {
        let little = info
            .iter()
            .any(|(k, v)| *k == Value::Str("little_endian".into()) && *v == Value::Bool(true));
        if !little {
            return Err(bad("the file was saved on a big-endian machine"));
        }
    }
    let Value::Dict(entries) = pickle.load()? else {
        return Err(bad("the saved object is not a dict"));
    };
    let Value::List(keys) = pickle.load()? else {
        return Err(bad("the storage key list is missing"));
    };

    // The raw storages follow, in the key list's order.
    let mut storages: HashMap<String, &[u8]> = HashMap::new();
    let mut pos = pickle.position();
    let mut element_sizes: HashMap<String, usize> = HashMap::new();
    for (_, value) in &entries {
        if let Value::TensorView(view) = value {
            element_sizes.insert(view.storage_key.clone(), element_size(&view.storage_type)?);
        }
    }
    for key in keys {
        let Value::Str(key) = key else {
            return Err(bad("a storage key is not a string"));
        };
        let size = *element_sizes
            .get(&key)
            .ok_or_else(|| bad(format!("storage {key} is used by no tensor")))?;
        let count = bytes
            .get(pos..pos + 8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
            .ok_or_else(|| bad("the file ends before a storage's length"))?;
        let len = usize::try_from(count)
            .ok()
            .and_then(|c| c.checked_mul(size))
            .ok_or_else(|| bad("a storage length overflows"))?;
        let data = bytes
            .get(pos + 8..pos + 8 + len)
            .ok_or_else(|| bad(format!("the file ends inside storage {key}")))?;
        storages.insert(key, data);
        pos += 8 + len;
    }
    if pos != bytes.len() {
        return Err(bad(format!(
            "{} unexpected bytes after the last storage",
            bytes.len() - pos
        )));
    }

    let mut dict = StateDict::default();
    for (name, value) in entries {
        let Value::Str(name) = name else {
            return Err(bad("a state dict key is not a string"));
        };
        let Value::TensorView(view) = value else {
            return Err(bad(format!("`{name}` is not a tensor")));
        };
        let storage = storages
            .get(&view.storage_key)
            .ok_or_else(|| bad(format!("`{name}`'s storage is missing")))?;
        let tensor = materialize(&view, storage).map_err(|e| bad(format!("`{name}`: {}", e.0)))?;
        dict.index.insert(name.clone(), dict.entries.len());
        dict.entries.push((name, tensor));
    }
    Ok(dict)
}

fn element_size(storage_type: &str) -> Result<usize, TorchError> {
    match storage_type {
        "FloatStorage" | "IntStorage" => Ok(4),
        "LongStorage" | "DoubleStorage" => Ok(8),
        other => Err(bad(format!("unsupported storage type {other}"))),
    }
}

/// Copies a (possibly strided) view out of its storage, row-major.
fn materialize(view: &TensorView, storage: &[u8]) -> Result<Tensor, TorchError> {
    let size = element_size(&view.storage_type)?;
    let available = storage.len() / size;
    let count: usize = view.shape.iter().product();
    if count > 0 {
        let last = view.offset
            + view
                .shape
                .iter()
                .zip(&view.stride)
                .map(|(&n, &s)| (n - 1) * s)
                .sum::<usize>();
        if last >= available {
            return Err(bad("the view reaches past its storage"));
        }
    }
    let element = |i: usize| -> f32 {
        let b = &storage[i * size..(i + 1) * size];
        match view.storage_type.as_str() {
            "FloatStorage" => f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            "IntStorage" => i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32,
            "DoubleStorage" => {
                f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32
            }
            _ => i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32,
        }
    };
    let mut data = Vec::with_capacity(count);
    let mut index = vec![0usize; view.shape.len()];
    for _ in 0..count {
        let at = view.offset
            + index
                .iter()
                .zip(&view.stride)
                .map(|(i, s)| i * s)
                .sum::<usize>();
        data.push(element(at));
        // Advance the row-major index.
        for d in (0..index.len()).rev() {
            index[d] += 1;
            if index[d] < view.shape[d] {
                break;
            }
            index[d] = 0;
        }
    }
    Ok(Tensor {
        shape: view.shape.clone(),
        data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_opcodes_python_writes_for_small_values() {
        // pickle.dumps((1, -2, 300, 'ab', [None, True], {'k': 1.5}), protocol=2)
        let bytes: &[u8] = &[
            0x80, 0x02, 0x28, 0x4b, 0x01, 0x4a, 0xfe, 0xff, 0xff, 0xff, 0x4d, 0x2c, 0x01, 0x58,
            0x02, 0x00, 0x00, 0x00, 0x61, 0x62, 0x71, 0x00, 0x5d, 0x71, 0x01, 0x28, 0x4e, 0x88,
            0x65, 0x7d, 0x71, 0x02, 0x58, 0x01, 0x00, 0x00, 0x00, 0x6b, 0x71, 0x03, 0x47, 0x3f,
            0xf8, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x73, 0x74, 0x71, 0x04, 0x2e,
        ];
        let value = Pickle::new(bytes).load().unwrap();
        assert_eq!(
            value,
            Value::Tuple(vec![
                Value::Int(1),
                Value::Int(-2),
                Value::Int(300),
                Value::Str("ab".into()),
                Value::List(vec![Value::None, Value::Bool(true)]),
                Value::Dict(vec![(Value::Str("k".into()), Value::Float(1.5))]),
            ])
        );
    }

    #[test]
    fn strided_views_are_copied_row_major() {
        // A 2x3 tensor stored transposed (column-major): strides (1, 2).
        let storage: Vec<u8> = [1.0f32, 4.0, 2.0, 5.0, 3.0, 6.0]
            .iter()
            .flat_map(|f| f.to_le_bytes())
            .collect();
        let view = TensorView {
            storage_key: "0".into(),
            storage_type: "FloatStorage".into(),
            offset: 0,
            shape: vec![2, 3],
            stride: vec![1, 2],
        };
        let t = materialize(&view, &storage).unwrap();
        assert_eq!(t.data, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let past_end = TensorView { offset: 1, ..view };
        assert!(materialize(&past_end, &storage).is_err());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bytes in [&b""[..], b"\x80\x02", b"\xff", b"\x80\x02t."] {
            assert!(read_state_dict(bytes).is_err());
        }
    }
}
