import HandoffSSE

/// The SSE parser on arbitrary bytes: it never crashes, stays within its bounds, and yields the
/// same events however the stream is cut into reads (the first byte picks the cut).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzSSEParser(_ start: UnsafePointer<UInt8>, _ count: Int) -> CInt {
    guard count > 0 else { return 0 }
    let bytes = Array(UnsafeBufferPointer(start: start + 1, count: count - 1))
    let cut = bytes.isEmpty ? 0 : Int(start[0]) % (bytes.count + 1)
    let whole = parse([bytes[...]])
    let split = parse([bytes[..<cut], bytes[cut...]])
    let single = parse(bytes.map { [$0][...] })
    precondition(whole == split, "a cut at \(cut) changed the events")
    precondition(whole == single, "byte-by-byte reads changed the events")
    return 0
}

/// The events (or the failure) from feeding `pieces` in turn to a parser with small bounds.
private func parse(_ pieces: [ArraySlice<UInt8>]) -> String {
    var parser = SSEParser(maximumLineBytes: 256, maximumEventBytes: 512)
    var events: [String] = []
    do {
        for piece in pieces {
            try parser.feed(piece) { event in
                // The bound is on bytes received; invalid UTF-8 decodes to U+FFFD (3 bytes each).
                precondition(event.data.utf8.count <= 3 * 512, "event over its bound")
                events.append("\(event.event ?? "-")|\(event.id ?? "-")|\(event.data)")
            }
        }
    } catch {
        return "failed: \(events.count) events first"
    }
    _ = parser.finish()
    return events.joined(separator: "\n")
}
