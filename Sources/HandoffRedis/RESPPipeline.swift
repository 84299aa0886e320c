public import NIOCore

/// Several commands encoded into one buffer as they are added, sent together with
/// ``RedisClient/send(_:)-(RESPPipeline)``: one write, one future for all their replies.
///
/// For hot paths: no array of arguments and no buffer per command.
public struct RESPPipeline: Sendable {
    public private(set) var bytes: ByteBuffer
    public private(set) var count = 0
    /// The first command's name, for errors and logs.
    public private(set) var firstName: String?
    /// Indices of the commands whose replies the sender wants back (``keepReply()``).
    public private(set) var keptReplies: [Int] = []

    public init(allocator: ByteBufferAllocator = ByteBufferAllocator(), capacity: Int = 1024) {
        self.bytes = allocator.buffer(capacity: capacity)
    }

    public var isEmpty: Bool { self.count == 0 }

    /// Starts a command of `arguments` arguments after its name; follow with exactly that many
    /// `argument` calls.
    public mutating func command(_ name: StaticString, arguments: Int) {
        self.count += 1
        if self.firstName == nil { self.firstName = name.description }
        self.bytes.writeStaticString("*")
        self.writeDecimal(arguments + 1)
        self.bytes.writeStaticString("\r\n$")
        self.writeDecimal(name.utf8CodeUnitCount)
        self.bytes.writeStaticString("\r\n")
        self.bytes.writeStaticString(name)
        self.bytes.writeStaticString("\r\n")
    }

    /// The encoded start of a command up to and including its first argument (`*N`, the name,
    /// the first argument), made once with ``prefix(_:arguments:first:)`` for a command sent
    /// over and over with the same key. Follow with the remaining `arguments - 1` arguments.
    public mutating func command(prefix: ByteBuffer, name: StaticString) {
        self.count += 1
        if self.firstName == nil { self.firstName = name.description }
        self.bytes.writeImmutableBuffer(prefix)
    }

    /// The bytes ``command(prefix:name:)`` takes.
    public static func prefix(_ name: StaticString, arguments: Int, first: String) -> ByteBuffer {
        var pipeline = RESPPipeline(capacity: 32 + first.utf8.count)
        pipeline.command(name, arguments: arguments)
        pipeline.argument(first)
        return pipeline.bytes
    }

    /// Keeps the reply of the command just added: the pipeline's future gives the kept
    /// replies, in order.
    public mutating func keepReply() {
        precondition(self.count > 0)
        self.keptReplies.append(self.count - 1)
    }

    /// Bytes already encoded as RESP (a whole argument, e.g. `"$1\r\ne\r\n"`).
    public mutating func raw(_ encoded: StaticString) {
        self.bytes.writeStaticString(encoded)
    }

    public mutating func argument(_ text: String) {
        self.bytes.writeStaticString("$")
        self.writeDecimal(text.utf8.count)
        self.bytes.writeStaticString("\r\n")
        self.bytes.writeString(text)
        self.bytes.writeStaticString("\r\n")
    }

    public mutating func argument(_ text: StaticString) {
        self.bytes.writeStaticString("$")
        self.writeDecimal(text.utf8CodeUnitCount)
        self.bytes.writeStaticString("\r\n")
        self.bytes.writeStaticString(text)
        self.bytes.writeStaticString("\r\n")
    }

    public mutating func argument(_ value: Int64) {
        self.bytes.writeStaticString("$")
        self.writeDecimal(Self.digits(of: value) + (value < 0 ? 1 : 0))
        self.bytes.writeStaticString("\r\n")
        if value < 0 {
            self.bytes.writeString(String(value))
        } else {
            self.writeDecimal(Int(value))
        }
        self.bytes.writeStaticString("\r\n")
    }

    /// `<prefix><value>` as one argument, e.g. a stream entry id `0-17`.
    public mutating func argument(_ prefix: StaticString, _ value: Int64) {
        precondition(value >= 0)
        self.bytes.writeStaticString("$")
        self.writeDecimal(prefix.utf8CodeUnitCount + Self.digits(of: value))
        self.bytes.writeStaticString("\r\n")
        self.bytes.writeStaticString(prefix)
        self.writeDecimal(Int(value))
        self.bytes.writeStaticString("\r\n")
    }

    public mutating func argument(_ buffer: ByteBuffer) {
        self.bytes.writeStaticString("$")
        self.writeDecimal(buffer.readableBytes)
        self.bytes.writeStaticString("\r\n")
        self.bytes.writeImmutableBuffer(buffer)
        self.bytes.writeStaticString("\r\n")
    }

    /// Decimal digits of `value`, without its sign.
    private static func digits(of value: Int64) -> Int {
        var digits = 1
        var rest = value < 0 ? -(value / 10) : value / 10
        while rest > 0 {
            digits += 1
            rest /= 10
        }
        return digits
    }

    /// Writes a non-negative decimal without building a String.
    private mutating func writeDecimal(_ value: Int) {
        if value < 10 {
            self.bytes.writeInteger(UInt8(ascii: "0") + UInt8(value))
            return
        }
        var digits: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) =
            (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        var count = 0
        var rest = value
        withUnsafeMutableBytes(of: &digits) { raw in
            while rest > 0 {
                raw[19 - count] = UInt8(ascii: "0") + UInt8(rest % 10)
                rest /= 10
                count += 1
            }
            self.bytes.writeBytes(UnsafeRawBufferPointer(rebasing: raw[(20 - count)...]))
        }
    }
}
