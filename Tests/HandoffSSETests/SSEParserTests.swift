import HandoffSSE
import NIOCore
import Testing

@Suite struct SSEParserTests {
    private struct Parsed: Equatable {
        var events: [SSEEvent] = []
        var comments: [String] = []
        var truncated = false
    }

    private func parse(chunks: [[UInt8]], parser: SSEParser = SSEParser()) throws -> Parsed {
        var parser = parser
        var parsed = Parsed()
        for chunk in chunks {
            try parser.feed(chunk, onComment: { parsed.comments.append($0) }, onEvent: { parsed.events.append($0) })
        }
        parsed.truncated = parser.finish()
        return parsed
    }

    private func parse(_ stream: String, parser: SSEParser = SSEParser()) throws -> Parsed {
        try self.parse(chunks: [Array(stream.utf8)], parser: parser)
    }

    private func events(_ stream: String) throws -> [SSEEvent] {
        try self.parse(stream).events
    }

    // MARK: - Basics

    @Test func simpleEvent() throws {
        #expect(try self.events("data: hello\n\n") == [SSEEvent(data: "hello")])
        #expect(try self.events("data: a\n\ndata: b\n\n") == [SSEEvent(data: "a"), SSEEvent(data: "b")])
    }

    @Test func multiLineDataIsJoinedWithLF() throws {
        #expect(try self.events("data: a\ndata: b\ndata: c\n\n") == [SSEEvent(data: "a\nb\nc")])
    }

    @Test(arguments: ["\n", "\r\n", "\r"])
    func lineEndings(_ eol: String) throws {
        let stream = ["event: e", "data: a", "data: b", "id: 1", "", "data: c", "", ""].joined(separator: eol)
        #expect(try self.events(stream) == [SSEEvent(event: "e", data: "a\nb", id: "1"), SSEEvent(data: "c", id: "1")])
    }

    @Test func mixedLineEndings() throws {
        #expect(try self.events("data: a\r\ndata: b\rdata: c\n\r\n") == [SSEEvent(data: "a\nb\nc")])
        // LF then CR: two line breaks, the second ending a blank line.
        #expect(try self.events("data: a\n\rdata: b\n\n") == [SSEEvent(data: "a"), SSEEvent(data: "b")])
        // CR CR: likewise.
        #expect(try self.events("data: a\r\rdata: b\r\r") == [SSEEvent(data: "a"), SSEEvent(data: "b")])
    }

    @Test func crlfSplitAcrossChunksIsOneLineBreak() throws {
        let chunks = ["data: a\r", "\ndata: b\r", "\n\r", "\n"].map { Array($0.utf8) }
        #expect(try self.parse(chunks: chunks).events == [SSEEvent(data: "a\nb")])
        // An empty chunk between the CR and the LF changes nothing.
        let withEmpty = ["data: a\r", "", "\n", "", "\r", "", "\n"].map { Array($0.utf8) }
        #expect(try self.parse(chunks: withEmpty).events == [SSEEvent(data: "a")])
    }

    /// Lines that end in a lone CR, many in one read: each line's end is found without
    /// searching the rest of the read for an LF again (that was quadratic: these 400 000 lines
    /// in one 3.6 MB read took 50 s in a debug build; now under a second).
    @Test func manyCROnlyLinesInOneReadParseInLinearTime() throws {
        let stream = Array(String(repeating: "data: x\r\r", count: 400_000).utf8)
        let started = ContinuousClock.now
        let parsed = try self.parse(chunks: [stream])
        #expect(parsed.events.count == 400_000)
        #expect(ContinuousClock.now - started < .seconds(10))
    }

    @Test func crAtEndOfChunkEndsTheLineAtOnce() throws {
        var parser = SSEParser()
        var events: [SSEEvent] = []
        try parser.feed(Array("data: a\r\r".utf8)) { events.append($0) }
        #expect(events == [SSEEvent(data: "a")])
        try parser.feed(Array("data: b\n\n".utf8)) { events.append($0) }
        #expect(events == [SSEEvent(data: "a"), SSEEvent(data: "b")])
        let truncated = parser.finish()
        #expect(!truncated)
    }

