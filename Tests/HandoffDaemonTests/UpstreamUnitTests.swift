import HandoffMockLLM
import HandoffSSE
import NIOCore
import Testing

@testable import HandoffDaemon
@testable import HandoffRequest

@Suite struct UpstreamEndpointTests {
    @Test func parsesURLs() throws {
        let openai = try UpstreamEndpoint(url: "https://api.openai.com/v1/")
        #expect(openai.tls && openai.host == "api.openai.com" && openai.port == 443 && openai.pathPrefix == "/v1")
        #expect(openai.authority == "api.openai.com")
        let local = try UpstreamEndpoint(url: "http://127.0.0.1:8089")
        #expect(!local.tls && local.port == 8089 && local.pathPrefix == "" && local.authority == "127.0.0.1:8089")
        #expect(local.hostIsIPAddress)
        let v6 = try UpstreamEndpoint(url: "https://[::1]:8443/api")
        #expect(v6.host == "::1" && v6.port == 8443 && v6.authority == "[::1]:8443")
    }

    @Test(arguments: ["ftp://x", "https://", "https://user:pw@host", "https://host:99999", "https://host/v1?key=1", "host:80"])
    func refusesBadURLs(url: String) {
        #expect(throws: UpstreamEndpointError.self) { _ = try UpstreamEndpoint(url: url) }
    }

    @Test func plainHTTPDefaultsToHTTP1AndTLSToH2() throws {
        #expect(UpstreamSettings(endpoint: try UpstreamEndpoint(url: "http://127.0.0.1:1")).httpVersion == .http1)
        #expect(UpstreamSettings(endpoint: try UpstreamEndpoint(url: "https://x")).httpVersion == .http2)
    }
}

@Suite struct OpenAIDialectTests {
    private var dialect: OpenAIDialect { OpenAIDialect(pathPrefix: "/v1", apiKey: "sk-1", defaultModel: "m") }

    @Test func requestCarriesTheKeyAndPatternButNoHandoffSecrets() throws {
        let request = HandoffRequest(prompt: "hi", system: "be brief", userID: "7", requestID: "r1", testPattern: "unicode")
        let upstream = try self.dialect.makeRequest(for: request, allocator: ByteBufferAllocator())
        #expect(upstream.path == "/v1/chat/completions")
        #expect(upstream.headers.contains { $0 == ("authorization", "Bearer sk-1") })
        #expect(upstream.headers.contains { $0 == ("x-test-pattern", "unicode") })
        let body = String(buffer: upstream.body)
        #expect(body.contains(#""stream":true"#))
        #expect(body.contains(#""messages":[{"content":"be brief","role":"system"},{"content":"hi","role":"user"}]"#))
        #expect(body.contains(#""user":"7""#))
    }

    /// The request body's messages, written without building their JSON objects, are the
    /// bytes the general JSON writer makes of ``OpenAIDialect/messages(for:)``: text and parts,
    /// images, escapes and non-ASCII text.
    @Test(arguments: [
        HandoffRequest(prompt: "hi"),
        HandoffRequest(prompt: "say \"hi\"\n\\ \u{1}é😀", system: "be brief\t"),
        HandoffRequest(messages: [
            .init(role: "system", content: .text("rules")),
            .init(role: "user", content: .parts([.text("look"), .imageURL("https://example.com/a.png")])),
            .init(role: "assistant", content: .text("")),
        ], system: "top"),
        { var request = HandoffRequest(prompt: "with a picture"); request.imageURLs = ["data:image/png;base64,AAAA"]; return request }(),
        { var request = HandoffRequest(); request.imageURLs = ["data:image/png;base64,AAAA"]; return request }(),
    ])
    func messagesAreWrittenAsTheirJSON(request: HandoffRequest) throws {
        var direct = ByteBuffer()
        OpenAIDialect.write(try OpenAIDialect.messageList(for: request), into: &direct)
        var general = ByteBuffer()
        general.writeJSON(.array(try OpenAIDialect.messages(for: request)))
        #expect(String(buffer: direct) == String(buffer: general))
    }

    @Test func interpretsChunksDoneAndErrors() {
        var dialect = self.dialect
        #expect(dialect.interpret(SSEEvent(data: #"{"choices":[{"delta":{"role":"assistant","content":""}}]}"#)) == .nothing)
        #expect(dialect.interpret(SSEEvent(data: #"{"choices":[{"delta":{"content":"Hel"}}]}"#)) == .content("Hel"))
        #expect(dialect.interpret(SSEEvent(data: #"{"choices":[{"delta":{},"finish_reason":"length"}],"usage":{"prompt_tokens":3,"completion_tokens":5}}"#)) == .nothing)
        #expect(!dialect.canFinish)
        #expect(dialect.interpret(SSEEvent(data: "[DONE]")) == .done)
        #expect(dialect.canFinish)
        #expect(dialect.summary == StreamSummary(finishReason: "length", promptTokens: 3, completionTokens: 5))
        if case .failure(let error) = dialect.interpret(SSEEvent(data: "{broken")) {
            #expect(error.kind == .malformed)
        } else {
            Issue.record("malformed JSON was accepted")
        }
        if case .failure(let error) = dialect.interpret(SSEEvent(data: #"{"error":{"message":"quota"}}"#)) {
            #expect(error.kind == .upstreamReportedError)
        } else {
            Issue.record("an upstream error object was not reported")
        }
    }
}

@Suite struct TestPatternTests {
    @Test func parsesCombinations() {
        let pattern = TestPattern(header: "unicode, crlf, abort:3, finish:length")
        #expect(pattern.content == .unicode)
        #expect(pattern.crlf)
        #expect(pattern.fault == .abort(after: 3))
        #expect(pattern.finishReason == "length")
        #expect(TestPattern(header: "status:429").fault == .status(429))
        #expect(TestPattern(header: "nonsense").fault == nil)
        #expect(TestPattern(header: nil).name == "default")
    }

    @Test func chunkShapes() {
        #expect(TestPattern(header: "short").chunk(0).count == 1)
        #expect(TestPattern(header: "long").chunk(3).utf8.count == 4096)
        #expect(TestPattern(header: "long").chunk(3) != TestPattern(header: "long").chunk(4))
        #expect(TestPattern(header: "unicode").chunk(3) == "𝄞 ")
    }
}
