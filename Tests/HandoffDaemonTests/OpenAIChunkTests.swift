import Foundation
import HandoffTestSupport
import Testing

@testable import HandoffDaemon

/// The reader for ordinary chunks (`OpenAIChunk.scan`) against Foundation's `JSONDecoder`
/// (`decodeGeneral`): on every chunk the two agree, or the reader declines and the general
/// decoder decides.
@Suite struct OpenAIChunkTests {
    private func scan(_ text: String) -> OpenAIChunk? {
        var text = text
        return text.withUTF8 { OpenAIChunk.scan(UnsafeRawBufferPointer($0)) }
    }

    private func general(_ text: String) -> OpenAIChunk? {
        var text = text
        return text.withUTF8 { OpenAIChunk.decodeGeneral(UnsafeRawBufferPointer($0)) }
    }

    /// Chunks as providers send them (OpenAI, Azure, vLLM, Ollama, Groq, llama.cpp, our mock).
    static let providerChunks = [
        #"{"id":"chatcmpl-AB","object":"chat.completion.chunk","created":1718000000,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_1","choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}],"usage":null}"#,
        #"{"id":"chatcmpl-AB","object":"chat.completion.chunk","created":1718000000,"model":"gpt-4o","choices":[{"index":0,"delta":{"content":"Hello"},"logprobs":null,"finish_reason":null}],"usage":null}"#,
        #"{"id":"chatcmpl-AB","object":"chat.completion.chunk","created":1718000000,"model":"gpt-4o","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}],"usage":null}"#,
        #"{"id":"chatcmpl-AB","object":"chat.completion.chunk","created":1718000000,"model":"gpt-4o","choices":[],"usage":{"prompt_tokens":19,"completion_tokens":10,"total_tokens":29,"prompt_tokens_details":{"cached_tokens":0},"completion_tokens_details":{"reasoning_tokens":0}}}"#,
        #"{"id":"chatcmpl-AB","object":"chat.completion.chunk","created":1718000000,"model":"gpt-4o","choices":[{"index":0,"delta":{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"get_weather","arguments":""}}]},"finish_reason":null}]}"#,
        #"{"id":"chatcmpl-AB","object":"chat.completion.chunk","created":1718000000,"model":"gpt-4o","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"location\":\"Paris\"}"}}]},"finish_reason":"tool_calls"}]}"#,
        #"{"choices":[],"created":0,"id":"","model":"","object":"","prompt_filter_results":[{"prompt_index":0,"content_filter_results":{"hate":{"filtered":false,"severity":"safe"}}}]}"#,
        #"{"choices":[{"content_filter_results":{"hate":{"filtered":false,"severity":"safe"}},"delta":{"content":" world"},"finish_reason":null,"index":0,"logprobs":null}],"created":1718000000,"id":"chatcmpl-AZ","model":"gpt-4o","object":"chat.completion.chunk"}"#,
        #"{"id":"cmpl-vllm","object":"chat.completion.chunk","created":1718000000,"model":"meta-llama/Llama-3-8B","choices":[{"index":0,"delta":{"content":"\u4f60\u597d"},"logprobs":null,"finish_reason":null,"stop_reason":null}]}"#,
        #"{"id":"chatcmpl-123","object":"chat.completion.chunk","created":1718000000,"model":"llama3","system_fingerprint":"fp_ollama","choices":[{"index":0,"delta":{"role":"assistant","content":"Hi! 😀\n\n"},"finish_reason":null}]}"#,
        #"{"id":"chatcmpl-g","object":"chat.completion.chunk","created":1718000000,"model":"llama3-8b-8192","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}],"x_groq":{"id":"req_1","usage":{"queue_time":0.01,"prompt_tokens":12,"prompt_time":0.002,"completion_tokens":20,"completion_time":0.016,"total_tokens":32,"total_time":0.018}}}"#,
        #"{"choices":[{"finish_reason":null,"index":0,"delta":{"content":" tab\tand \"quotes\" and \\ backslash"}}],"created":1718000000,"id":"chatcmpl-cpp","model":"gguf","object":"chat.completion.chunk","timings":{"predicted_ms":12.5}}"#,
        #"{"id":"chatcmpl-m","object":"chat.completion.chunk","created":0,"model":"mock","choices":[{"index":0,"delta":{"role":"assistant","content":"Mock message 1 of 18. "},"finish_reason":null}]}"#,
        #"{"id":"chatcmpl-m","object":"chat.completion.chunk","created":0,"model":"mock","choices":[{"index":0,"delta":{},"finish_reason":"length"}],"usage":{"prompt_tokens":10,"completion_tokens":18,"total_tokens":28}}"#,
        #"{"error":{"message":"The server had an error while processing your request.","type":"server_error","param":null,"code":null}}"#,
        #"{"error":{"message":"Rate limit reached","type":"requests","code":"rate_limit_exceeded"}}"#,
        "{\n  \"choices\" : [ { \"delta\" : { \"content\" : \"spaced\" } } ]\n}",
    ]

    @Test(arguments: providerChunks)
    func providerChunksAreReadWithoutTheGeneralDecoder(chunk: String) throws {
        let scanned = try #require(self.scan(chunk), "declined an ordinary chunk")
        #expect(scanned == self.general(chunk))
    }

