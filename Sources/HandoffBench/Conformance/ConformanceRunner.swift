import Foundation

/// Runs the catalogue against a daemon and reports each scenario.
public struct ConformanceRunner: Sendable {
    /// One scenario's result.
    public struct Result: Sendable {
        public var scenario: String
        public var summary: String
        public var passed: Bool
        public var message: String?
        /// Measurements the scenario reported.
        public var notes: [String] = []
        public var seconds: Double
    }

    /// Output formats.
    public enum Format: String, Sendable, CaseIterable {
        case human, tap, json
    }

    public let context: ConformanceContext

    public init(context: ConformanceContext) {
        self.context = context
    }

    /// Runs every scenario whose name matches `filter` (all when `nil`), in order.
    public func run(filter: String? = nil, report: (Result) -> Void = { _ in }) async -> [Result] {
        var results: [Result] = []
        for scenario in ConformanceCatalogue.all where filter.map({ scenario.name.contains($0) }) ?? true {
            let started = ContinuousClock.now
            var result = Result(scenario: scenario.name, summary: scenario.summary, passed: true, message: nil, seconds: 0)
            let notes = ConformanceNotes()
            do {
                try await ConformanceNotes.$current.withValue(notes) { try await scenario.run(self.context) }
            } catch {
                result.passed = false
                result.message = "\(error)"
            }
            result.notes = notes.lines
            let elapsed = ContinuousClock.now - started
            result.seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
            report(result)
            results.append(result)
        }
        return results
    }

    /// Renders `results` in `format`.
    public static func render(_ results: [Result], format: Format) -> String {
        switch format {
        case .human:
            let lines = results.map { result in
                let mark = result.passed ? "PASS" : "FAIL"
                let detail = (result.message.map { ["\n       \($0)"] } ?? []).joined() + result.notes.map { "\n       \($0)" }.joined()
                return "\(mark)  \(result.scenario.padding(toLength: 20, withPad: " ", startingAt: 0)) \(String(format: "%6.2fs", result.seconds))  \(result.summary)\(detail)"
            }
            let failed = results.filter { !$0.passed }.count
            return lines.joined(separator: "\n") + "\n\n\(results.count - failed)/\(results.count) scenarios passed\n"
        case .tap:
            var lines = ["TAP version 13", "1..\(results.count)"]
            for (index, result) in results.enumerated() {
                lines.append("\(result.passed ? "ok" : "not ok") \(index + 1) - \(result.scenario): \(result.summary)")
                if let message = result.message { lines.append("  # \(message)") }
                for note in result.notes { lines.append("  # \(note)") }
            }
            return lines.joined(separator: "\n") + "\n"
        case .json:
            let objects: [[String: Any]] = results.map {
                ["scenario": $0.scenario, "summary": $0.summary, "passed": $0.passed, "message": $0.message ?? NSNull(), "notes": $0.notes, "seconds": $0.seconds]
            }
            let data = (try? JSONSerialization.data(withJSONObject: ["results": objects, "passed": results.allSatisfy(\.passed)], options: [.prettyPrinted, .sortedKeys])) ?? Data()
            return String(decoding: data, as: UTF8.self) + "\n"
        }
    }
}
