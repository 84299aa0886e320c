public import NIOCore

/// One reply from a Redis server, in RESP2 or RESP3 (https://redis.io/docs/latest/develop/reference/protocol-spec/).
///
/// RESP2's null bulk string and null array both become ``null``, as RESP3's `_` does.
public enum RESPValue: Sendable, Equatable {
    case simpleString(String)
    /// An error reply (`-ERR …`, RESP3 `!`): the server refused the command.
    case error(String)
    case integer(Int64)
    case bulkString(ByteBuffer)
    case array([RESPValue])
    case null
    /// RESP3 `,`.
    case double(Double)
    /// RESP3 `#`.
    case boolean(Bool)
    /// RESP3 `(`, kept as its decimal text.
    case bigNumber(String)
    /// RESP3 `=`: the format (`txt`, `mkd`) and the text.
    case verbatim(format: String, text: ByteBuffer)
    /// RESP3 `%`, as key–value pairs in the server's order.
    case map([(key: RESPValue, value: RESPValue)])
    /// RESP3 `~`.
    case set([RESPValue])
    /// RESP3 `>`: an out-of-band message (pub/sub), not a reply to a command.
    case push([RESPValue])

    public static func == (lhs: RESPValue, rhs: RESPValue) -> Bool {
        switch (lhs, rhs) {
        case (.simpleString(let a), .simpleString(let b)): a == b
        case (.error(let a), .error(let b)): a == b
        case (.integer(let a), .integer(let b)): a == b
        case (.bulkString(let a), .bulkString(let b)): a == b
        case (.array(let a), .array(let b)): a == b
        case (.null, .null): true
        case (.double(let a), .double(let b)): a == b || (a.isNaN && b.isNaN)
        case (.boolean(let a), .boolean(let b)): a == b
        case (.bigNumber(let a), .bigNumber(let b)): a == b
        case (.verbatim(let f, let a), .verbatim(let g, let b)): f == g && a == b
        case (.map(let a), .map(let b)): a.count == b.count && zip(a, b).allSatisfy { $0.key == $1.key && $0.value == $1.value }
        case (.set(let a), .set(let b)): a == b
        case (.push(let a), .push(let b)): a == b
        default: false
        }
    }
}

extension RESPValue {
    /// The value as text: simple, bulk and verbatim strings, integers and big numbers.
    public var string: String? {
        switch self {
        case .simpleString(let text), .bigNumber(let text): text
        case .bulkString(let bytes), .verbatim(_, let bytes): String(buffer: bytes)
        case .integer(let value): String(value)
        default: nil
        }
    }

    /// The value as bytes: bulk and verbatim strings, and simple strings.
    public var bytes: ByteBuffer? {
        switch self {
        case .bulkString(let bytes), .verbatim(_, let bytes): bytes
        case .simpleString(let text): ByteBuffer(string: text)
        default: nil
        }
    }

    /// The value as an integer: integers, and strings holding one.
    public var integer: Int64? {
        switch self {
        case .integer(let value): value
        case .simpleString, .bulkString, .bigNumber: self.string.flatMap { Int64($0) }
        default: nil
        }
    }

    /// The elements of an array, set or push.
    public var array: [RESPValue]? {
        switch self {
        case .array(let elements), .set(let elements), .push(let elements): elements
        default: nil
        }
    }

    public var isNull: Bool {
        if case .null = self { return true }
        return false
    }
}
