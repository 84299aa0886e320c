public import NIOCore

/// One command, encoded as RESP: an array of bulk strings.
public struct RESPCommand: Sendable {
    /// The encoded bytes.
    public private(set) var bytes: ByteBuffer
    /// The command's name, for errors and logs.
    public let name: String

    /// `name` followed by `arguments`, each a bulk string.
    public init(_ name: String, _ arguments: [RESPArgument] = [], allocator: ByteBufferAllocator = ByteBufferAllocator()) {
        self.name = name
        let size = arguments.reduce(name.utf8.count + 16) { $0 + $1.byteCount + 16 }
        var bytes = allocator.buffer(capacity: size)
        bytes.writeStaticString("*")
        bytes.writeString(String(arguments.count + 1))
        bytes.writeStaticString("\r\n")
        Self.writeBulk(name, into: &bytes)
        for argument in arguments {
            switch argument {
            case .string(let text): Self.writeBulk(text, into: &bytes)
            case .bytes(let buffer):
                bytes.writeStaticString("$")
                bytes.writeString(String(buffer.readableBytes))
                bytes.writeStaticString("\r\n")
                bytes.writeImmutableBuffer(buffer)
                bytes.writeStaticString("\r\n")
            }
        }
        self.bytes = bytes
    }

    private static func writeBulk(_ text: String, into bytes: inout ByteBuffer) {
        bytes.writeStaticString("$")
        bytes.writeString(String(text.utf8.count))
        bytes.writeStaticString("\r\n")
        bytes.writeString(text)
        bytes.writeStaticString("\r\n")
    }
}

/// One argument of a command.
public enum RESPArgument: Sendable, ExpressibleByStringLiteral, ExpressibleByIntegerLiteral {
    case string(String)
    case bytes(ByteBuffer)

    public init(stringLiteral value: String) { self = .string(value) }
    public init(integerLiteral value: Int) { self = .string(String(value)) }

    var byteCount: Int {
        switch self {
        case .string(let text): text.utf8.count
        case .bytes(let buffer): buffer.readableBytes
        }
    }
}
