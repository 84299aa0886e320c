import Foundation
import HandoffTestSupport
import Testing

@testable import HandoffRequest

/// The reader for ordinary handoffs (`HandoffRequest.scan`) against the general decoder: on
/// every payload the scan takes, both give the same request; whatever the general decoder
/// refuses, the scan declines too, so the client gets the general decoder's precise error.
@Suite struct HandoffRequestScanTests {
    private func scan(_ payload: [UInt8], limits: HandoffRequestLimits = .init()) -> HandoffRequest? {
        payload.withUnsafeBytes { HandoffRequest.scan($0, limits: limits) }
    }

    static let ordinary = [
        #"{"prompt":"Hello","user_id":42}"#,
        #"{"prompt":"Explain TCP","model":"gpt-4o-mini","user_id":"u-17","request_id":"req-9f","max_tokens":512,"temperature":0.7}"#,
        #"{"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hi \"you\" \u00e9 😀\n"}],"backend":"openai","model":"gpt-4o"}"#,
        #"{"prompt":"x","backend":"langgraph","profile":"agent","thread_id":"t-1","assistant_id":"graph","csrf":"ignored","extra":{"a":[1,2]}}"#,
        #"{"prompt":null,"system":null,"model":null,"max_tokens":null,"temperature":null,"messages":null}"#,
        #"{"prompt":"load","user_id":1}"#,
        #"{"test_pattern":"echo","prompt":"ünïcödé"}"#,
        #"{"prompt":"p","stream_id":"chat-1.a:b","resumable":true,"completion":false}"#,
        #"{"backend":"channel","channel":"room:7"}"#,
    ]

    @Test(arguments: ordinary)
    func ordinaryHandoffsAreScannedAlike(payload: String) throws {
        let bytes = Array(payload.utf8)
        let scanned = try #require(self.scan(bytes), "declined an ordinary handoff")
        #expect(scanned == (try HandoffRequest.decodeGeneral(bytes, limits: .init())))
    }

    @Test(arguments: [
        #"{"prompt":5}"#, #"{"max_tokens":0}"#, #"{"max_tokens":1.5}"#, #"{"temperature":2.5}"#, #"{"model":"a\nb"}"#,
        #"{"messages":[{"role":"robot","content":"x"}]}"#, #"{"messages":[{"role":"user","content":[{"type":"text","text":"x"}]}]}"#,
        #"{"api_key":"sk-1"}"#, #"{"response_headers":{"X-A":"b"}}"#, #"{"prompt":"a","prompt":"b"}"#, #"[]"#, #"{"prompt":"\ud800"}"#,
    ])
    func unusualHandoffsGoToTheGeneralDecoder(payload: String) {
        #expect(self.scan(Array(payload.utf8)) == nil)
    }

    @Test func invalidUTF8IsDeclined() {
        #expect(self.scan([0x7B, 0x22, 0x70, 0x22, 0x3A, 0x22, 0xC3, 0x28, 0x22, 0x7D]) == nil)  // {"p":"\xC3("}
        #expect(self.scan(Array(#"{"p":"é"}"#.utf8)) != nil)
    }

    @Test func limitsAreTheConfiguredOnes() {
        var limits = HandoffRequestLimits()
        limits.maxIdentifierBytes = 4
        limits.maxMessages = 1
        #expect(self.scan(Array(#"{"model":"abcde"}"#.utf8), limits: limits) == nil)
        #expect(self.scan(Array(#"{"model":"abcd"}"#.utf8), limits: limits)?.model == "abcd")
        #expect(self.scan(Array(#"{"messages":[{"role":"user","content":"a"},{"role":"user","content":"b"}]}"#.utf8), limits: limits) == nil)
    }

