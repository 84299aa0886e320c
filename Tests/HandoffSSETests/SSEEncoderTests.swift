import HandoffSSE
import NIOCore
import Testing

@Suite struct SSEEncoderTests {
    private func render(_ body: (inout ByteBuffer) -> Void) -> String {
        var buffer = ByteBuffer()
        body(&buffer)
        return String(buffer: buffer)
    }

    @Test func singleLineEvent() {
        #expect(self.render { SSEEncoder.writeEvent("hello", into: &$0) } == "data: hello\n\n")
    }

    @Test func multiLineDataBecomesSeveralDataLines() {
        let text = self.render { SSEEncoder.writeEvent("a\nb\r\nc\rd", into: &$0) }
        #expect(text == "data: a\ndata: b\ndata: c\ndata: d\n\n")
    }

    @Test func eventAndIDFields() {
        let text = self.render { SSEEncoder.writeEvent("x", event: "update", id: "7", into: &$0) }
        #expect(text == "event: update\ndata: x\nid: 7\n\n")
    }

    @Test func fieldsCannotBeSplitByLineBreaks() {
        let text = self.render { SSEEncoder.writeEvent("x", event: "bad\nevent", into: &$0) }
        #expect(text == "event: bad event\ndata: x\n\n")
    }

    @Test func comment() {
        #expect(self.render { SSEEncoder.writeComment("ping", into: &$0) } == ": ping\n\n")
    }

    @Test func handoffContentEvent() {
        let text = self.render { HandoffEvents.writeContent("Hi \"you\"\n😀", into: &$0) }
        #expect(text == "data: {\"content\":\"Hi \\\"you\\\"\\n😀\"}\n\n")
    }

    @Test func handoffErrorEventAndDone() {
        let text = self.render {
            HandoffEvents.writeError("upstream reset", reason: "upstream_reset", into: &$0)
            HandoffEvents.writeDone(into: &$0)
        }
        #expect(text == "event: error\ndata: {\"error\":\"upstream reset\",\"reason\":\"upstream_reset\"}\n\ndata: [DONE]\n\n")
    }
}
