import HandoffSSE

/// One stream as the client sees it: reads its response incrementally and records when each
/// milestone arrived. Judges completeness at the end.
final class StreamProbe {
    /// Why a stream did not complete.
    enum Failure: String, CaseIterable, Codable, Sendable {
        case connect = "connect_failed"
        case handoff = "handoff_failed"
        /// The daemon did not acknowledge (Apache would answer 503 itself).
        case notAcknowledged = "not_acknowledged"
        case status = "bad_status"
        case malformedHead = "malformed_head"
        case malformedBody = "malformed_body"
        case errorEvent = "error_event"
        case missingDone = "missing_done"
        case wrongEventCount = "wrong_event_count"
        case readError = "read_error"
        case timeout
    }

    let fd: CInt
    let startedAt: UInt64
    var connectedAt: UInt64 = 0
    var handedOffAt: UInt64 = 0
    var statusAt: UInt64 = 0
    var firstEventAt: UInt64 = 0
    var firstContentAt: UInt64 = 0
    var bytes = 0
    var status = 0
    var contentEvents = 0
    var done = false
    var errorEvent = false

    private var head: [UInt8] = []
    private var headDone = false
    private var parser = SSEParser(maximumLineBytes: 1 << 20, maximumEventBytes: 1 << 20)
    private(set) var malformed = false

    init(fd: CInt, startedAt: UInt64) {
        self.fd = fd
        self.startedAt = startedAt
    }

    /// Feeds bytes read at `now` (nanoseconds, monotonic).
    func received(_ bytes: UnsafeRawBufferPointer, at now: UInt64) {
        self.bytes += bytes.count
        var body = bytes
        if !self.headDone {
            let needle: [UInt8] = [13, 10, 13, 10]
            let before = self.head.count
            self.head.append(contentsOf: bytes)
            guard let end = Self.find(needle, in: self.head) else {
                if self.head.count > 16 * 1024 { self.malformed = true }
                return
            }
            self.headDone = true
            self.statusAt = now
            self.status = Self.statusCode(self.head) ?? 0
            if self.status == 0 { self.malformed = true }
            let consumed = end + 4 - before
            body = UnsafeRawBufferPointer(rebasing: bytes[consumed...])
            self.head = []
        }
        guard self.status == 200, !body.isEmpty, !self.malformed else { return }
        do {
            try self.parser.feed(body) { event in
                if self.firstEventAt == 0 { self.firstEventAt = now }
                if event.event == "error" {
                    self.errorEvent = true
                } else if event.data == "[DONE]" {
                    self.done = true
                } else if event.data.hasPrefix("{\"content\"") {
                    if self.firstContentAt == 0 { self.firstContentAt = now }
                    self.contentEvents += 1
                }
            }
        } catch {
            self.malformed = true
        }
    }

    /// The verdict once the connection ended (or timed out).
    func verdict(expectedEvents: Int?, timedOut: Bool, readError: Bool) -> Failure? {
        if timedOut { return .timeout }
        if readError { return .readError }
        if self.malformed || !self.headDone { return self.headDone ? .malformedBody : .malformedHead }
        if self.status != 200 { return .status }
        if self.errorEvent { return .errorEvent }
        if !self.done { return .missingDone }
        if let expected = expectedEvents, expected != self.contentEvents { return .wrongEventCount }
        return nil
    }

    private static func find(_ needle: [UInt8], in haystack: [UInt8]) -> Int? {
        guard haystack.count >= needle.count else { return nil }
        var index = 0
        while index <= haystack.count - needle.count {
            if haystack[index] == needle[0], haystack[index + 1] == needle[1], haystack[index + 2] == needle[2], haystack[index + 3] == needle[3] {
                return index
            }
            index += 1
        }
        return nil
    }

    private static func statusCode(_ head: [UInt8]) -> Int? {
        // "HTTP/1.x NNN"
        guard head.count >= 12, head.starts(with: Array("HTTP/1.".utf8)) else { return nil }
        let digits = head[9..<12]
        guard digits.allSatisfy({ $0 >= 48 && $0 <= 57 }) else { return nil }
        return digits.reduce(0) { $0 * 10 + Int($1 - 48) }
    }
}
