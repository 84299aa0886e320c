import HandoffDaemon
import Testing
@testable import HandoffRequest

@Suite struct HandoffRequestTests {
    private func decode(_ json: String) throws(HandoffRequestError) -> HandoffRequest {
        try HandoffRequest.decode(Array(json.utf8))
    }

    @Test func emptyPayloadIsTheDefaults() throws {
        #expect(try HandoffRequest.decode([]) == HandoffRequest())
    }

    @Test func decodesEveryField() throws {
        let request = try self.decode(
            #"""
            {"prompt":"p","system":"s","model":"m","max_tokens":100,"temperature":0.5,"user_id":42,
             "request_id":"r-1","backend":"mock","test_pattern":"unicode","unknown":{"ignored":[1,2]},
             "messages":[{"role":"user","content":"hi"},
                         {"role":"user","content":[{"type":"text","text":"look"},{"type":"image_url","image_url":{"url":"data:image/png;base64,AA=="}}]}],
             "response_headers":{"X-B":"2","X-A":"1"}}
            """#
        )
        #expect(request.prompt == "p")
        #expect(request.system == "s")
        #expect(request.model == "m")
        #expect(request.maxTokens == 100)
        #expect(request.temperature == 0.5)
        #expect(request.userID == "42")
        #expect(request.requestID == "r-1")
        #expect(request.backend == "mock")
        #expect(request.testPattern == "unicode")
        #expect(
            request.messages == [
                .init(role: "user", content: .text("hi")),
                .init(role: "user", content: .parts([.text("look"), .imageURL("data:image/png;base64,AA==")])),
            ]
        )
        #expect(request.responseHeaders == [.init(name: "X-A", value: "1"), .init(name: "X-B", value: "2")])
    }

    @Test func userIDMayBeAString() throws {
        #expect(try self.decode(#"{"user_id":"u-7"}"#).userID == "u-7")
        #expect(try self.decode(#"{"user_id":null}"#).userID == nil)
    }

    @Test(arguments: [
        (#"{"prompt":1}"#, "prompt"),
        (#"{"user_id":true}"#, "user_id"),
        (#"{"user_id":1.5}"#, "user_id"),
        (#"{"max_tokens":"10"}"#, "max_tokens"),
        (#"{"temperature":"hot"}"#, "temperature"),
        (#"{"messages":"hi"}"#, "messages"),
        (#"{"messages":[{"role":1,"content":"x"}]}"#, "messages[0].role"),
        (#"{"messages":[{"role":"user"}]}"#, "messages[0].content"),
        (#"{"messages":[{"role":"user","content":[{"type":"text"}]}]}"#, "messages[0].content[0].text"),
        (#"{"response_headers":["a"]}"#, "response_headers"),
        (#"{"response_headers":{"X-A":1}}"#, "response_headers.X-A"),
    ])
    func wrongTypesNameTheField(json: String, field: String) {
        let error = #expect(throws: HandoffRequestError.self) { _ = try self.decode(json) }
        #expect(error?.reason == .wrongType)
        #expect(error?.field == field)
    }

    // Foundation's decoder tolerates one trailing comma in an object; everything else is RFC 8259.
    @Test(arguments: ["{", "not json", "[]", "\"s\"", "[1,]", "{\"max_tokens\":01}", "{'a':1}", "{\"a\":1} x", "{\"prompt\":\"\\ud800\"}"])
    func invalidJSON(json: String) {
        let error = #expect(throws: HandoffRequestError.self) { _ = try self.decode(json) }
        #expect(error?.reason == .invalidJSON)
    }

    @Test func invalidUTF8IsInvalidJSON() {
        #expect(throws: HandoffRequestError.self) { _ = try HandoffRequest.decode([0x7B, 0x22, 0xFF, 0x22, 0x3A, 0x31, 0x7D]) }
    }

    @Test func valueLimits() {
        #expect(throws: HandoffRequestError.self) { _ = try self.decode(#"{"max_tokens":0}"#) }
        #expect(throws: HandoffRequestError.self) { _ = try self.decode(#"{"temperature":-0.1}"#) }
        #expect(throws: HandoffRequestError.self) { _ = try self.decode(#"{"messages":[{"role":"wizard","content":"x"}]}"#) }
        #expect(throws: HandoffRequestError.self) { _ = try self.decode(#"{"request_id":"\#(String(repeating: "r", count: 257))"}"#) }
        let many = (0..<33).map { #""X-\#($0)":"v""# }.joined(separator: ",")
        #expect(throws: HandoffRequestError.self) { _ = try self.decode(#"{"response_headers":{\#(many)}}"#) }
    }
}