    @Test func crFollowedByAnotherLineInTheNextChunk() throws {
        let chunks = ["data: a\r", "data: b\r", "\r"].map { Array($0.utf8) }
        #expect(try self.parse(chunks: chunks).events == [SSEEvent(data: "a\nb")])
    }

    // MARK: - Chunking

    private static let sample: [UInt8] = [0xEF, 0xBB, 0xBF] + Array(
        [
            ": hello\r\n",
            "retry: 2500\r\n",
            "event: greeting\r",
            "data: héllo 😀\r\n",
            "data:wörld\n",
            "id: 42\n",
            "\r\n",
            "data\n",
            "\n",
            "event: ignored\n",
            "\n",
            "unknown: x\n",
            "data:  spaced\r",
            "data\r",
            "\r",
            "id\n",
            "event: last\n",
            "data: 漢字\r\n\r\n",
            "data: tail",
        ].joined().utf8
    )

    private static let sampleExpected = Parsed(
        events: [
            SSEEvent(event: "greeting", data: "héllo 😀\nwörld", id: "42", retry: 2500),
            SSEEvent(data: "", id: "42"),
            SSEEvent(data: " spaced\n", id: "42"),
            SSEEvent(event: "last", data: "漢字"),
        ],
        comments: ["hello"],
        truncated: true
    )

    @Test func sampleInOneChunk() throws {
        #expect(try self.parse(chunks: [Self.sample]) == Self.sampleExpected)
    }

    @Test func everySplitPointGivesTheSameResult() throws {
        let bytes = Self.sample
        for cut in 0...bytes.count {
            let parsed = try self.parse(chunks: [Array(bytes[..<cut]), Array(bytes[cut...])])
            #expect(parsed == Self.sampleExpected, "split at \(cut)")
        }
    }

    @Test func everyPairOfSplitPointsGivesTheSameResult() throws {
        let bytes = Self.sample
        var mismatches: [String] = []
        for first in 0...bytes.count {
            for second in first...bytes.count {
                let chunks = [Array(bytes[..<first]), Array(bytes[first..<second]), Array(bytes[second...])]
                if try self.parse(chunks: chunks) != Self.sampleExpected { mismatches.append("\(first),\(second)") }
            }
        }
        #expect(mismatches.isEmpty)
    }

    @Test func byteByByteGivesTheSameResult() throws {
        #expect(try self.parse(chunks: Self.sample.map { [$0] }) == Self.sampleExpected)
    }

    @Test func acceptsAnyByteSequence() throws {
        var parser = SSEParser()
        var events: [SSEEvent] = []
        try parser.feed("data: a\n\n".utf8) { events.append($0) }
        // Not contiguous: copied first.
        try parser.feed(AnySequence(Array("data: b\n\n".utf8))) { events.append($0) }
        try Array("data: c\n\n".utf8).withUnsafeBytes { raw in try parser.feed(raw) { events.append($0) } }
        #expect(events == [SSEEvent(data: "a"), SSEEvent(data: "b"), SSEEvent(data: "c")])
    }

    // MARK: - Byte order mark

    @Test func leadingByteOrderMarkIsSkipped() throws {
        #expect(try self.events("\u{FEFF}data: x\n\n") == [SSEEvent(data: "x")])
        let split: [[UInt8]] = [[0xEF], [0xBB], [0xBF], Array("data: x\n\n".utf8)]
        #expect(try self.parse(chunks: split).events == [SSEEvent(data: "x")])
    }

    @Test func onlyOneLeadingByteOrderMarkIsSkipped() throws {
        // The second one is part of the field name "\u{FEFF}data", which is ignored.
        #expect(try self.events("\u{FEFF}\u{FEFF}data: x\n\n") == [])
        #expect(try self.events("data: \u{FEFF}x\n\n") == [SSEEvent(data: "\u{FEFF}x")])
        #expect(try self.events("data: x\n\n\u{FEFF}data: y\n\n") == [SSEEvent(data: "x")])
    }

