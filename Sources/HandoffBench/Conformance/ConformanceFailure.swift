/// A scenario's expectation that did not hold, with what was seen.
public struct ConformanceFailure: Error, Sendable, CustomStringConvertible {
    public var message: String

    public init(_ message: String) {
        self.message = message
    }

    public var description: String { self.message }
}

/// Measurements a scenario reports alongside pass/fail (e.g. the cancel latency).
final class ConformanceNotes: @unchecked Sendable {
    // @unchecked Sendable: written and read by the one task running a scenario.
    var lines: [String] = []

    @TaskLocal static var current: ConformanceNotes?

    /// Adds `note` to the running scenario's result.
    static func add(_ note: String) {
        self.current?.lines.append(note)
    }
}

/// Fails the scenario with `message` unless `condition` holds.
func expect(_ condition: Bool, _ message: @autoclosure () -> String) throws {
    if !condition { throw ConformanceFailure(message()) }
}
