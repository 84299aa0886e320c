import Foundation
import NIOConcurrencyHelpers

/// Counters a test reads from `GET /stats` to prove what happened upstream, for example that a
/// client disconnect cancelled the stream.
public final class MockStats: Sendable {
    /// One set of counters.
    public struct Counts: Sendable, Codable, Equatable {
        public var requests = 0
        public var active = 0
        public var completed = 0
        public var cancelled = 0
        public var failed = 0
    }

    private struct State {
        var total = Counts()
        var byPattern: [String: Counts] = [:]
        var connections = 0
        var http2Connections = 0
        var tokens: Set<String> = []
        var exchanges = 0
        var goAwaysReceived = 0
    }

    private let state = NIOLockedValueBox(State())

    public init() {}

    /// Whether `token` is seen for the first time (for the `…-once` patterns).
    func firstSighting(of token: String) -> Bool {
        self.state.withLockedValue { $0.tokens.insert(token).inserted }
    }

    func requestStarted(pattern: String) {
        self.update(pattern) {
            $0.requests += 1
            $0.active += 1
        }
    }

    /// A stream ended: `completed` normally, `cancelled` by the client, `failed` by our fault injection.
    func streamEnded(pattern: String, outcome: Outcome) {
        self.update(pattern) {
            $0.active -= 1
            switch outcome {
            case .completed: $0.completed += 1
            case .cancelled: $0.cancelled += 1
            case .failed: $0.failed += 1
            }
        }
    }

    /// Requests whose exchange is still in memory: 0 once every connection has finished with
    /// its requests (a leak shows here).
    public var exchangesInMemory: Int {
        self.state.withLockedValue { $0.exchanges }
    }

    func exchangeCreated() {
        self.state.withLockedValue { $0.exchanges += 1 }
    }

    func exchangeFreed() {
        self.state.withLockedValue { $0.exchanges -= 1 }
    }

    func connectionOpened(http2: Bool) {
        self.state.withLockedValue {
            $0.connections += 1
            if http2 { $0.http2Connections += 1 }
        }
    }

    enum Outcome {
        case completed, cancelled, failed
    }

    private func update(_ pattern: String, _ body: (inout Counts) -> Void) {
        self.state.withLockedValue { state in
            body(&state.total)
            body(&state.byPattern[pattern, default: Counts()])
        }
    }

    /// Zeroes every counter except `active`, which tracks streams still running.
    public func reset() {
        self.state.withLockedValue { state in
            state.total = Counts(active: state.total.active)
            state.byPattern = state.byPattern.filter { $0.value.active > 0 }.mapValues { Counts(active: $0.active) }
            state.connections = 0
            state.http2Connections = 0
        }
    }

    /// The counters as JSON: totals, `by_pattern`, and connections accepted.
    public func json() -> [UInt8] {
        let snapshot = self.state.withLockedValue { $0 }
        struct Body: Encodable {
            var requests, active, completed, cancelled, failed, connections, http2_connections: Int
            var by_pattern: [String: Counts]
        }
        let body = Body(
            requests: snapshot.total.requests,
            active: snapshot.total.active,
            completed: snapshot.total.completed,
            cancelled: snapshot.total.cancelled,
            failed: snapshot.total.failed,
            connections: snapshot.connections,
            http2_connections: snapshot.http2Connections,
            by_pattern: snapshot.byPattern
        )
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return Array((try? encoder.encode(body)) ?? Data("{}".utf8)) + [0x0A]
    }

    /// GOAWAY frames clients sent before closing their HTTP/2 connections.
    public var goAwaysReceived: Int { self.state.withLockedValue { $0.goAwaysReceived } }

    func goAwayReceived() {
        self.state.withLockedValue { $0.goAwaysReceived += 1 }
    }

    /// HTTP/2 connections accepted so far.
    public var http2ConnectionsAccepted: Int { self.state.withLockedValue { $0.http2Connections } }

    /// A snapshot of the totals.
    public var totals: Counts { self.state.withLockedValue { $0.total } }
}
