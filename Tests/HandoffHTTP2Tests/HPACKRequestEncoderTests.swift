import HandoffHTTP2
import HandoffTestSupport
import NIOCore
import NIOHPACK
import Testing

/// The request header blocks decode, with an independent HPACK decoder (NIOHPACK's), to
/// exactly the fields written.
@Suite struct HPACKRequestEncoderTests {
    private func roundTrip(_ fields: [(String, String)]) throws -> [(String, String)] {
        var block = ByteBuffer()
        for (name, value) in fields {
            #expect(HPACKRequestEncoder.write(name: name, value: value, into: &block))
        }
        var decoder = HPACKDecoder(allocator: ByteBufferAllocator(), maxDynamicTableSize: 4096, maxHeaderListSize: 1 << 20)
        let headers = try decoder.decodeHeaders(from: &block)
        #expect(block.readableBytes == 0)
        return headers.map { ($0.name, $0.value) }
    }

    @Test func aTypicalRequestDecodesToItsFields() throws {
        let fields = [
            (":method", "POST"), (":scheme", "https"), (":authority", "api.example.com:443"), (":path", "/v1/chat/completions"),
            ("content-type", "application/json"), ("accept", "text/event-stream"), ("content-length", "1234"),
            ("authorization", "Bearer sk-abc"), ("x-request-id", "r-1"), (":scheme", "http"), (":method", "GET"), (":path", "/"),
        ]
        let decoded = try self.roundTrip(fields)
        #expect(decoded.map(\.0) == fields.map(\.0))
        #expect(decoded.map(\.1) == fields.map(\.1))
    }

    @Test func lengthsAroundEveryIntegerBoundaryDecode() throws {
        // 7-bit prefix: 126, 127 (the first two-byte length), 128, 254, 255, then longer ones.
        for length in [0, 1, 126, 127, 128, 129, 254, 255, 256, 16_383, 16_384, 70_000] {
            let value = String(repeating: "v", count: length)
            let name = "x-" + String(repeating: "n", count: length % 200)
            let decoded = try self.roundTrip([(name, value), ("content-length", value)])
            #expect(decoded.map(\.0) == [name, "content-length"], "length \(length)")
            #expect(decoded.map(\.1) == [value, value], "length \(length)")
        }
    }

    @Test func randomFieldsDecodeToThemselves() throws {
        var rng = SplitMix64(seed: 0x4850_4143)  // a failure reproduces from its seed
        let names = [":authority", ":path", "accept", "authorization", "content-type", "user-agent", "x-test-pattern", "x-a_b.c~1"]
        for _ in 0..<200 {
            let fields = (0..<Int.random(in: 1...12, using: &rng)).map { _ in
                let value = String((0..<Int.random(in: 0...300, using: &rng)).map { _ in Character(Unicode.Scalar(UInt8.random(in: 0x21...0x7e, using: &rng))) })
                return (names.randomElement(using: &rng)!, "✓" + value + "✓")
            }
            let decoded = try self.roundTrip(fields)
            #expect(decoded.map(\.0) == fields.map(\.0))
            #expect(decoded.map(\.1) == fields.map(\.1))
        }
    }

    @Test func valuesLoseTheirSurroundingWhitespace() throws {
        let decoded = try self.roundTrip([("x-request-id", " \tr 1 \t"), ("x-empty", "  ")])
        #expect(decoded.map(\.1) == ["r 1", ""])
    }

    @Test func fieldsHTTP2CannotCarryAreRefused() {
        var block = ByteBuffer()
        #expect(!HPACKRequestEncoder.write(name: "X-Upper", value: "v", into: &block))
        #expect(!HPACKRequestEncoder.write(name: "", value: "v", into: &block))
        #expect(!HPACKRequestEncoder.write(name: "with space", value: "v", into: &block))
        #expect(!HPACKRequestEncoder.write(name: "x-é", value: "v", into: &block))
        #expect(!HPACKRequestEncoder.write(name: "x:y", value: "v", into: &block))
        #expect(!HPACKRequestEncoder.write(name: "x(y)", value: "v", into: &block))
        #expect(!HPACKRequestEncoder.write(name: "x-id", value: "a\r\nb: c", into: &block))
        #expect(!HPACKRequestEncoder.write(name: "x-id", value: "a\u{0}", into: &block))
        #expect(block.readableBytes == 0)
    }
}
