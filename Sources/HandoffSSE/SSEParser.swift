#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An incremental Server-Sent Events parser: WHATWG HTML §9.2.6, "Interpreting an event
/// stream".
///
/// Feed the response body in chunks as they arrive. Chunk boundaries may fall anywhere: between
/// the CR and LF of a CRLF, inside a UTF-8 sequence, inside a field name. Each event is passed
/// to the closure as soon as its terminating blank line has been read:
///
///     var parser = SSEParser()
///     try parser.feed(chunk) { event in print(event.type, event.data) }
///     // …more chunks…
///     let truncated = parser.finish()
///
/// As the spec requires, a leading byte order mark is skipped; LF, CR and CRLF all end a line;
/// multiple `data` lines are joined with LF; a block without `data` dispatches nothing; an
/// `id` containing NUL and a `retry` that is not all digits are ignored; unknown fields are
/// ignored; invalid UTF-8 becomes U+FFFD; an unterminated event at the end of the stream is
/// discarded.
///
/// Memory is bounded: a line longer than `maximumLineBytes`, or an event whose data would
/// exceed `maximumEventBytes`, throws `SSEParserError`. The parser is then failed: every later
/// `feed` throws the same error, until `finish()` resets it.
///
/// The closures must not use the parser they are called from.
public struct SSEParser: Sendable {
    /// The longest line accepted, in bytes, excluding its line break.
    public let maximumLineBytes: Int
    /// The largest event data accepted, in bytes of UTF-8 (as received, before invalid
    /// sequences are replaced), excluding the final LF the spec strips.
    public let maximumEventBytes: Int

    /// The spec's last event ID buffer: the value of the most recent valid `id` field, or
    /// empty. A client sends it as `Last-Event-ID` when it reconnects. Read it before `finish()`.
    public private(set) var lastEventID = ""
    /// The reconnection time in milliseconds set by the most recent valid `retry` field, or
    /// `nil` if there was none. Read it before `finish()`.
    public private(set) var reconnectionTime: Int?

    // The part of a line that ended a previous chunk: only ever a prefix of one line.
    private var partialLine: [UInt8] = []
    private var dataBuffer: [UInt8] = []
    private var eventTypeBuffer: [UInt8] = []
    private var pendingRetry: Int?
    // A field line has been read since the last blank line: an event is under way.
    private var inEvent = false
    // The previous chunk ended with CR, so an LF starting the next one belongs to it.
    private var afterCR = false
    // How many bytes of a leading byte order mark have been matched, or nil once past it.
    private var byteOrderMarkMatched: Int? = 0
    private var failure: SSEParserError?

    /// Creates a parser for one stream, with bounds on the memory it may buffer.
    public init(maximumLineBytes: Int = 1 << 20, maximumEventBytes: Int = 4 << 20) {
        precondition(maximumLineBytes >= 0 && maximumEventBytes >= 0, "SSEParser bounds must not be negative")
        self.maximumLineBytes = maximumLineBytes
        self.maximumEventBytes = maximumEventBytes
    }

    /// Parses the next chunk of the stream, calling `onEvent` for each event it completes.
    ///
    /// Throws `SSEParserError` when a bound is exceeded, or what `onEvent` throws. Either way
    /// the rest of `bytes` is not parsed, so the stream cannot be parsed any further; `finish()`
    /// resets the parser for another one.
    public mutating func feed(_ bytes: UnsafeRawBufferPointer, _ onEvent: (SSEEvent) throws -> Void) throws {
        try self.parse(bytes, reportComments: false, onComment: { _ in }, onEvent: onEvent)
    }

    /// Parses the next chunk of the stream, calling `onComment` for each comment line and
    /// `onEvent` for each event it completes, in stream order.
    ///
    /// A comment is the text after the colon of a line starting with `:`, without one leading
    /// space: `: ping` gives "ping". Comments are not part of events and do not end them.
    /// Throws like `feed(_:_:)`, including what `onComment` throws.
    public mutating func feed(
        _ bytes: UnsafeRawBufferPointer,
        onComment: (String) throws -> Void,
        onEvent: (SSEEvent) throws -> Void
    ) throws {
        try self.parse(bytes, reportComments: true, onComment: onComment, onEvent: onEvent)
    }

    /// Parses the next chunk of the stream, calling `onEvent` for each event it completes.
    public mutating func feed(_ bytes: some Sequence<UInt8>, _ onEvent: (SSEEvent) throws -> Void) throws {
        try self.withContiguousBytes(bytes) { parser, raw in try parser.feed(raw, onEvent) }
    }

