import Foundation
import HandoffDaemon
import HandoffClientKit
import HandoffTestSupport
import HandoffWire
import MetricsTestKit
import Testing

/// The daemon in-process over real sockets: what a client receives.
@Suite struct DaemonStreamingTests {
    @Test func streamsMockEventsThenDone() async throws {
        try await withDaemon { daemon, metrics in
            let result = try await exchange(daemon, json: #"{"prompt":"Tell me a story","user_id":42}"#)
            #expect(result.closed)
            let response = try #require(result.response)
            #expect(response.statusLine == "HTTP/1.1 200 OK")
            #expect(response.headers.map(\.name) == ["Content-Type", "Cache-Control", "Connection", "X-Accel-Buffering"])
            #expect(response.header("Content-Type") == "text/event-stream")
            #expect(response.header("Cache-Control") == "no-cache")
            #expect(response.header("Connection") == "close")
            #expect(response.header("X-Accel-Buffering") == "no")
            #expect(
                response.eventBlocks == [
                    #"data: {"content":"Mock message 1 of 3 for user 42 about \"Tell me a story\". "}"#,
                    #"data: {"content":"Mock message 2 of 3 for user 42 about \"Tell me a story\". "}"#,
                    #"data: {"content":"Mock message 3 of 3 for user 42 about \"Tell me a story\". "}"#,
                    "data: [DONE]",
                ]
            )
            #expect(await eventually { daemon.activeStreams == 0 && daemon.heldClientDescriptors == 0 })
            #expect(try metrics.expectCounter("handoffd_handoffs_total").totalValue == 1)
            #expect(metrics.counterTotal(label: "handoffd_streams_total", dimensions: [("outcome", "completed")]) == 1)
        }
    }

    /// Without an interval the mock sends back to back, in as few writes as the client takes,
    /// not one event per timer tick (a millisecond each: 6 000 events would take 6 s).
    @Test func zeroIntervalSendsBackToBack() async throws {
        try await withDaemon({ $0.mock = .init(messages: 6000, interval: .zero) }) { daemon, _ in
            let started = ContinuousClock.now
            let response = try #require(try await exchange(daemon, payload: Array(#"{"user_id":7}"#.utf8), timeoutMilliseconds: 30_000).response)
            let elapsed = ContinuousClock.now - started
            try #require(response.eventBlocks.count == 6001)
            #expect(response.eventBlocks.last == "data: [DONE]")
            #expect(response.eventBlocks[5999].contains("Mock message 6000 of 6000"))
            // One per tick would take 6 s at least; back to back takes well under 1 s alone, and
            // the bound leaves room for the rest of the suite on 2 cores.
            #expect(elapsed < .seconds(5), "6 000 events took \(elapsed)")
        }
    }

    @Test func noHandoffDataServesTheDefaults() async throws {
        try await withDaemon { daemon, _ in
            let response = try #require(try await exchange(daemon, payload: []).response)
            #expect(response.status == 200)
            #expect(response.eventBlocks.first?.contains("for user anonymous") == true)
            #expect(response.eventBlocks.last == "data: [DONE]")
        }
    }

    @Test func echoPatternReturnsLargeDataIntact() async throws {
        let prompt = (0..<100 * 1024 / 16).map { "line \(String($0, radix: 16)) é😀\n" }.joined()
        let data = try JSONSerialization.data(withJSONObject: ["prompt": prompt, "test_pattern": "echo"])
        try await withDaemon { daemon, _ in
            let response = try #require(try await exchange(daemon, payload: Array(data)).response)
            #expect(response.status == 200)
            var echoed = ""
            for block in response.eventBlocks.dropLast() {
                let json = try #require(block.hasPrefix("data: ") ? String(block.dropFirst(6)) : nil)
                let object = try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: String]
                echoed += try #require(object?["content"])
            }
            #expect(echoed == prompt)
            #expect(response.eventBlocks.last == "data: [DONE]")
        }
    }

    @Test func responseHeadersAreFilteredAndOrdered() async throws {
        let json = #"{"response_headers":{"X-Zeta":"z","x-alpha":"  a  ","Content-Type":"text/plain","Bad Name":"x","Set-Cookie":"s=1"}}"#
        try await withDaemon { daemon, _ in
            let response = try #require(try await exchange(daemon, json: json).response)
            #expect(response.status == 200)
            #expect(
                response.headers.map(\.name)
                    == ["Content-Type", "Cache-Control", "Connection", "X-Accel-Buffering", "Set-Cookie", "x-alpha", "X-Zeta"]
            )
            #expect(response.header("Content-Type") == "text/event-stream")
            #expect(response.header("x-alpha") == "a")
        }
    }

    @Test func clientDisconnectEndsTheStream() async throws {
        try await withDaemon({ $0.mock = .init(messages: 1000, interval: .milliseconds(20)) }) { daemon, metrics in
            let (client, server) = try FakeApache.tcpConnection()
            try FakeApache.handOff(to: daemon.socketPath, json: "{}", server: server)
            let first = try await FakeApache.read(until: "Mock message 1 ", from: client.rawValue)
            #expect(first.containsSubsequence(Array("HTTP/1.1 200 OK".utf8)))
            #expect(daemon.activeStreams == 1)
            client.closeIfOpen()
            #expect(await eventually(within: 2000) { daemon.activeStreams == 0 && daemon.heldClientDescriptors == 0 })
            #expect(try metrics.expectCounter("handoffd_client_disconnects_total").totalValue == 1)
        }
    }

    @Test func manyConcurrentStreamsAllComplete() async throws {
        try await withDaemon({ $0.mock = .init(messages: 5, interval: .milliseconds(20)) }) { daemon, _ in
            try await withThrowingTaskGroup(of: ReceivedResponse?.self) { group in
                for index in 0..<100 {
                    group.addTask { try await exchange(daemon, json: #"{"user_id":\#(index)}"#).response }
                }
                var completed = 0
                for try await response in group where response?.status == 200 && response?.eventBlocks.count == 6 {
                    completed += 1
                }
                #expect(completed == 100)
            }
            #expect(await eventually { daemon.heldClientDescriptors == 0 })
        }
    }
}
