import Foundation
import HandoffClientKit
import HandoffDaemon
import HandoffMockLLM
import HandoffTestSupport
import HandoffWire
import Logging
import NIOCore
import NIOPosix
import Testing

/// The upstream backends in-process: handoffd → HTTP/2 (TLS or h2c) or HTTP/1.1 → the mock LLM.
@Suite struct UpstreamBackendTests {
    typealias Upstream = MockUpstream

    private func withMock<R>(
        _ upstream: Upstream,
        chunks: Int = 4,
        _ body: (MockLLMServer, UpstreamSettings) async throws -> R
    ) async throws -> R {
        try await withMockLLM(upstream, chunks: chunks, body)
    }

    private func contents(_ response: ReceivedResponse) -> [String] {
        (response.events ?? []).compactMap { event in
            (try? JSONSerialization.jsonObject(with: Data(event.data.utf8)) as? [String: String])?["content"]
        }
    }

    /// The mock's per-request objects are freed once served, on either protocol (an HTTP/1.1
    /// connection kept its last request's alive through a reference cycle).
    @Test(arguments: [Upstream.h2c, .http1])
    func theMockFreesWhatItServed(_ upstream: Upstream) async throws {
        try await self.withMock(upstream) { mock, settings in
            try await withDaemon({ $0.openAI = OpenAIBackend(upstream: settings) }) { daemon, _ in
                for _ in 0..<5 {
                    let response = try #require(try await exchange(daemon, json: #"{"backend":"openai","prompt":"hi"}"#).response)
                    #expect(response.events?.last?.data == "[DONE]")
                }
                #expect(await eventually { mock.stats.exchangesInMemory == 0 }, "\(mock.stats.exchangesInMemory) still in memory")
            }
        }
    }

    @Test(arguments: [Upstream.tls, .h2c, .http1])
    func streamsFromTheUpstream(_ upstream: Upstream) async throws {
        try await self.withMock(upstream) { mock, settings in
            try await withDaemon({ $0.openAI = OpenAIBackend(upstream: settings, apiKey: "k") }) { daemon, _ in
                let response = try #require(try await exchange(daemon, json: #"{"backend":"openai","prompt":"hi","test_pattern":"unicode"}"#).response)
                #expect(response.status == 200)
                #expect(self.contents(response) == ["Grüße ", "世界 ", "😀 ", "𝄞 "])
                #expect(response.events?.last?.data == "[DONE]")
                #expect(mock.stats.totals.completed == 1)
            }
        }
    }