    @Test func partialByteOrderMarkIsLineContent() throws {
        // EF then LF: a line of invalid UTF-8 (an ignored field), then a normal event.
        let chunks: [[UInt8]] = [[0xEF], [0x0A], Array("data: x\n\n".utf8)]
        #expect(try self.parse(chunks: chunks).events == [SSEEvent(data: "x")])
        // The line starts with EF, so it is not a comment.
        #expect(try self.parse(chunks: [[0xEF], Array(":c\n\n".utf8)]).comments == [])
        #expect(try self.parse(chunks: [[0xEF, 0xBB], [0xBF], Array(":c\n\n".utf8)]).comments == ["c"])
        #expect(try self.parse(chunks: [[0xEF, 0xBB]]).truncated)
        #expect(try !self.parse(chunks: [[0xEF, 0xBB, 0xBF]]).truncated)
    }

    // MARK: - Comments and fields

    @Test func comments() throws {
        let parsed = try self.parse(": ping\n\n:no space\n:\n:  two\ndata: a\n: inside\ndata: b\n\n")
        #expect(parsed.comments == ["ping", "no space", "", " two", "inside"])
        #expect(parsed.events == [SSEEvent(data: "a\nb")])
        #expect(!parsed.truncated)
    }

    @Test func commentsAreSkippedWithoutACommentHandler() throws {
        var parser = SSEParser()
        var events: [SSEEvent] = []
        try parser.feed(Array(": ping\n\ndata: a\n: x\n\n".utf8)) { events.append($0) }
        #expect(events == [SSEEvent(data: "a")])
    }

    @Test func fieldWithoutColonHasEmptyValue() throws {
        // "data" appends "" and LF: the data buffer is "\n", not empty, so the event is
        // dispatched with its final LF stripped.
        #expect(try self.events("data\n\n") == [SSEEvent(data: "")])
        #expect(try self.events("data\ndata\n\n") == [SSEEvent(data: "\n")])
        #expect(try self.events("event: x\nevent\ndata: a\n\n") == [SSEEvent(data: "a")])
        #expect(try self.events("unknown\n\n") == [])
    }

    @Test func valueSpacing() throws {
        #expect(try self.events("data:x\n\n") == [SSEEvent(data: "x")])
        #expect(try self.events("data:  two spaces\n\n") == [SSEEvent(data: " two spaces")])
        #expect(try self.events("data: \n\n") == [SSEEvent(data: "")])
        #expect(try self.events("data:\n\n") == [SSEEvent(data: "")])
        #expect(try self.events("data: a: b:c\n\n") == [SSEEvent(data: "a: b:c")])
        #expect(try self.events("data:\tx \n\n") == [SSEEvent(data: "\tx ")])
        // Field names are case-sensitive and not trimmed.
        #expect(try self.events("Data: x\n\n data: y\n\ndata : z\n\n") == [])
    }

    @Test func blockWithoutDataDispatchesNothing() throws {
        #expect(try self.events("event: a\n\n") == [])
        #expect(try self.events("\n\n\n") == [])
        #expect(try self.events("id: 1\nretry: 5\n\n") == [])
    }

    @Test func eventTypeIsResetAfterEachBlock() throws {
        #expect(try self.events("event: a\ndata: 1\n\ndata: 2\n\n") == [SSEEvent(event: "a", data: "1"), SSEEvent(data: "2")])
        // Also after a block that dispatched nothing.
        #expect(try self.events("event: a\n\ndata: 2\n\n") == [SSEEvent(data: "2")])
        // The last event field wins; an empty one means the default type.
        #expect(try self.events("event: a\nevent: b\ndata: 1\n\n") == [SSEEvent(event: "b", data: "1")])
        #expect(try self.events("event: a\nevent:\ndata: 1\n\n").map(\.type) == ["message"])
        #expect(try self.events("event: message\ndata: 1\n\n") == [SSEEvent(event: "message", data: "1")])
    }