    /// Parses the next chunk of the stream, calling `onComment` for each comment line and
    /// `onEvent` for each event it completes, in stream order.
    public mutating func feed(
        _ bytes: some Sequence<UInt8>,
        onComment: (String) throws -> Void,
        onEvent: (SSEEvent) throws -> Void
    ) throws {
        try self.withContiguousBytes(bytes) { parser, raw in
            try parser.feed(raw, onComment: onComment, onEvent: onEvent)
        }
    }

    /// Ends the stream. As the spec requires, an event without its terminating blank line is
    /// discarded, not dispatched.
    ///
    /// Returns `true` if the stream ended mid-event, which suggests it was truncated: after a
    /// partial line (bytes with no line break after them), or after field lines not followed
    /// by a blank line, or after the parser failed. A trailing comment line does not count.
    ///
    /// The parser is then reset, `lastEventID` and `reconnectionTime` included, and can parse
    /// another stream.
    @discardableResult
    public mutating func finish() -> Bool {
        let byteOrderMarkPrefix = (self.byteOrderMarkMatched ?? 0) > 0
        let truncated = self.inEvent || !self.partialLine.isEmpty || byteOrderMarkPrefix || self.failure != nil
        self = SSEParser(maximumLineBytes: self.maximumLineBytes, maximumEventBytes: self.maximumEventBytes)
        return truncated
    }

    private mutating func withContiguousBytes(
        _ bytes: some Sequence<UInt8>,
        _ body: (inout SSEParser, UnsafeRawBufferPointer) throws -> Void
    ) throws {
        let done: Void? = try bytes.withContiguousStorageIfAvailable { try body(&self, UnsafeRawBufferPointer($0)) }
        if done == nil {
            try Array(bytes).withUnsafeBytes { try body(&self, $0) }
        }
    }

    // MARK: - Lines

    /// The index of the first CR or LF in `bytes` at or after `start`, or `bytes.count`: `memchr`
    /// for the LF, then for a CR before it (rare), instead of a compare per byte. `nextLF`
    /// keeps the LF found (or `bytes.count`) between calls, so lines that end in a lone CR do
    /// not each search the rest of the bytes for an LF again.
    private static func lineEnd(in bytes: UnsafeRawBufferPointer, from start: Int, nextLF: inout Int) -> Int {
        guard start < bytes.count, let base = bytes.baseAddress else { return bytes.count }
        if nextLF < start {
            nextLF = memchr(base + start, Int32(UInt8.lf), bytes.count - start).map { $0 - UnsafeMutableRawPointer(mutating: base) } ?? bytes.count
        }
        let cr = memchr(base + start, Int32(UInt8.cr), nextLF - start).map { $0 - UnsafeMutableRawPointer(mutating: base) }
        return cr ?? nextLF
    }

    private mutating func parse(
        _ bytes: UnsafeRawBufferPointer,
        reportComments: Bool,
        onComment: (String) throws -> Void,
        onEvent: (SSEEvent) throws -> Void
    ) throws {
        if let failure = self.failure { throw failure }
        var index = 0
        let end = bytes.count

        if let matched = self.byteOrderMarkMatched {
            var matched = matched
            while index < end, matched < 3, bytes[index] == Self.byteOrderMark(matched) {
                matched += 1
                index += 1
            }
            if matched == 3 {
                self.byteOrderMarkMatched = nil
            } else if index < end {
                // Not a byte order mark after all: the bytes matched so far start the first line.
                self.byteOrderMarkMatched = nil
                for position in 0..<matched { self.partialLine.append(Self.byteOrderMark(position)) }
            } else {
                self.byteOrderMarkMatched = matched
                return
            }
        }

        if self.afterCR, index < end {
            self.afterCR = false
            if bytes[index] == .lf { index += 1 }
        }

        var lineStart = index
        var nextLF = -1
        while true {
            index = Self.lineEnd(in: bytes, from: index, nextLF: &nextLF)
            let lineEnd = index
            guard self.partialLine.count + (lineEnd - lineStart) <= self.maximumLineBytes else {
                throw self.fail(.lineTooLong)
            }
            let line = UnsafeRawBufferPointer(rebasing: bytes[lineStart..<lineEnd])
            if lineEnd == end {
                self.partialLine.append(contentsOf: line)
                return
            }
            if bytes[index] == .cr {
                index += 1
                if index == end {
                    self.afterCR = true
                } else if bytes[index] == .lf {
                    index += 1
                }
            } else {
                index += 1
            }
            lineStart = index

            if self.partialLine.isEmpty {
                try self.processLine(line, reportComments, onComment, onEvent)
            } else {
                // Move the buffer out so the line can be read while `self` is mutated.
                var whole: [UInt8] = []
                swap(&whole, &self.partialLine)
                whole.append(contentsOf: line)
                try whole.withUnsafeBytes { try self.processLine($0, reportComments, onComment, onEvent) }
                Self.clear(&whole)
                self.partialLine = whole
            }
        }
    }

