import Foundation
import HandoffClientKit
import HandoffSSE
import HandoffWire

/// What scenarios use: the daemon's socket, the upstream's stats, and the parameters the daemon
/// under test was started with.
public struct ConformanceContext: Sendable {
    /// The daemon's handoff socket.
    public var socketPath: String
    /// The mock upstream's stats endpoint.
    public var upstream: UpstreamStatsClient
    /// Content chunks the mock sends per stream (from its `/health`).
    public var chunkCount: Int
    /// The backend name to put in handoffs (`openai`).
    public var backend: String
    /// The daemon's upstream first-byte timeout, in milliseconds (for the stall scenario).
    public var firstByteTimeoutMilliseconds: Int
    /// The daemon's upstream idle timeout, in milliseconds (for the hang scenario).
    public var idleTimeoutMilliseconds: Int

    public init(
        socketPath: String,
        upstream: UpstreamStatsClient,
        chunkCount: Int,
        backend: String,
        firstByteTimeoutMilliseconds: Int,
        idleTimeoutMilliseconds: Int
    ) {
        self.socketPath = socketPath
        self.upstream = upstream
        self.chunkCount = chunkCount
        self.backend = backend
        self.firstByteTimeoutMilliseconds = firstByteTimeoutMilliseconds
        self.idleTimeoutMilliseconds = idleTimeoutMilliseconds
    }

    /// Hands off `json` with a fresh loopback TCP client and returns what the client received.
    func exchange(_ json: [String: Any], timeoutMilliseconds: Int = 15_000) throws -> ReceivedResponse {
        var object = json
        if object["backend"] == nil { object["backend"] = self.backend }
        let payload = try JSONSerialization.data(withJSONObject: object)
        return try self.exchange(payload: Array(payload), timeoutMilliseconds: timeoutMilliseconds)
    }

    func exchange(payload: [UInt8], timeoutMilliseconds: Int = 15_000) throws -> ReceivedResponse {
        let (client, server) = try FakeApache.tcpConnection()
        defer { client.closeIfOpen() }
        try FakeApache.handOff(to: self.socketPath, payload: payload, descriptors: [server.rawValue])
        server.closeIfOpen()
        let (bytes, closed) = FakeApache.readUntilClosed(client.rawValue, timeoutMilliseconds: timeoutMilliseconds)
        try expect(closed, "the connection was not closed within \(timeoutMilliseconds) ms (received \(bytes.count) bytes)")
        guard let response = ReceivedResponse(bytes) else {
            throw ConformanceFailure("no complete HTTP/1.1 response head: \(String(decoding: bytes.prefix(200), as: UTF8.self).debugDescription)")
        }
        return response
    }
}

/// A streamed response split into what conformance checks.
struct StreamTranscript {
    /// `content` of each `data: {"content":…}` event, in order.
    var contents: [String] = []
    /// Whether `data: [DONE]` came.
    var done = false
    /// The `reason` of an `event: error`, when one came.
    var errorReason: String?
    /// Events after the terminal one (`[DONE]` or an error): must be none.
    var eventsAfterEnd = 0

    init(_ response: ReceivedResponse) throws {
        guard let events = response.events else { throw ConformanceFailure("the body is not a valid event stream") }
        for event in events {
            if self.done || self.errorReason != nil {
                self.eventsAfterEnd += 1
                continue
            }
            if event.event == "error" {
                let object = try? JSONSerialization.jsonObject(with: Data(event.data.utf8)) as? [String: Any]
                self.errorReason = object?["reason"] as? String ?? "(no reason)"
                continue
            }
            if event.data == "[DONE]" {
                self.done = true
                continue
            }
            guard let object = try? JSONSerialization.jsonObject(with: Data(event.data.utf8)) as? [String: Any],
                let content = object["content"] as? String
            else {
                throw ConformanceFailure("an event is not {\"content\":…}: \(event.data.prefix(120))")
            }
            self.contents.append(content)
        }
    }
}
