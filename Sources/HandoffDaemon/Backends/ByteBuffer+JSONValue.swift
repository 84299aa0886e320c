import HandoffRequest
import HandoffSSE
import NIOCore

extension ByteBuffer {
    /// Appends `value` as compact JSON with object keys sorted, so equal values give equal
    /// bytes. Integral numbers below 2^53 are written as integers (`3`, not `3.0`).
    mutating func writeJSON(_ value: JSONValue) {
        switch value {
        case .null:
            self.writeStaticString("null")
        case .bool(let value):
            self.writeStaticString(value ? "true" : "false")
        case .number(let value):
            if value.rounded() == value, abs(value) < 9e15 {
                self.writeString(String(Int(value)))
            } else {
                self.writeString(value.isFinite ? value.description : "null")
            }
        case .string(let value):
            self.writeJSONString(value)
        case .array(let values):
            self.writeStaticString("[")
            for (index, element) in values.enumerated() {
                if index > 0 { self.writeStaticString(",") }
                self.writeJSON(element)
            }
            self.writeStaticString("]")
        case .object(let members):
            self.writeStaticString("{")
            for (index, key) in members.keys.sorted().enumerated() {
                if index > 0 { self.writeStaticString(",") }
                self.writeJSONString(key)
                self.writeStaticString(":")
                self.writeJSON(members[key]!)
            }
            self.writeStaticString("}")
        }
    }
}
