import HandoffRedis
import NIOCore
import Testing

@Suite struct RESPParserTests {
    /// Every reply shape, as a server sends it, and what it parses to.
    static let samples: [(String, RESPValue)] = [
        ("+OK\r\n", .simpleString("OK")),
        ("-ERR unknown command\r\n", .error("ERR unknown command")),
        (":-42\r\n", .integer(-42)),
        (":9223372036854775807\r\n", .integer(.max)),
        (":-9223372036854775808\r\n", .integer(.min)),
        ("$5\r\nhello\r\n", .bulkString(ByteBuffer(string: "hello"))),
        ("$0\r\n\r\n", .bulkString(ByteBuffer())),
        ("$-1\r\n", .null),
        ("*-1\r\n", .null),
        ("_\r\n", .null),
        ("$4\r\na\r\nb\r\n", .bulkString(ByteBuffer(string: "a\r\nb"))),
        ("*2\r\n$1\r\na\r\n*1\r\n:1\r\n", .array([.bulkString(ByteBuffer(string: "a")), .array([.integer(1)])])),
        ("#t\r\n", .boolean(true)),
        (",3.5\r\n", .double(3.5)),
        (",-inf\r\n", .double(-.infinity)),
        ("(12345678901234567890\r\n", .bigNumber("12345678901234567890")),
        ("!9\r\nERR wrong\r\n", .error("ERR wrong")),
        ("=8\r\ntxt:abcd\r\n", .verbatim(format: "txt", text: ByteBuffer(string: "abcd"))),
        ("%1\r\n+server\r\n+redis\r\n", .map([(.simpleString("server"), .simpleString("redis"))])),
        ("~1\r\n:7\r\n", .set([.integer(7)])),
        (">3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$2\r\nhi\r\n", .push([.bulkString(ByteBuffer(string: "message")), .bulkString(ByteBuffer(string: "c")), .bulkString(ByteBuffer(string: "hi"))])),
        ("|1\r\n+ttl\r\n:3\r\n+value\r\n", .simpleString("value")),
    ]

    @Test func parsesEveryShape() throws {
        for (wire, expected) in Self.samples {
            var buffer = ByteBuffer(string: wire)
            let value = try RESPParser().next(from: &buffer)
            #expect(value == expected, "\(wire.debugDescription)")
            #expect(buffer.readableBytes == 0)
        }
    }

    /// A reply split at any byte: nothing until it is complete, and nothing consumed early.
    @Test func waitsForEveryPrefix() throws {
        let wire = Self.samples.map(\.0).joined()
        let expected = Self.samples.map(\.1)
        for split in 0...wire.utf8.count {
            var buffer = ByteBuffer(bytes: Array(wire.utf8.prefix(split)))
            var values: [RESPValue] = []
            while let value = try RESPParser().next(from: &buffer) { values.append(value) }
            buffer.writeBytes(Array(wire.utf8.dropFirst(split)))
            while let value = try RESPParser().next(from: &buffer) { values.append(value) }
            #expect(values == expected, "split at \(split)")
        }
    }

    /// Skipping consumes exactly what parsing would, at every split, and still reports errors.
    @Test func skippingAgreesWithParsing() throws {
        let wire = Self.samples.map(\.0).joined()
        for split in 0...wire.utf8.count {
            var buffer = ByteBuffer(bytes: Array(wire.utf8.prefix(split)))
            var skipped: [RESPParser.Skipped] = []
            while let value = try RESPParser().skip(from: &buffer) { skipped.append(value) }
            buffer.writeBytes(Array(wire.utf8.dropFirst(split)))
            while let value = try RESPParser().skip(from: &buffer) { skipped.append(value) }
            let expected: [RESPParser.Skipped] = Self.samples.map {
                if case .error(let message) = $0.1 { return .error(message) }
                return .value
            }
            #expect(skipped == expected, "split at \(split)")
            #expect(buffer.readableBytes == 0)
        }
        for wire in [":12a\r\n", "$3\r\nabcXY", "$-5\r\n", "+OK\n"] {
            var buffer = ByteBuffer(string: wire)
            #expect(throws: RESPProtocolError.self, "\(wire.debugDescription)") { try RESPParser().skip(from: &buffer) }
        }
    }

    @Test func refusesWhatIsNotRESP() {
        for wire in ["?x\r\n", ":12a\r\n", "$3\r\nabcXY", "#x\r\n", "$-5\r\n", "*2000000\r\n", ",abc\r\n", "+OK\n", ":1\n", ":9223372036854775808\r\n", ":-9223372036854775809\r\n", ":-\r\n"] {
            var buffer = ByteBuffer(string: wire)
            #expect(throws: RESPProtocolError.self, "\(wire.debugDescription)") { try RESPParser().next(from: &buffer) }
        }
        var deep = ByteBuffer(string: String(repeating: "*1\r\n", count: 40) + ":1\r\n")
        #expect(throws: RESPProtocolError.self) { try RESPParser().next(from: &deep) }
    }

    @Test func encodesCommandsAsArraysOfBulkStrings() {
        let command = RESPCommand("XADD", ["key", 5, .bytes(ByteBuffer(string: "a\r\nb"))])
        #expect(String(buffer: command.bytes) == "*4\r\n$4\r\nXADD\r\n$3\r\nkey\r\n$1\r\n5\r\n$4\r\na\r\nb\r\n")
    }
}

@Suite struct RESPPipelineTests {
    @Test func encodesLikeSingleCommands() {
        var pipeline = RESPPipeline()
        pipeline.command("XADD", arguments: 4)
        pipeline.argument("handoff:{s}:events")
        pipeline.argument("0-", 1234567)
        pipeline.argument("e")
        pipeline.argument(ByteBuffer(string: "id: 1\ndata: x\n\n"))
        pipeline.command("EXPIRE", arguments: 2)
        pipeline.argument("k" as String)
        pipeline.argument(Int64(-5))
        pipeline.command("PUBLISH", arguments: 2)
        pipeline.argument("n")
        pipeline.argument(Int64(0))
        var expected = RESPCommand("XADD", ["handoff:{s}:events", "0-1234567", "e", .bytes(ByteBuffer(string: "id: 1\ndata: x\n\n"))]).bytes
        var expire = RESPCommand("EXPIRE", ["k", "-5"]).bytes
        var publish = RESPCommand("PUBLISH", ["n", "0"]).bytes
        expected.writeBuffer(&expire)
        expected.writeBuffer(&publish)
        #expect(pipeline.bytes == expected)
        #expect(pipeline.count == 3 && pipeline.firstName == "XADD")
    }
}
