import Foundation
import HandoffJSON
import HandoffTestSupport
import Testing

@Suite struct JSONReaderTests {
    /// Skips one whole value and checks the end: whether the reader takes `text` as JSON.
    private func accepts(_ text: String) -> Bool {
        var text = text
        return text.withUTF8 { bytes in
            var reader = JSONReader(UnsafeRawBufferPointer(bytes))
            do {
                try reader.skipValue()
                try reader.finish()
                return true
            } catch {
                return false
            }
        }
    }

    private func readString(_ text: String) throws -> String {
        var text = text
        return try text.withUTF8 { bytes in
            var reader = JSONReader(UnsafeRawBufferPointer(bytes))
            let value = try reader.readString()
            try reader.finish()
            return value
        }
    }

    @Test(arguments: [
        #"{}"#, #"[]"#, #" { "a" : [1, -2.5e+3, 0, 0.0, 1E2, true, false, null, "x"] } "#,
        #""\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00""#, #"-0"#, #"[[[[]]]]"#, #"{"a":{"b":{"c":[{}]}}}"#,
    ])
    func acceptsJSON(text: String) {
        #expect(self.accepts(text))
        #expect((try? JSONSerialization.jsonObject(with: Data(text.utf8), options: .fragmentsAllowed)) != nil)
    }

    @Test(arguments: [
        "", " ", "{", "}", "[1,]", "{\"a\":1,}", "{\"a\" 1}", "{a:1}", "01", "1.", ".5", "+1", "1e", "--1",
        "tru", "nul", "\"abc", "\"\\x\"", "\"\\u12G4\"", "\"a\u{01}b\"", "[1 2]", "{} {}", "NaN", "'a'", "[\"a\"\n,]",
    ])
    func rejectsWhatIsNotJSON(text: String) {
        // Stricter than Foundation's parser, which takes trailing commas.
        #expect(!self.accepts(text))
    }

    @Test func decodesEscapesAndSurrogatePairs() throws {
        #expect(try self.readString(#""a\"b\\c\/d\b\f\n\r\t""#) == "a\"b\\c/d\u{08}\u{0C}\n\r\t")
        #expect(try self.readString(#""\u00e9\u4e2d\ud83d\ude00""#) == "é中😀")
        #expect(try self.readString(#""plain ünïcödé 😀""#) == "plain ünïcödé 😀")
        #expect(try self.readString(#""\u2028""#) == "\u{2028}")
    }

    @Test(arguments: [#""\ud83d""#, #""\ude00""#, #""\ud83dx""#, #""\ud83d\u0041""#])
    func loneSurrogatesAreDeclined(text: String) {
        #expect(throws: JSONReaderError.self) { try self.readString(text) }
    }

    @Test func integersAreReadExactlyOrDeclined() throws {
        func int(_ text: String) throws -> Int {
            var text = text
            return try text.withUTF8 { bytes in
                var reader = JSONReader(UnsafeRawBufferPointer(bytes))
                return try reader.readInt()
            }
        }
        #expect(try int("0") == 0)
        #expect(try int("-42") == -42)
        #expect(try int("9223372036854775807") == Int.max)
        #expect(try int("-9223372036854775808") == Int.min)
        for declined in ["9223372036854775808", "1.0", "1e3", "\"1\"", "null"] {
            #expect(throws: JSONReaderError.self) { try int(declined) }
        }
    }

    @Test func nestingDeeperThanTheLimitIsDeclined() {
        let deep = String(repeating: "[", count: 65) + String(repeating: "]", count: 65)
        let fine = String(repeating: "[", count: 64) + String(repeating: "]", count: 64)
        #expect(!self.accepts(deep))
        #expect(self.accepts(fine))
    }

    @Test func readsTheMembersAskedForAndSkipsTheRest() throws {
        var text = #"{"skip":{"deep":[1,{"x":"y"}]},"content":"hi","n":7,"flag":true,"none":null}"#
        var content: String?
        var number: Int?
        var flag: Bool?
        try text.withUTF8 { bytes in
            var reader = JSONReader(UnsafeRawBufferPointer(bytes))
            try reader.readObject { reader, key throws(JSONReaderError) in
                if key == "content" {
                    content = try reader.readStringOrNull()
                } else if key == "n" {
                    number = try reader.readIntOrNull()
                } else if key == "flag" {
                    flag = try reader.readBool()
                } else {
                    try reader.skipValue()
                }
            }
            try reader.finish()
        }
        #expect(content == "hi")
        #expect(number == 7)
        #expect(flag == true)
    }

    @Test func escapedKeysCompareByValue() throws {
        var text = #"{"con\u0074ent":"yes"}"#
        var content: String?
        try text.withUTF8 { bytes in
            var reader = JSONReader(UnsafeRawBufferPointer(bytes))
            try reader.readObject { reader, key throws(JSONReaderError) in
                if key == "content" { content = try reader.readString() } else { try reader.skipValue() }
            }
        }
        #expect(content == "yes")
    }

    /// Any JSON value, decoded as nothing: JSONDecoder checks the whole text's syntax and
    /// decodes strings only when asked, as the reader's skip does.
    private struct Anything: Decodable {
        init(from decoder: any Decoder) throws {}
    }

    /// Mutations of valid JSON (bytes dropped, swapped, inserted): the reader never takes text
    /// that JSONDecoder, the daemon's authority, refuses.
    @Test func neverAcceptsWhatFoundationRefuses() {
        let seeds = [
            #"{"id":"chatcmpl-1","choices":[{"index":0,"delta":{"content":"Hi \"there\"\n"},"finish_reason":null}]}"#,
            #"[1,-2.5e+3,true,false,null,{"a":[]},"\u00e9"]"#,
        ]
        let alphabet = Array(#"{}[]:,"\-+.eE0129 tfnul\"#.utf8)
        var random = SplitMix64(seed: 0x5EED)
        var disagreements: [String] = []
        for round in 0..<20_000 {
            var bytes = Array(seeds[round % seeds.count].utf8)
            for _ in 0..<(1 + Int(random.next() % 3)) {
                let position = Int(random.next() % UInt64(bytes.count))
                switch random.next() % 3 {
                case 0: bytes.remove(at: position)
                case 1: bytes[position] = alphabet[Int(random.next() % UInt64(alphabet.count))]
                default: bytes.insert(alphabet[Int(random.next() % UInt64(alphabet.count))], at: position)
                }
                if bytes.isEmpty { bytes = [0x30] }
            }
            let text = String(decoding: bytes, as: UTF8.self)
            if self.accepts(text), (try? JSONDecoder().decode(Anything.self, from: Data(text.utf8))) == nil {
                disagreements.append(text)
            }
        }
        #expect(disagreements.isEmpty, "accepted, but JSONDecoder refuses: \(disagreements.prefix(5))")
    }
}