    /// The events and bytes counters move while a long stream runs (every 256 events), not
    /// only when it ends, also when the events of one upstream read leave in one write.
    @Test func sentCountersMoveDuringALongStream() async throws {
        try await withMockLLM(.h2c, chunks: 3000, delay: .milliseconds(1)) { _, settings in
            try await withDaemon({ $0.openAI = OpenAIBackend(upstream: settings) }) { daemon, metrics in
                let (client, server) = try FakeApache.tcpConnection()
                defer { client.closeIfOpen() }
                try FakeApache.handOff(to: daemon.socketPath, json: #"{"backend":"openai","prompt":"x"}"#, server: server)
                _ = try await FakeApache.read(until: "Mock token 600 ", from: client.rawValue)
                #expect(daemon.activeStreams == 1)
                #expect(try metrics.expectCounter("handoffd_events_sent_total").totalValue >= 256)
                #expect(try metrics.expectCounter("handoffd_bytes_sent_total").totalValue > 256 * 20)
            }
        }
    }

    /// A connection close to its server's stream limit already has a successor: streams that
    /// arrive next do not wait for a TCP and TLS handshake. (10 streams per connection here:
    /// the second connection opens at the 9th stream, not the 11th.)
    @Test func aSpareConnectionOpensBeforeTheFirstIsFull() async throws {
        try await withMockLLM(.tls, chunks: 400, delay: .milliseconds(10), maxConcurrentStreams: 10) { mock, settings in
            try await withDaemon({
                $0.openAI = OpenAIBackend(upstream: settings)
                $0.eventLoops = 1
            }) { daemon, _ in
                var clients: [OwnedDescriptor] = []
                defer { for client in clients { client.closeIfOpen() } }
                func startStream() async throws {
                    let (client, server) = try FakeApache.tcpConnection()
                    clients.append(client)
                    try FakeApache.handOff(to: daemon.socketPath, json: #"{"backend":"openai","prompt":"x"}"#, server: server)
                    _ = try await FakeApache.read(until: "Mock token 1 ", from: client.rawValue)
                }
                for _ in 0..<8 { try await startStream() }
                #expect(daemon.upstreamConnections == 1, "8 of 10 streams leave room for 2 more")
                try await startStream()
                #expect(await eventually { mock.stats.http2ConnectionsAccepted == 2 }, "no spare connection at 9 of 10 streams")
                for _ in 0..<3 { try await startStream() }
                #expect(daemon.upstreamConnections == 2 && mock.stats.http2ConnectionsAccepted == 2)
            }
        }
    }

    @Test func attachmentsReachTheUpstreamAndAreDeleted() async throws {
        try await withTemporaryDirectory { dataDirectory in
            try "remember this".write(toFile: dataDirectory + "/notes.txt", atomically: true, encoding: .utf8)
            try await self.withMock(.h2c) { _, settings in
                try await withDaemon({
                    $0.openAI = OpenAIBackend(upstream: settings)
                    $0.attachments.dataDirectory = dataDirectory
                }) { daemon, _ in
                    let json = #"{"backend":"openai","prompt":"summarise","test_pattern":"echo","attachments":[{"path":"notes.txt"}]}"#
                    let response = try #require(try await exchange(daemon, json: json).response)
                    #expect(response.status == 200)
                    let echoed = try #require(self.contents(response).first)
                    #expect(echoed.contains(#"{"text":"Attachment notes.txt:\nremember this","type":"text"}"#))
                    #expect(echoed.contains(#"{"text":"summarise","type":"text"}"#))
                    #expect(!FileManager.default.fileExists(atPath: dataDirectory + "/notes.txt"))
                    // A second handoff naming the same file: it is gone now.
                    let again = try #require(try await exchange(daemon, json: json).response)
                    #expect(again.status == 400)
                }
            }
        }
    }

    @Test func langGraphEventsPassThroughUnchanged() async throws {
        try await self.withMock(.h2c, chunks: 2) { _, settings in
            var profileSettings = settings
            profileSettings.endpoint = try UpstreamEndpoint(url: "http://127.0.0.1:\(settings.endpoint.port)")
            let profile = LangGraphProfile(upstream: profileSettings, apiKey: "lg", assistantID: "agent")
            try await withDaemon({ $0.langGraph = LangGraphBackend(profiles: ["support": profile]) }) { daemon, _ in
                let response = try #require(try await exchange(daemon, json: #"{"backend":"langgraph","prompt":"hi","thread_id":"t-1"}"#).response)
                #expect(response.status == 200)
                let events = try #require(response.events)
                #expect(events.map { $0.event ?? "message" } == ["metadata", "messages/partial", "messages/partial", "values", "message"])
                #expect(events[2].data.contains("Mock token 1 Mock token 2 "))
                #expect(events.last?.data == "[DONE]")
                // A URL in the handoff is refused: keys go only where the configuration says.
                let refused = try #require(try await exchange(daemon, json: #"{"backend":"langgraph","prompt":"x","url":"https://evil.example"}"#).response)
                #expect(refused.status == 400)
            }
        }
    }

    @Test func unreachableUpstreamIs502() async throws {
        let endpoint = try UpstreamEndpoint(url: "http://127.0.0.1:1/v1")
        try await withDaemon({ $0.openAI = OpenAIBackend(upstream: UpstreamSettings(endpoint: endpoint, httpVersion: .http2)) }) { daemon, _ in
            let response = try #require(try await exchange(daemon, json: #"{"backend":"openai","prompt":"x"}"#).response)
            #expect(response.status == 502)
        }
    }

    /// An upstream whose TLS offers only HTTP/1.1 to a daemon set for HTTP/2: the stream is
    /// answered 502 at once (not after the 5 s connect timeout), and the next one too. (The
    /// bound leaves room for a TLS handshake in a debug build on a busy machine: 2.2 s seen.)
    @Test func anUpstreamWithoutH2InALPNIs502() async throws {
        try await withMockLLM(.tls, applicationProtocols: ["http/1.1"]) { mock, settings in
            try await withDaemon({ $0.openAI = OpenAIBackend(upstream: settings) }) { daemon, _ in
                for _ in 0..<2 {
                    let started = ContinuousClock.now
                    let response = try #require(try await exchange(daemon, json: #"{"backend":"openai","prompt":"x"}"#).response)
                    #expect(response.status == 502)
                    #expect(response.body.contains(#""error":"upstream_connect_failed""#), "\(response.body)")
                    #expect(ContinuousClock.now - started < .milliseconds(3500))
                }
                #expect(mock.stats.totals.completed == 0)
            }
        }
    }

    @Test func upstreamSilentBeforeItsHeadIs504() async throws {
        try await self.withMock(.h2c) { _, settings in
            try await withDaemon({
                $0.openAI = OpenAIBackend(upstream: settings)
                $0.timeouts.upstreamFirstByte = .milliseconds(300)
            }) { daemon, _ in
                let response = try #require(try await exchange(daemon, json: #"{"backend":"openai","prompt":"x","test_pattern":"stall:3000"}"#).response)
                #expect(response.status == 504)
            }
        }
    }

    /// An upstream 429 keeps its `Retry-After`, in seconds or as an HTTP-date.
    @Test(arguments: [("status:429", "7"), ("status:429,retry-date", TestPattern.retryAfterDate)])
    func rateLimitPassesRetryAfterOn(pattern: String, retryAfter: String) async throws {
        try await self.withMock(.h2c) { _, settings in
            try await withDaemon({ $0.openAI = OpenAIBackend(upstream: settings) }) { daemon, _ in
                let response = try #require(try await exchange(daemon, json: #"{"backend":"openai","prompt":"x","test_pattern":"\#(pattern)"}"#).response)
                #expect(response.status == 429)
                #expect(response.header("Retry-After") == retryAfter)
            }
        }
    }

    /// A stream buffers at most one event of the configured size: a bigger upstream event ends
    /// the stream with an error event instead of growing without bound.
    @Test func anUpstreamEventOverTheCapEndsTheStream() async throws {
        try await self.withMock(.h2c) { _, settings in
            try await withDaemon({
                $0.openAI = OpenAIBackend(upstream: settings)
                $0.limits.maxUpstreamEventBytes = 2048
            }) { daemon, _ in
                let response = try #require(try await exchange(daemon, json: #"{"backend":"openai","prompt":"x","test_pattern":"long"}"#).response)
                #expect(response.status == 200)
                #expect(response.events?.last?.event == "error")
                #expect(response.events?.last?.data.contains("upstream_malformed") == true)
            }
        }
    }

    @Test func openAIWithoutConfigurationIs501() async throws {
        try await withDaemon { daemon, _ in
            let response = try #require(try await exchange(daemon, json: #"{"backend":"openai","prompt":"x"}"#).response)
            #expect(response.status == 501)
        }
    }
}
