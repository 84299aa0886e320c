import Foundation
import HandoffClientKit
import HandoffMockLLM
import HandoffWire

/// One check of a daemon's behaviour, played exactly as Apache would.
public struct ConformanceScenario: Sendable {
    public var name: String
    public var summary: String
    let run: @Sendable (ConformanceContext) async throws -> Void
}

/// Every scenario, in the order they run. The same catalogue applies to any daemon that speaks
/// the handoff protocol and streams `data: {"content":…}` events from an OpenAI-compatible
/// upstream (here handoff-mock-llm).
public enum ConformanceCatalogue {
    public static let all: [ConformanceScenario] = streaming + upstreamFailures + [clientDisconnect] + badHandoffs

    // MARK: Streams that complete

    static let streaming: [ConformanceScenario] = [
        completes("basic", "a plain stream: every chunk in order, then [DONE]", pattern: nil),
        completes("unicode", "emoji, CJK and 4-byte characters arrive intact", pattern: "unicode"),
        completes("short-chunks", "1-character chunks", pattern: "short"),
        completes("long-chunks", "4 KiB chunks", pattern: "long"),
        completes("finish-reason", "a finish reason other than stop still ends with [DONE]", pattern: "finish:length"),
        completes("crlf", "upstream CRLF line endings", pattern: "crlf"),
        completes("multiline-data", "upstream events split over several data: lines", pattern: "multiline"),
        completes("comments", "upstream comment lines are ignored", pattern: "comments"),
        ConformanceScenario(name: "response-head", summary: "status line and headers of a stream") { context in
            let response = try context.exchange(["prompt": "head"])
            try expect(response.statusLine == "HTTP/1.1 200 OK", "status line is '\(response.statusLine)'")
            try expect(response.header("Content-Type") == "text/event-stream", "Content-Type is \(response.header("Content-Type") ?? "missing")")
            try expect(response.header("Cache-Control") == "no-cache", "Cache-Control is \(response.header("Cache-Control") ?? "missing")")
            try expect(response.header("Connection")?.lowercased() == "close", "Connection is \(response.header("Connection") ?? "missing")")
            try expect(response.header("Content-Length") == nil, "a stream must not have Content-Length")
        },
    ]

    static func completes(_ name: String, _ summary: String, pattern: String?) -> ConformanceScenario {
        ConformanceScenario(name: name, summary: summary) { context in
            var handoff: [String: Any] = ["prompt": "conformance \(name)", "user_id": 1]
            if let pattern { handoff["test_pattern"] = pattern }
            let response = try context.exchange(handoff)
            try expect(response.status == 200, "status \(response.status): \(response.body.prefix(200))")
            let transcript = try StreamTranscript(response)
            let expected = (0..<context.chunkCount).map(TestPattern(header: pattern).chunk)
            try expect(transcript.errorReason == nil, "an error event came: \(transcript.errorReason ?? "")")
            try expect(transcript.done, "no [DONE]")
            try expect(transcript.eventsAfterEnd == 0, "\(transcript.eventsAfterEnd) events after [DONE]")
            try expect(
                transcript.contents == expected,
                "contents differ: got \(transcript.contents.count) events \(transcript.contents.prefix(3)), expected \(expected.count) \(expected.prefix(3))"
            )
        }
    }

    // MARK: Upstream failures

    static let upstreamFailures: [ConformanceScenario] = [
        ConformanceScenario(name: "abort", summary: "upstream ends after 3 chunks without [DONE]: 3 contents, an error event, no [DONE]") { context in
            let transcript = try midStreamFailure(context, pattern: "abort:3")
            try expect(transcript.contents.count == 3, "\(transcript.contents.count) contents, expected 3")
        },
        ConformanceScenario(name: "status-500", summary: "upstream 500 before the head: 502 with a JSON body") { context in
            let response = try context.exchange(["prompt": "x", "test_pattern": "status:500"])
            try expectErrorResponse(response, status: 502)
        },
        ConformanceScenario(name: "status-429", summary: "upstream 429: 429 to the client with Retry-After") { context in
            let response = try context.exchange(["prompt": "x", "test_pattern": "status:429"])
            try expectErrorResponse(response, status: 429)
            try expect(response.header("Retry-After") != nil, "no Retry-After")
        },
        ConformanceScenario(name: "stall", summary: "no upstream head within the first-byte timeout: 504") { context in
            let stall = context.firstByteTimeoutMilliseconds + 2000
            let started = ContinuousClock.now
            let response = try context.exchange(["prompt": "x", "test_pattern": "stall:\(stall)"], timeoutMilliseconds: stall + 10_000)
            try expectErrorResponse(response, status: 504)
            let elapsed = ContinuousClock.now - started
            try expect(elapsed < .milliseconds(stall), "504 came after \(elapsed), later than the stall itself")
        },
        ConformanceScenario(name: "reset-before-head", summary: "upstream resets before any chunk: 502") { context in
            let response = try context.exchange(["prompt": "x", "test_pattern": "reset:0"])
            try expect(response.status == 502 || response.status == 200, "status \(response.status)")
            if response.status == 200 {
                // The head may already be out when the reset arrives: then an error event, no [DONE].
                let transcript = try StreamTranscript(response)
                try expect(transcript.errorReason != nil && !transcript.done && transcript.contents.isEmpty, "expected an error event and nothing else")
            } else {
                try expectErrorResponse(response, status: 502)
            }
        },
        ConformanceScenario(name: "reset-after-head", summary: "upstream resets after 3 chunks: 3 contents, an error event, no [DONE]") { context in
            let transcript = try midStreamFailure(context, pattern: "reset:3")
            try expect(transcript.contents.count == 3, "\(transcript.contents.count) contents, expected 3")
        },
        ConformanceScenario(name: "hang-after-head", summary: "upstream silent after 2 chunks: an error event after the idle timeout") { context in
            let transcript = try midStreamFailure(context, pattern: "hang:2", timeoutMilliseconds: context.idleTimeoutMilliseconds + 15_000)
            try expect(transcript.contents.count == 2, "\(transcript.contents.count) contents, expected 2")
        },
        ConformanceScenario(name: "malformed-event", summary: "an event that is not JSON: an error event, no [DONE]") { context in
            let transcript = try midStreamFailure(context, pattern: "malformed")
            try expect(transcript.contents.count == 1, "\(transcript.contents.count) contents before the bad event, expected 1")
        },
    ]