    private mutating func processLine(
        _ line: UnsafeRawBufferPointer,
        _ reportComments: Bool,
        _ onComment: (String) throws -> Void,
        _ onEvent: (SSEEvent) throws -> Void
    ) throws {
        guard let first = line.first else {
            try self.dispatch(onEvent)
            return
        }
        if first == .colon {
            if reportComments {
                try onComment(String(decoding: Self.value(of: line, after: 0), as: UTF8.self))
            }
            return
        }
        self.inEvent = true
        var colon = 0
        while colon < line.count, line[colon] != .colon { colon += 1 }
        let name = UnsafeRawBufferPointer(rebasing: line[0..<colon])
        let value = colon < line.count ? Self.value(of: line, after: colon) : UnsafeRawBufferPointer(start: nil, count: 0)
        try self.processField(name, value)
    }

    /// The bytes after the colon at `colon`, without one leading space.
    private static func value(of line: UnsafeRawBufferPointer, after colon: Int) -> UnsafeRawBufferPointer {
        var start = colon + 1
        if start < line.count, line[start] == .space { start += 1 }
        return UnsafeRawBufferPointer(rebasing: line[start..<line.count])
    }

    // MARK: - Fields and dispatch

    private mutating func processField(_ name: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) throws {
        if Self.name(name, is: "data") {
            guard self.dataBuffer.count + value.count <= self.maximumEventBytes else {
                throw self.fail(.eventTooLarge)
            }
            self.dataBuffer.append(contentsOf: value)
            self.dataBuffer.append(.lf)
        } else if Self.name(name, is: "event") {
            Self.clear(&self.eventTypeBuffer)
            self.eventTypeBuffer.append(contentsOf: value)
        } else if Self.name(name, is: "id") {
            if !value.contains(0) {
                self.lastEventID = String(decoding: value, as: UTF8.self)
            }
        } else if Self.name(name, is: "retry") {
            if let milliseconds = Self.decimal(value) {
                self.reconnectionTime = milliseconds
                self.pendingRetry = milliseconds
            }
        }
    }

    private mutating func dispatch(_ onEvent: (SSEEvent) throws -> Void) throws {
        let retry = self.pendingRetry
        self.pendingRetry = nil
        self.inEvent = false
        guard !self.dataBuffer.isEmpty else {
            Self.clear(&self.eventTypeBuffer)
            return
        }
        // Every data line appended an LF; the spec strips the last one.
        self.dataBuffer.removeLast()
        let event = SSEEvent(
            event: self.eventTypeBuffer.isEmpty ? nil : String(decoding: self.eventTypeBuffer, as: UTF8.self),
            data: String(decoding: self.dataBuffer, as: UTF8.self),
            id: self.lastEventID.isEmpty ? nil : self.lastEventID,
            retry: retry
        )
        Self.clear(&self.dataBuffer)
        Self.clear(&self.eventTypeBuffer)
        try onEvent(event)
    }

    private mutating func fail(_ reason: SSEParserError.Reason) -> SSEParserError {
        let error = SSEParserError(reason: reason)
        self.failure = error
        return error
    }

    // MARK: - Helpers

    private static func name(_ name: UnsafeRawBufferPointer, is expected: StaticString) -> Bool {
        guard name.count == expected.utf8CodeUnitCount else { return false }
        for index in 0..<name.count where name[index] != expected.utf8Start[index] {
            return false
        }
        return true
    }

    /// `value` as a base-ten integer if it is one or more ASCII digits and fits in `Int`.
    private static func decimal(_ value: UnsafeRawBufferPointer) -> Int? {
        guard !value.isEmpty else { return nil }
        var result = 0
        for byte in value {
            guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
            let (shifted, overflow1) = result.multipliedReportingOverflow(by: 10)
            let (sum, overflow2) = shifted.addingReportingOverflow(Int(byte &- UInt8(ascii: "0")))
            guard !overflow1, !overflow2 else { return nil }
            result = sum
        }
        return result
    }

    private static func byteOrderMark(_ index: Int) -> UInt8 {
        switch index {
        case 0: 0xEF
        case 1: 0xBB
        default: 0xBF
        }
    }

    private static func clear(_ buffer: inout [UInt8]) {
        // Keep the capacity of ordinary lines and events, but not what one huge one grew.
        if buffer.capacity > 64 << 10 {
            buffer = []
        } else {
            buffer.removeAll(keepingCapacity: true)
        }
    }
}

extension UInt8 {
    fileprivate static let lf = UInt8(ascii: "\n")
    fileprivate static let cr = UInt8(ascii: "\r")
    fileprivate static let colon = UInt8(ascii: ":")
    fileprivate static let space = UInt8(ascii: " ")
}
