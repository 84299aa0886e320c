public import NIOCore

/// Parses RESP2 and RESP3 replies from a byte stream, one complete value at a time.
///
/// Pure: fed whatever arrived, it returns a value only when one is complete and leaves the
/// buffer untouched otherwise, so a reply split at any byte parses the same. Limits bound
/// what a hostile or broken server can make it allocate.
public struct RESPParser: Sendable {
    /// Longest bulk string accepted (Redis's own `proto-max-bulk-len` default is 512 MiB).
    public var maxBulkLength: Int
    /// Most elements in one aggregate.
    public var maxElements: Int
    /// Deepest nesting of aggregates.
    public var maxDepth: Int

    public init(maxBulkLength: Int = 64 << 20, maxElements: Int = 1 << 20, maxDepth: Int = 32) {
        self.maxBulkLength = maxBulkLength
        self.maxElements = maxElements
        self.maxDepth = maxDepth
    }

    /// The next complete value at the start of `buffer`, consumed; `nil` (and `buffer`
    /// unchanged) when more bytes are needed.
    public func next(from buffer: inout ByteBuffer) throws(RESPProtocolError) -> RESPValue? {
        var cursor = buffer.readerIndex
        guard let value = try self.parse(buffer, at: &cursor, depth: 0) else { return nil }
        buffer.moveReaderIndex(to: cursor)
        return value
    }

    /// What ``skip(from:)`` found.
    public enum Skipped: Sendable, Equatable {
        /// A whole value, consumed and not built (a reply nobody reads).
        case value
        /// An error reply (consumed), whose message matters.
        case error(String)
    }

    /// Consumes the next complete value without building it, as ``next(from:)`` would parse
    /// it (the same checks); `nil` (and `buffer` unchanged) when more bytes are needed.
    public func skip(from buffer: inout ByteBuffer) throws(RESPProtocolError) -> Skipped? {
        guard let type = buffer.getInteger(at: buffer.readerIndex, as: UInt8.self) else { return nil }
        switch type {
        case UInt8(ascii: ":"), UInt8(ascii: "$"), UInt8(ascii: "+"):
            // The common replies to writes (integers, entry ids, OK): checked on the way.
            var cursor = buffer.readerIndex
            guard let (line, afterLine) = try Self.line(buffer, from: cursor + 1) else {
                if buffer.readableBytes > 64 * 1024 { throw RESPProtocolError("a header line longer than 64 KiB") }
                return nil
            }
            cursor = afterLine
            if type == UInt8(ascii: "$") {
                let length = try Self.integer(line)
                if length >= 0 {
                    guard length <= self.maxBulkLength else { throw RESPProtocolError("a bulk length of \(length)") }
                    guard cursor + Int(length) + 2 <= buffer.writerIndex else { return nil }
                    guard buffer.getInteger(at: cursor + Int(length), as: UInt16.self) == 0x0D0A else { throw RESPProtocolError("a bulk string not ended by CRLF") }
                    cursor += Int(length) + 2
                } else if length != -1 {
                    throw RESPProtocolError("a bulk length of \(length)")
                }
            } else if type == UInt8(ascii: ":") {
                _ = try Self.integer(line)
            }
            buffer.moveReaderIndex(to: cursor)
            return .value
        default:
            guard let value = try self.next(from: &buffer) else { return nil }
            if case .error(let message) = value { return .error(message) }
            return .value
        }
    }

