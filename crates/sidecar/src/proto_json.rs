//! JSON and protobuf's `google.protobuf.Value` / `Struct`, both ways: how
//! a CloudEvent's extensions reach a gRPC app, and how a job's JSON data
//! is kept and handed back.

use serde_json::{Map, Value};

/// A JSON object as a protobuf `Struct`.
pub(crate) fn struct_of(fields: Map<String, Value>) -> prost_types::Struct {
    prost_types::Struct {
        fields: fields
            .into_iter()
            .map(|(name, value)| (name, proto_of(value)))
            .collect(),
    }
}

/// A JSON value as a protobuf `Value` (numbers as doubles, as
/// `google.protobuf.Value` holds them).
pub(crate) fn proto_of(value: Value) -> prost_types::Value {
    use prost_types::value::Kind;
    let kind = match value {
        Value::Null => Kind::NullValue(0),
        Value::Bool(b) => Kind::BoolValue(b),
        Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or_default()),
        Value::String(s) => Kind::StringValue(s),
        Value::Array(items) => Kind::ListValue(prost_types::ListValue {
            values: items.into_iter().map(proto_of).collect(),
        }),
        Value::Object(fields) => Kind::StructValue(struct_of(fields)),
    };
    prost_types::Value { kind: Some(kind) }
}

/// A protobuf `Value` as JSON, as protojson writes it (a whole number as
/// an integer; NaN and the infinities as strings).
pub(crate) fn json_of(value: &prost_types::Value) -> Value {
    use prost_types::value::Kind;
    match &value.kind {
        None | Some(Kind::NullValue(_)) => Value::Null,
        Some(Kind::BoolValue(b)) => Value::Bool(*b),
        Some(Kind::NumberValue(n)) => {
            if n.fract() == 0.0 && n.abs() < 9.007_199_254_740_992e15 {
                Value::from(*n as i64)
            } else {
                serde_json::Number::from_f64(*n)
                    .map_or_else(|| Value::String(n.to_string()), Value::Number)
            }
        }
        Some(Kind::StringValue(s)) => Value::String(s.clone()),
        Some(Kind::ListValue(list)) => Value::Array(list.values.iter().map(json_of).collect()),
        Some(Kind::StructValue(fields)) => Value::Object(
            fields
                .fields
                .iter()
                .map(|(name, value)| (name.clone(), json_of(value)))
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_goes_through_a_protobuf_value_and_back() {
        let json = serde_json::json!({"order": 7, "price": 2.5, "tags": ["a", null, true], "nested": {"x": "y"}});
        assert_eq!(json_of(&proto_of(json.clone())), json);
    }
}
