//! Writes ONNX models: a small graph builder and the protobuf encoding of the
//! part of `onnx.proto` a feed-forward CNN needs.
//!
//! The encoding is written by hand (varints and length-delimited fields) so
//! the output is a pure function of the graph: the same graph always gives
//! the same bytes, which makes the converter deterministic and its output
//! checkable by SHA-256. Field numbers are those of `onnx/onnx.proto`
//! (IR version 7, which goes with opset 13).

/// `TensorProto.DataType.FLOAT`
const FLOAT: u64 = 1;
/// `AttributeProto.AttributeType` values.
const ATTR_FLOAT: u64 = 1;
const ATTR_INT: u64 = 2;
const ATTR_INTS: u64 = 7;

/// IR version 7 goes with opset 13.
pub const IR_VERSION: u64 = 7;
/// The default-domain opset the graphs use.
pub const OPSET: u64 = 13;

/// A node attribute.
#[derive(Debug, Clone)]
pub enum Attr {
    /// One int.
    Int(i64),
    /// A list of ints.
    Ints(Vec<i64>),
    /// One float.
    Float(f32),
}

/// A float tensor constant (an initializer).
#[derive(Debug, Clone)]
pub struct Initializer {
    /// Its name in the graph.
    pub name: String,
    /// Its dimensions.
    pub dims: Vec<i64>,
    /// Its elements, row-major.
    pub data: Vec<f32>,
}

/// One operator application.
#[derive(Debug, Clone)]
pub struct Node {
    /// The operator, e.g. `Conv`.
    pub op: String,
    /// A unique name.
    pub name: String,
    /// Input value names.
    pub inputs: Vec<String>,
    /// Output value names.
    pub outputs: Vec<String>,
    /// Attributes, in the order written.
    pub attrs: Vec<(String, Attr)>,
}

/// A graph input or output: a float tensor of fixed shape.
#[derive(Debug, Clone)]
pub struct ValueInfo {
    /// The value's name.
    pub name: String,
    /// Its dimensions.
    pub dims: Vec<i64>,
}

/// A whole model: one graph in the default domain.
#[derive(Debug, Clone, Default)]
pub struct Model {
    /// The graph's name.
    pub name: String,
    /// Written to `producer_name`.
    pub producer: String,
    /// Written to `doc_string`.
    pub doc: String,
    /// The nodes, in topological order.
    pub nodes: Vec<Node>,
    /// The constants.
    pub initializers: Vec<Initializer>,
    /// The graph's inputs.
    pub inputs: Vec<ValueInfo>,
    /// The graph's outputs.
    pub outputs: Vec<ValueInfo>,
}

impl Model {
    /// Adds a node and returns the name of its (single) output.
    pub fn node(
        &mut self,
        op: &str,
        name: &str,
        inputs: &[&str],
        attrs: Vec<(&str, Attr)>,
    ) -> String {
        let output = name.to_string();
        self.nodes.push(Node {
            op: op.into(),
            name: name.into(),
            inputs: inputs.iter().map(|s| s.to_string()).collect(),
            outputs: vec![output.clone()],
            attrs: attrs.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
        });
        output
    }

    /// Adds a constant and returns its name.
    pub fn constant(&mut self, name: &str, dims: Vec<i64>, data: Vec<f32>) -> String {
        self.initializers.push(Initializer {
            name: name.into(),
            dims,
            data,
        });
        name.to_string()
    }

    /// The protobuf encoding of `ModelProto`.
    pub fn encode(&self) -> Vec<u8> {
        let mut graph = Vec::new();
        for node in &self.nodes {
            message(&mut graph, 1, &encode_node(node));
        }
        string(&mut graph, 2, &self.name);
        for init in &self.initializers {
            message(&mut graph, 5, &encode_tensor(init));
        }
        for input in &self.inputs {
            message(&mut graph, 11, &encode_value_info(input));
        }
        for output in &self.outputs {
            message(&mut graph, 12, &encode_value_info(output));
        }

        let mut opset = Vec::new();
        string(&mut opset, 1, "");
        varint_field(&mut opset, 2, OPSET);

        let mut model = Vec::new();
        varint_field(&mut model, 1, IR_VERSION);
        string(&mut model, 2, &self.producer);
        string(&mut model, 6, &self.doc);
        message(&mut model, 7, &graph);
        message(&mut model, 8, &opset);
        model
    }
}