    @Test func retry() throws {
        var parser = SSEParser()
        var events: [SSEEvent] = []
        try parser.feed(Array("retry: 1000\ndata: a\n\ndata: b\n\n".utf8)) { events.append($0) }
        #expect(events == [SSEEvent(data: "a", retry: 1000), SSEEvent(data: "b")])
        #expect(parser.reconnectionTime == 1000)

        // A block without data still sets the reconnection time, but dispatches no event.
        events = []
        try parser.feed(Array("retry: 7\n\ndata: c\n\n".utf8)) { events.append($0) }
        #expect(events == [SSEEvent(data: "c")])
        #expect(parser.reconnectionTime == 7)

        let invalid = ["retry: 10a", "retry: -1", "retry: +1", "retry:", "retry", "retry:  5", "retry: 1.5", "retry: 99999999999999999999999"]
        for line in invalid {
            var fresh = SSEParser()
            var received: [SSEEvent] = []
            try fresh.feed(Array((line + "\ndata: x\n\n").utf8)) { received.append($0) }
            #expect(received == [SSEEvent(data: "x")], "\(line)")
            #expect(fresh.reconnectionTime == nil, "\(line)")
        }
        #expect(try self.events("retry:0\ndata: x\n\n") == [SSEEvent(data: "x", retry: 0)])
        #expect(try self.events("retry: 5\nretry: x\ndata: x\n\n") == [SSEEvent(data: "x", retry: 5)])
    }