    static func midStreamFailure(_ context: ConformanceContext, pattern: String, timeoutMilliseconds: Int = 15_000) throws -> StreamTranscript {
        let response = try context.exchange(["prompt": "x", "test_pattern": pattern], timeoutMilliseconds: timeoutMilliseconds)
        try expect(response.status == 200, "status \(response.status)")
        let transcript = try StreamTranscript(response)
        try expect(!transcript.done, "[DONE] after a failed upstream")
        try expect(transcript.errorReason != nil, "no error event")
        try expect(transcript.eventsAfterEnd == 0, "\(transcript.eventsAfterEnd) events after the error event")
        return transcript
    }

    static func expectErrorResponse(_ response: ReceivedResponse, status: Int) throws {
        try expect(response.status == status, "status \(response.status), expected \(status)")
        try expect(response.header("Content-Type")?.hasPrefix("application/json") == true, "Content-Type is \(response.header("Content-Type") ?? "missing")")
        try expect(response.header("Content-Length") == String(response.body.utf8.count), "Content-Length does not match the body")
        try expect((try? JSONSerialization.jsonObject(with: Data(response.body.utf8))) != nil, "the body is not JSON")
    }

    // MARK: Client disconnect

    static let clientDisconnect = ConformanceScenario(
        name: "client-disconnect",
        summary: "the client leaves mid-stream: the upstream stream is cancelled within 100 ms"
    ) { context in
        let pattern = "hang:1,comments"
        _ = try await context.upstream.request("/stats/reset", method: .POST)
        let (client, server) = try FakeApache.tcpConnection()
        try FakeApache.handOff(to: context.socketPath, payload: Array(#"{"prompt":"x","backend":"\#(context.backend)","test_pattern":"\#(pattern)"}"#.utf8), descriptors: [server.rawValue])
        server.closeIfOpen()
        let first = FakeApache.readUntil("\"content\"", from: client.rawValue, timeoutMilliseconds: 10_000)
        try expect(first.containsSubsequence(Array("\"content\"".utf8)), "no content event arrived")
        client.closeIfOpen()
        let closedAt = ContinuousClock.now
        var cancelledAfter: Duration?
        while ContinuousClock.now - closedAt < .seconds(3) {
            let stats = try await context.upstream.stats()
            let byPattern = stats["by_pattern"] as? [String: [String: Any]]
            if (byPattern?[pattern]?["cancelled"] as? Int ?? 0) >= 1 {
                cancelledAfter = ContinuousClock.now - closedAt
                break
            }
            try await Task.sleep(for: .milliseconds(5))
        }
        guard let cancelledAfter else { throw ConformanceFailure("the upstream stream was not cancelled within 3 s") }
        ConformanceNotes.add("upstream cancelled \(cancelledAfter.formatted(.units(allowed: [.milliseconds], fractionalPart: .show(length: 1)))) after the client closed")
        try expect(cancelledAfter <= .milliseconds(100), "cancelled after \(cancelledAfter), more than 100 ms")
    }

    // MARK: Bad handoffs

    static let badHandoffs: [ConformanceScenario] = [
        ConformanceScenario(name: "invalid-json", summary: "handoff data that is not JSON: 400") { context in
            try expectErrorResponse(try context.exchange(payload: Array("{not json".utf8)), status: 400)
        },
        ConformanceScenario(name: "wrong-type", summary: "a known field with the wrong type: 400") { context in
            try expectErrorResponse(try context.exchange(["prompt": 5]), status: 400)
        },
        ConformanceScenario(name: "oversized", summary: "200 KiB of handoff data: 413") { context in
            let payload = Array(#"{"prompt":""#.utf8) + Array(repeating: UInt8(ascii: "x"), count: 200 * 1024) + Array(#""}"#.utf8)
            try expectErrorResponse(try context.exchange(payload: payload), status: 413)
        },
        ConformanceScenario(name: "no-descriptor", summary: "a record without a descriptor is dropped and the daemon keeps serving") { context in
            try FakeApache.handOff(to: context.socketPath, payload: Array("{}".utf8), descriptors: [])
            let response = try context.exchange(["prompt": "still there"])
            try expect(response.status == 200, "status \(response.status) after a record without a descriptor")
        },
    ]
}