fn encode_node(node: &Node) -> Vec<u8> {
    let mut out = Vec::new();
    for input in &node.inputs {
        string(&mut out, 1, input);
    }
    for output in &node.outputs {
        string(&mut out, 2, output);
    }
    string(&mut out, 3, &node.name);
    string(&mut out, 4, &node.op);
    for (name, attr) in &node.attrs {
        let mut a = Vec::new();
        string(&mut a, 1, name);
        match attr {
            Attr::Float(f) => {
                key(&mut a, 2, 5);
                a.extend_from_slice(&f.to_le_bytes());
                varint_field(&mut a, 20, ATTR_FLOAT);
            }
            Attr::Int(i) => {
                varint_field(&mut a, 3, *i as u64);
                varint_field(&mut a, 20, ATTR_INT);
            }
            Attr::Ints(values) => {
                for v in values {
                    varint_field(&mut a, 8, *v as u64);
                }
                varint_field(&mut a, 20, ATTR_INTS);
            }
        }
        message(&mut out, 5, &a);
    }
    out
}

fn encode_tensor(init: &Initializer) -> Vec<u8> {
    let mut out = Vec::new();
    for d in &init.dims {
        varint_field(&mut out, 1, *d as u64);
    }
    varint_field(&mut out, 2, FLOAT);
    string(&mut out, 8, &init.name);
    let raw: Vec<u8> = init.data.iter().flat_map(|f| f.to_le_bytes()).collect();
    bytes(&mut out, 9, &raw);
    out
}

fn encode_value_info(info: &ValueInfo) -> Vec<u8> {
    let mut shape = Vec::new();
    for d in &info.dims {
        let mut dim = Vec::new();
        varint_field(&mut dim, 1, *d as u64);
        message(&mut shape, 1, &dim);
    }
    let mut tensor_type = Vec::new();
    varint_field(&mut tensor_type, 1, FLOAT);
    message(&mut tensor_type, 2, &shape);
    let mut type_proto = Vec::new();
    message(&mut type_proto, 1, &tensor_type);
    let mut out = Vec::new();
    string(&mut out, 1, &info.name);
    message(&mut out, 2, &type_proto);
    out
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn key(out: &mut Vec<u8>, field: u64, wire_type: u64) {
    varint(out, (field << 3) | wire_type);
}

fn varint_field(out: &mut Vec<u8>, field: u64, v: u64) {
    key(out, field, 0);
    varint(out, v);
}

fn bytes(out: &mut Vec<u8>, field: u64, data: &[u8]) {
    key(out, field, 2);
    varint(out, data.len() as u64);
    out.extend_from_slice(data);
}

fn string(out: &mut Vec<u8>, field: u64, s: &str) {
    bytes(out, field, s.as_bytes());
}

fn message(out: &mut Vec<u8>, field: u64, encoded: &[u8]) {
    bytes(out, field, encoded);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_follow_the_protobuf_encoding() {
        let mut out = Vec::new();
        varint(&mut out, 1);
        varint(&mut out, 300);
        varint(&mut out, -1i64 as u64);
        assert_eq!(
            out,
            [
                0x01, 0xac, 0x02, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01
            ]
        );
    }

    #[test]
    fn a_model_header_has_ir_version_and_opset() {
        let bytes = Model::default().encode();
        // field 1 (ir_version) = 7, then producer_name and doc_string (empty).
        assert_eq!(&bytes[..2], &[0x08, 0x07]);
        // The opset import: field 8 holding {domain "", version 13}.
        assert!(bytes.ends_with(&[0x42, 0x04, 0x0a, 0x00, 0x10, 0x0d]));
    }
}