    @Test func lastEventID() throws {
        var parser = SSEParser()
        var events: [SSEEvent] = []
        let stream = "id: 1\ndata: a\n\ndata: b\n\nid: 2\u{0}x\ndata: c\n\ndata: d\nid: 3\n\nid: 4\n\ndata: e\n\nid\ndata: f\n\n"
        try parser.feed(Array(stream.utf8)) { events.append($0) }
        #expect(events == [
            SSEEvent(data: "a", id: "1"),
            SSEEvent(data: "b", id: "1"),
            SSEEvent(data: "c", id: "1"),  // an ID containing NUL is ignored
            SSEEvent(data: "d", id: "3"),  // set later in the same block
            SSEEvent(data: "e", id: "4"),  // set by a block without data
            SSEEvent(data: "f"),  // an empty id field clears it
        ])
        #expect(parser.lastEventID == "")
        try parser.feed(Array("id:  spaced \n".utf8)) { _ in }
        #expect(parser.lastEventID == " spaced ")
    }

    // MARK: - End of stream

    @Test func unterminatedEventIsDiscardedAtFinish() throws {
        let partialLine = try self.parse("data: a\n\ndata: b")
        #expect(partialLine.events == [SSEEvent(data: "a")])
        #expect(partialLine.truncated)

        let noBlankLine = try self.parse("data: a\n\ndata: b\n")
        #expect(noBlankLine.events == [SSEEvent(data: "a")])
        #expect(noBlankLine.truncated)

        #expect(try self.parse("event: x\n").truncated)
        #expect(try self.parse("data: a\r").truncated)
        #expect(try !self.parse("data: a\n\n").truncated)
        #expect(try !self.parse("data: a\r\r").truncated)
        #expect(try !self.parse("data: a\n\n: ping\n").truncated)
        #expect(try !self.parse("").truncated)
    }

    @Test func finishResetsTheParser() throws {
        var parser = SSEParser()
        var events: [SSEEvent] = []
        try parser.feed(Array("id: 9\nretry: 3\ndata: a\n\nevent: x\ndata: partial".utf8)) { events.append($0) }
        #expect(parser.lastEventID == "9")
        #expect(parser.reconnectionTime == 3)
        let firstTruncated = parser.finish()
        #expect(firstTruncated)
        #expect(parser.lastEventID == "")
        #expect(parser.reconnectionTime == nil)
        try parser.feed(Array("\u{FEFF}data: b\n\n".utf8)) { events.append($0) }
        #expect(events == [SSEEvent(data: "a", id: "9", retry: 3), SSEEvent(data: "b")])
        let secondTruncated = parser.finish()
        #expect(!secondTruncated)
    }

    // MARK: - Bounds

    @Test func lineLengthBound() throws {
        let parser = SSEParser(maximumLineBytes: 10)
        #expect(try self.parse("data: 1234\n\n", parser: parser).events == [SSEEvent(data: "1234")])
        #expect(try self.parse(": 45678901\n\n", parser: parser).comments == ["45678901"])
        #expect(throws: SSEParserError.lineTooLong) { try self.parse("data: 12345\n\n", parser: parser) }
        #expect(throws: SSEParserError.lineTooLong) { try self.parse("data: 12345", parser: parser) }
        let chunks = ["data: 1", "234", "5\n\n"].map { Array($0.utf8) }
        #expect(throws: SSEParserError(reason: .lineTooLong)) { try self.parse(chunks: chunks, parser: parser) }
    }

    @Test func failureIsStickyUntilFinish() throws {
        var parser = SSEParser(maximumLineBytes: 10)
        var events: [SSEEvent] = []
        #expect(throws: SSEParserError.lineTooLong) {
            try parser.feed(Array("data: a\n\ndata: 12345678".utf8)) { events.append($0) }
        }
        #expect(events == [SSEEvent(data: "a")])
        #expect(throws: SSEParserError.lineTooLong) { try parser.feed(Array("\n\n".utf8)) { events.append($0) } }
        let truncated = parser.finish()
        #expect(truncated)
        try parser.feed(Array("data: b\n\n".utf8)) { events.append($0) }
        #expect(events == [SSEEvent(data: "a"), SSEEvent(data: "b")])
    }

    @Test func eventSizeBound() throws {
        let parser = SSEParser(maximumEventBytes: 5)
        // Counted as dispatched: "12\n34" is 5 bytes.
        #expect(try self.parse("data: 12\ndata: 34\n\n", parser: parser).events == [SSEEvent(data: "12\n34")])
        #expect(try self.parse("data: 12345\n\ndata: 12345\n\n", parser: parser).events.count == 2)
        #expect(throws: SSEParserError.eventTooLarge) { try self.parse("data: 12\ndata: 345\n\n", parser: parser) }
        #expect(throws: SSEParserError.eventTooLarge) { try self.parse("data: 123456\n\n", parser: parser) }
        // Checked as each data line arrives, not at dispatch.
        let chunks = ["data: 123\n", "data: 45\n"].map { Array($0.utf8) }
        #expect(throws: SSEParserError.eventTooLarge) { try self.parse(chunks: chunks, parser: parser) }
    }

    // MARK: - UTF-8

    @Test func invalidUTF8IsReplaced() throws {
        let bytes: [UInt8] = Array("data: ".utf8) + [0xFF, 0x61, 0xE2, 0x82, 0x0A] + Array("event: ".utf8) + [0xC0, 0x0A, 0x0A]
        let expected = [SSEEvent(event: "\u{FFFD}", data: "\u{FFFD}a\u{FFFD}")]
        #expect(try self.parse(chunks: [bytes]).events == expected)
        #expect(try self.parse(chunks: bytes.map { [$0] }).events == expected)
    }

    @Test func multiByteSequencesSplitAcrossChunks() throws {
        let bytes = Array("event: ünïcødé\ndata: 😀漢字é\nid: ∂\n\n".utf8)
        let expected = [SSEEvent(event: "ünïcødé", data: "😀漢字é", id: "∂")]
        for cut in 0...bytes.count {
            #expect(try self.parse(chunks: [Array(bytes[..<cut]), Array(bytes[cut...])]).events == expected)
        }
    }

    // MARK: - Realistic streams

    @Test func openAIChatCompletionStream() throws {
        let stream = """
            data: {"id":"chatcmpl-1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}

            data: {"id":"chatcmpl-1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"Hello"},"finish_reason":null}]}

            : keep-alive

            data: {"id":"chatcmpl-1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":" world\\n"},"finish_reason":null}]}

            data: {"id":"chatcmpl-1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}

            data: [DONE]


            """
        let parsed = try self.parse(stream)
        #expect(parsed.events.count == 5)
        #expect(parsed.events.allSatisfy { $0.type == "message" && $0.id == nil })
        #expect(parsed.events[1].data == #"{"id":"chatcmpl-1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"Hello"},"finish_reason":null}]}"#)
        #expect(parsed.events[2].data.contains(#"" world\n""#))
        #expect(parsed.events.last == SSEEvent(data: "[DONE]"))
        #expect(parsed.comments == ["keep-alive"])
        #expect(!parsed.truncated)

        let bytes = Array(stream.utf8)
        let chunked = stride(from: 0, to: bytes.count, by: 7).map { Array(bytes[$0..<min($0 + 7, bytes.count)]) }
        #expect(try self.parse(chunks: chunked) == parsed)
    }

    @Test func langGraphStream() throws {
        let stream = [
            #"event: metadata\#r\#ndata: {"run_id":"1ef","attempt":1}\#r\#n\#r\#n"#,
            #"event: values\#r\#ndata: {"messages":[{"type":"human","content":"hi"}]}\#r\#n\#r\#n"#,
            ": heartbeat\r\n\r\n",
            #"event: values\#r\#ndata: {"messages":[{"type":"human","content":"hi"},\#r\#n"#,
            #"data: {"type":"ai","content":"hello"}]}\#r\#nid: 1ef-2\#r\#n\#r\#n"#,
            "event: end\r\ndata: null\r\n\r\n",
        ].joined()
        let parsed = try self.parse(stream)
        #expect(parsed.events == [
            SSEEvent(event: "metadata", data: #"{"run_id":"1ef","attempt":1}"#),
            SSEEvent(event: "values", data: #"{"messages":[{"type":"human","content":"hi"}]}"#),
            SSEEvent(
                event: "values",
                data: "{\"messages\":[{\"type\":\"human\",\"content\":\"hi\"},\n{\"type\":\"ai\",\"content\":\"hello\"}]}",
                id: "1ef-2"
            ),
            SSEEvent(event: "end", data: "null", id: "1ef-2"),
        ])
        #expect(parsed.comments == ["heartbeat"])
        #expect(!parsed.truncated)
    }

    // MARK: - Round trip

    private func parse(_ buffer: ByteBuffer) throws -> Parsed {
        var parser = SSEParser()
        var parsed = Parsed()
        try buffer.withUnsafeReadableBytes { raw in
            try parser.feed(raw, onComment: { parsed.comments.append($0) }, onEvent: { parsed.events.append($0) })
        }
        parsed.truncated = parser.finish()
        return parsed
    }

    @Test func roundTripsThroughTheEncoder() throws {
        let events = [
            SSEEvent(data: "hello"),
            SSEEvent(data: ""),
            SSEEvent(data: "a\nb\n\nc"),
            SSEEvent(data: " leading space"),
            SSEEvent(data: "😀 漢字 é \u{0}"),
            SSEEvent(data: "trailing\n"),
            SSEEvent(event: "update", data: #"{"x":1}"#, id: "7"),
            SSEEvent(event: "next", data: "x", id: "7"),
        ]
        var buffer = ByteBuffer()
        for event in events {
            SSEEncoder.writeEvent(event.data, event: event.event, id: event.id, into: &buffer)
        }
        SSEEncoder.writeComment("ping", into: &buffer)
        let parsed = try self.parse(buffer)
        #expect(parsed.events == events)
        #expect(parsed.comments == ["ping"])
        #expect(!parsed.truncated)
    }

    @Test func encoderLineBreaksComeBackAsLF() throws {
        var buffer = ByteBuffer()
        SSEEncoder.writeEvent("a\r\nb\rc", event: "bad\nname", into: &buffer)
        #expect(try self.parse(buffer).events == [SSEEvent(event: "bad name", data: "a\nb\nc")])
    }

    @Test func roundTripsHandoffEvents() throws {
        var buffer = ByteBuffer()
        HandoffEvents.writeContent("Hi \"you\"\n😀", into: &buffer)
        buffer.writeStaticString(HandoffEvents.ping)
        HandoffEvents.writeError("upstream reset", reason: "upstream_reset", into: &buffer)
        HandoffEvents.writeDone(into: &buffer)
        let parsed = try self.parse(buffer)
        #expect(parsed.events == [
            SSEEvent(data: #"{"content":"Hi \"you\"\n😀"}"#),
            SSEEvent(event: "error", data: #"{"error":"upstream reset","reason":"upstream_reset"}"#),
            SSEEvent(data: "[DONE]"),
        ])
        #expect(parsed.comments == ["ping"])
    }
}