    private func parse(_ buffer: ByteBuffer, at cursor: inout Int, depth: Int) throws(RESPProtocolError) -> RESPValue? {
        guard depth <= self.maxDepth else { throw RESPProtocolError("nesting deeper than \(self.maxDepth)") }
        guard let type = buffer.getInteger(at: cursor, as: UInt8.self) else { return nil }
        guard let (line, afterLine) = try Self.line(buffer, from: cursor + 1) else {
            if buffer.writerIndex - cursor > 64 * 1024 { throw RESPProtocolError("a header line longer than 64 KiB") }
            return nil
        }
        switch type {
        case UInt8(ascii: "+"):
            cursor = afterLine
            return .simpleString(String(buffer: line))
        case UInt8(ascii: "-"):
            cursor = afterLine
            return .error(String(buffer: line))
        case UInt8(ascii: ":"):
            cursor = afterLine
            return .integer(try Self.integer(line))
        case UInt8(ascii: "_"):
            cursor = afterLine
            return .null
        case UInt8(ascii: "#"):
            cursor = afterLine
            switch String(buffer: line) {
            case "t": return .boolean(true)
            case "f": return .boolean(false)
            default: throw RESPProtocolError("a boolean that is neither t nor f")
            }
        case UInt8(ascii: ","):
            cursor = afterLine
            let text = String(buffer: line)
            switch text {
            case "inf": return .double(.infinity)
            case "-inf": return .double(-.infinity)
            case "nan": return .double(.nan)
            default:
                guard let value = Double(text) else { throw RESPProtocolError("a malformed double '\(text)'") }
                return .double(value)
            }
        case UInt8(ascii: "("):
            cursor = afterLine
            return .bigNumber(String(buffer: line))
        case UInt8(ascii: "$"), UInt8(ascii: "!"), UInt8(ascii: "="):
            let length = try Self.integer(line)
            if length == -1 {
                cursor = afterLine
                return .null
            }
            guard length >= 0, length <= self.maxBulkLength else { throw RESPProtocolError("a bulk length of \(length)") }
            let end = afterLine + Int(length)
            guard end + 2 <= buffer.writerIndex else { return nil }
            guard buffer.getInteger(at: end, as: UInt16.self) == 0x0D0A else { throw RESPProtocolError("a bulk string not ended by CRLF") }
            let body = buffer.getSlice(at: afterLine, length: Int(length))!
            cursor = end + 2
            switch type {
            case UInt8(ascii: "!"): return .error(String(buffer: body))
            case UInt8(ascii: "="):
                guard body.readableBytes >= 4, body.getInteger(at: body.readerIndex + 3, as: UInt8.self) == UInt8(ascii: ":") else {
                    throw RESPProtocolError("a verbatim string without its format")
                }
                return .verbatim(format: body.getString(at: body.readerIndex, length: 3)!, text: body.getSlice(at: body.readerIndex + 4, length: body.readableBytes - 4)!)
            default: return .bulkString(body)
            }
        case UInt8(ascii: "*"), UInt8(ascii: "~"), UInt8(ascii: ">"), UInt8(ascii: "%"), UInt8(ascii: "|"):
            let count = try Self.integer(line)
            if count == -1, type == UInt8(ascii: "*") {
                cursor = afterLine
                return .null
            }
            let isMap = type == UInt8(ascii: "%") || type == UInt8(ascii: "|")
            guard count >= 0, count <= self.maxElements else { throw RESPProtocolError("an aggregate of \(count) elements") }
            var position = afterLine
            var elements: [RESPValue] = []
            elements.reserveCapacity(min(Int(count) * (isMap ? 2 : 1), 1024))
            for _ in 0..<(Int(count) * (isMap ? 2 : 1)) {
                guard let element = try self.parse(buffer, at: &position, depth: depth + 1) else { return nil }
                elements.append(element)
            }
            if type == UInt8(ascii: "|") {
                // Attributes describe the reply that follows; the reply is what counts.
                guard let reply = try self.parse(buffer, at: &position, depth: depth + 1) else { return nil }
                cursor = position
                return reply
            }
            cursor = position
            switch type {
            case UInt8(ascii: "~"): return .set(elements)
            case UInt8(ascii: ">"): return .push(elements)
            case UInt8(ascii: "%"): return .map(stride(from: 0, to: elements.count, by: 2).map { (elements[$0], elements[$0 + 1]) })
            default: return .array(elements)
            }
        default:
            throw RESPProtocolError("an unknown type byte 0x\(String(type, radix: 16))")
        }
    }

    /// The line starting at `start` without its CRLF, and the index after the CRLF.
    private static func line(_ buffer: ByteBuffer, from start: Int) throws(RESPProtocolError) -> (ByteBuffer, Int)? {
        guard let view = buffer.getSlice(at: start, length: buffer.writerIndex - start) else { return nil }
        guard let lf = view.readableBytesView.firstIndex(of: 0x0A) else { return nil }
        let length = lf - view.readerIndex
        guard length >= 1, view.getInteger(at: lf - 1, as: UInt8.self) == 0x0D else {
            throw RESPProtocolError("a line ended by a bare LF")
        }
        return (buffer.getSlice(at: start, length: length - 1)!, start + length + 1)
    }

    /// A decimal integer (optionally negative), read from the bytes without making a String.
    private static func integer(_ line: ByteBuffer) throws(RESPProtocolError) -> Int64 {
        let value: Int64? = line.withUnsafeReadableBytes { bytes in
            guard !bytes.isEmpty, bytes.count <= 20 else { return nil }
            let negative = bytes[0] == UInt8(ascii: "-")
            let digits = negative ? UnsafeRawBufferPointer(rebasing: bytes[1...]) : bytes
            guard !digits.isEmpty else { return nil }
            var result: Int64 = 0
            for byte in digits {
                guard (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) else { return nil }
                // Negative numbers are built downwards, so Int64.min fits too.
                let digit = Int64(byte - UInt8(ascii: "0"))
                let (times, overflow1) = result.multipliedReportingOverflow(by: 10)
                let (next, overflow2) = negative ? times.subtractingReportingOverflow(digit) : times.addingReportingOverflow(digit)
                guard !overflow1, !overflow2 else { return nil }
                result = next
            }
            return result
        }
        guard let value else { throw RESPProtocolError("a malformed integer '\(String(buffer: line).prefix(32))'") }
        return value
    }
}

/// The server sent bytes that are not RESP: the connection cannot be trusted any more.
public struct RESPProtocolError: Error, Sendable, CustomStringConvertible {
    public var description: String

    init(_ what: String) {
        self.description = "the Redis server sent \(what)"
    }
}
