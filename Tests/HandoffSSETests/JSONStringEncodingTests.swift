import Foundation
import HandoffSSE
import NIOCore
import Testing

@Suite struct JSONStringEncodingTests {
    private func encode(_ string: String) -> String {
        var buffer = ByteBuffer()
        buffer.writeJSONString(string)
        return String(buffer: buffer)
    }

    @Test(arguments: [
        ("plain", #""plain""#),
        ("quote \" and \\ backslash", #""quote \" and \\ backslash""#),
        ("line\nbreak\r\ttab", #""line\nbreak\r\ttab""#),
        ("\u{8}\u{c}", #""\b\f""#),
        ("\u{0}\u{1f}", #""\u0000\u001f""#),
        ("\u{2028}sep\u{2029}", #""\u2028sep\u2029""#),
        ("emoji 😀 CJK 漢字 é", "\"emoji 😀 CJK 漢字 é\""),
        ("", #""""#),
        ("\u{7f}", "\"\u{7f}\""),
    ])
    func escapes(input: String, expected: String) {
        #expect(self.encode(input) == expected)
    }

    @Test func roundTripsThroughAJSONParser() throws {
        var samples = ["a\"b\\c\n\r\t", "😀𝄞漢字", String(UnicodeScalar(0x2028)!), "end\u{1}"]
        samples.append(String((0..<0x80).map { Character(UnicodeScalar(UInt8($0))) }))
        for sample in samples {
            let json = "[" + self.encode(sample) + "]"
            let decoded = try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String]
            #expect(decoded == [sample])
        }
    }

    @Test func returnsWrittenByteCount() {
        var buffer = ByteBuffer()
        let count = buffer.writeJSONString("a\n")
        #expect(count == buffer.readableBytes)
        #expect(count == 5)
    }
}