    @Test func theFieldsReadAreTheOnesTheDialectUses() throws {
        let content = try #require(self.scan(Self.providerChunks[1]))
        #expect(content.firstChoice == .init(content: "Hello", finishReason: nil))
        let usage = try #require(self.scan(Self.providerChunks[3]))
        #expect(usage.firstChoice == nil)
        #expect(usage.usage == .init(promptTokens: 19, completionTokens: 10))
        let error = try #require(self.scan(Self.providerChunks[14]))
        #expect(error.error?.type == "server_error")
        #expect(self.scan(Self.providerChunks[9])?.firstChoice?.content == "Hi! 😀\n\n")
    }

    /// Chunks the reader leaves to the general decoder, which then decides.
    @Test(arguments: [
        #"{"choices":[{"delta":{"content":"a","content":"b"}}]}"#,  // a repeated field
        #"{"usage":{"prompt_tokens":12.0}}"#,  // an integer written as a decimal
        #"{"choices":[{"delta":{"content":"\ud83d"}}]}"#,  // a lone surrogate
        #"{"choices":[{"delta":{"content":5}}]}"#,  // a field of another type
        #"{"choices":[null]}"#,
        #"[1,2]"#,
        #"{"choices":[{"delta":{"content":"a"}}]} trailing"#,
        #"{"choices":[{"delta":{"content":"cut"#,
    ])
    func unusualChunksGoToTheGeneralDecoder(chunk: String) {
        #expect(self.scan(chunk) == nil)
        #expect(OpenAIChunk.decode(chunk) == self.general(chunk))
    }

    /// Randomly varied chunks: fields swapped for other types, nulls, extra members, escapes,
    /// repeated keys, cut-off text. Wherever the reader answers, it answers what JSONDecoder does.
    @Test func randomChunksAgreeWithJSONDecoder() {
        var random = ChunkGenerator(seed: 0xC0FFEE)
        var scanned = 0
        var disagreements: [String] = []
        for _ in 0..<5_000 {
            let chunk = random.chunk()
            let general = self.general(chunk)
            guard let fast = self.scan(chunk) else { continue }
            scanned += 1
            if fast != general { disagreements.append(chunk) }
        }
        #expect(disagreements.isEmpty, "disagree: \(disagreements.prefix(3))")
        #expect(scanned > 1_000, "the reader took only \(scanned) of 5 000 chunks")
    }
}

/// Chunk-shaped JSON with random variations, from a fixed seed.
private struct ChunkGenerator {
    private var random: SplitMix64

    init(seed: UInt64) { self.random = SplitMix64(seed: seed) }

    private mutating func next(_ bound: Int) -> Int { self.random.next(bound) }

    private mutating func string() -> String {
        let pieces = ["a", "Hello", " ", "\\n", "\\\"", "\\\\", "\\/", "\\t", "\\u00e9", "\\ud83d\\ude00", "😀", "中", "\\u0000", "\\ud83d", "é"]
        return "\"" + (0..<self.next(4)).map { _ in pieces[self.next(pieces.count)] }.joined() + "\""
    }

    private mutating func scalar() -> String {
        switch self.next(8) {
        case 0: "null"
        case 1: "true"
        case 2: String(self.next(1000))
        case 3: "12.0"
        case 4: "-3"
        case 5: "1e2"
        case 6: "[]"
        default: self.string()
        }
    }

    /// A value for a field that wants `kind`: usually right, sometimes null or another type.
    private mutating func field(_ right: String) -> String {
        switch self.next(10) {
        case 0: "null"
        case 1: self.scalar()
        default: right
        }
    }

    private mutating func object(_ members: [(String, String)]) -> String {
        var members = members.filter { _ in self.next(6) != 0 }
        if self.next(5) == 0 { members.append(("extra", self.scalar())) }
        if self.next(10) == 0, !members.isEmpty { members.append((members[self.next(members.count)].0, self.scalar())) }  // repeated key
        if self.next(4) == 0 { members.shuffle(using: &self.random) }
        return "{" + members.map { "\"\($0.0)\":\($0.1)" }.joined(separator: ",") + "}"
    }

    mutating func chunk() -> String {
        let delta = self.object([("role", "\"assistant\""), ("content", self.field(self.string()))])
        let choice = self.object([("index", "0"), ("delta", self.field(delta)), ("finish_reason", self.field(self.next(2) == 0 ? "null" : "\"stop\""))])
        let choices = "[" + (0..<self.next(3)).map { _ in self.field(choice) }.joined(separator: ",") + "]"
        let usage = self.object([("prompt_tokens", self.field(String(self.next(100)))), ("completion_tokens", self.field(String(self.next(100))))])
        let error = self.object([("message", self.field(self.string())), ("type", self.field(self.string()))])
        var text = self.object([("id", "\"c\""), ("choices", self.field(choices)), ("usage", self.field(usage)), ("error", self.next(8) == 0 ? self.field(error) : "null")])
        if self.next(15) == 0 { text = String(text.dropLast(self.next(text.count))) }  // cut off
        return text
    }
}