    /// Random handoffs: right and wrong types, nulls, limits, control characters, repeated and
    /// refused fields, unknown members, cut-off text, stray bytes.
    @Test func randomHandoffsAgreeWithTheGeneralDecoder() {
        var random = PayloadGenerator(seed: 0xFEED)
        var limits = HandoffRequestLimits()
        limits.maxIdentifierBytes = 12
        limits.maxMessages = 3
        limits.maxTokens = 1000
        var scanned = 0
        var disagreements: [String] = []
        for _ in 0..<5_000 {
            let payload = random.payload()
            let general = try? HandoffRequest.decodeGeneral(payload, limits: limits)
            guard let fast = self.scan(payload, limits: limits) else { continue }
            scanned += 1
            if fast != general { disagreements.append(String(decoding: payload, as: UTF8.self)) }
        }
        #expect(disagreements.isEmpty, "disagree: \(disagreements.prefix(3))")
        #expect(scanned > 400, "the scan took only \(scanned) of 5 000 payloads")
    }
}

private struct PayloadGenerator {
    private var random: SplitMix64

    init(seed: UInt64) { self.random = SplitMix64(seed: seed) }

    private mutating func next(_ bound: Int) -> Int { self.random.next(bound) }

    private mutating func pick(_ options: [String]) -> String { options[self.next(options.count)] }

    private mutating func string() -> String {
        let pieces = ["a", "gpt-4o", "é", "😀", "\\n", "\\u0007", "\\u2028", "\\\"", "abcdefghijklmnop", "\\ud83d\\ude00", "\\ud800", " "]
        return "\"" + (0..<self.next(4)).map { _ in self.pick(pieces) }.joined() + "\""
    }

    private mutating func value() -> String {
        switch self.next(12) {
        case 0: "null"
        case 1: "true"
        case 2: String(self.next(2000))
        case 3: self.pick(["0.7", "1e0", "2.0", "-1", "3.5", "0", "1E-2", "12.0", "99999999999999999999"])
        case 4: "[]"
        case 5: "{}"
        case 6: self.message()
        default: self.string()
        }
    }

    private mutating func message() -> String {
        var members: [String] = []
        if self.next(8) != 0 { members.append("\"role\":" + (self.next(5) == 0 ? self.value() : "\"\(self.pick(["user", "system", "assistant", "robot", "tool"]))\"")) }
        if self.next(8) != 0 { members.append("\"content\":" + (self.next(5) == 0 ? self.pick([#"[{"type":"text","text":"x"}]"#, "null", "5"]) : self.string())) }
        if self.next(10) == 0 { members.append("\"name\":\"n\"") }
        if self.next(20) == 0, !members.isEmpty { members.append(members[self.next(members.count)]) }  // repeated key
        return "{" + members.joined(separator: ",") + "}"
    }

    mutating func payload() -> [UInt8] {
        let keys = ["prompt", "system", "model", "backend", "test_pattern", "profile", "thread_id", "assistant_id", "request_id", "user_id",
                    "max_tokens", "temperature", "messages", "unknown", "csrf", "api_key", "response_headers", "images", "stream_mode",
                    "stream_id", "resumable", "resume", "completion", "channel", "last_event_id"]
        var members: [String] = []
        for _ in 0..<(1 + self.next(5)) {
            let key = self.pick(keys)
            let value: String
            switch key {
            case "messages" where self.next(3) != 0:
                value = "[" + (0..<self.next(5)).map { _ in self.message() }.joined(separator: ",") + "]"
            case "max_tokens" where self.next(2) == 0, "user_id" where self.next(2) == 0, "request_id" where self.next(3) == 0:
                value = String(self.next(1500))
            case "temperature" where self.next(2) == 0:
                value = self.pick(["0.7", "1e0", "2", "0", "2.5", "1.25"])
            case "resumable" where self.next(2) == 0, "resume" where self.next(2) == 0, "completion" where self.next(2) == 0:
                value = self.pick(["true", "false"])
            case "stream_id" where self.next(2) == 0, "channel" where self.next(2) == 0:
                value = self.pick(["\"s-1\"", "\"a:b.c_d\"", "\"\"", "\"bad id\"", "\"é\""])
            default:
                value = self.value()
            }
            members.append("\"\(key)\":\(value)")
        }
        var bytes = Array(("{" + members.joined(separator: ",") + "}").utf8)
        if self.next(15) == 0 { bytes.removeLast(self.next(bytes.count)) }
        if self.next(25) == 0, !bytes.isEmpty { bytes.insert(self.pick(["\u{C3}", "\u{FF}"]).utf8.first! | 0x80, at: self.next(bytes.count)) }
        return bytes
    }
}
