import HandoffHTTP2
import NIOCore
import NIOEmbedded
import NIOHPACK
import NIOHTTP2
import Testing

/// Ours, not NIOHTTP2's.
private typealias ClientErrorCode = HandoffHTTP2.HTTP2ErrorCode

/// ``HTTP2ClientProtocol`` against an independent HTTP/2 server (NIOHTTP2's, on an embedded
/// channel, answering with frames the test writes), and against raw frames for the faults no
/// well-behaved server sends.
@Suite struct HTTP2ClientProtocolTests {
    /// Our client and NIOHTTP2's server, wired back to back.
    final class Pair {
        var client: HTTP2ClientProtocol
        let server: EmbeddedChannel
        var events: [String] = []
        var bodies: [UInt32: String] = [:]
        var serverFrames: [HTTP2Frame] = []

        init(streamWindow: Int = 65_535, maxHeaderListSize: Int = 16_384, serverSettings: HTTP2Settings = nioDefaultSettings) throws {
            self.client = HTTP2ClientProtocol(streamWindowSize: streamWindow, connectionWindowSize: streamWindow * 4, maxHeaderListSize: maxHeaderListSize)
            self.server = EmbeddedChannel(handler: NIOHTTP2Handler(mode: .server, initialSettings: serverSettings))
            self.client.start()
            try self.server.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
            try self.pump()
        }

        /// Moves bytes both ways until neither side has more to say.
        func pump() throws {
            var moved = true
            while moved {
                moved = false
                if self.client.hasOutput {
                    try self.server.writeInbound(self.client.takeOutput())
                    moved = true
                }
                while let frame = try self.server.readInbound(as: HTTP2Frame.self) { self.serverFrames.append(frame) }
                while let out = try self.server.readOutbound(as: IOData.self) {
                    guard case .byteBuffer(let bytes) = out else { continue }
                    self.client.receive(bytes)
                    moved = true
                }
                while let event = try self.client.nextEvent() { self.record(event) }
            }
        }

        func record(_ event: HTTP2ClientEvent) {
            switch event {
            case .settings(let max): self.events.append("settings \(max.map(String.init) ?? "-")")
            case .headers(let id, let headers, let end):
                self.events.append("headers \(id) \(headers.first(name: ":status") ?? "?")\(end ? " end" : "")")
            case .data(let id, let bytes, let end):
                self.bodies[id, default: ""] += String(buffer: bytes)
                if end { self.events.append("data \(id) end") }
            case .streamClosed(let id, let reason): self.events.append("closed \(id) \(reason.map { "\($0)" } ?? "ok")")
            case .goAway(let last, let code, _): self.events.append("goaway \(last) \(code)")
            case .pong: self.events.append("pong")
            }
        }

        /// The server writes `payload` on stream `id`.
        func serverSends(_ id: Int, _ payload: HTTP2Frame.FramePayload) throws {
            try self.server.writeOutbound(HTTP2Frame(streamID: HTTP2StreamID(id), payload: payload))
            try self.pump()
        }

        func open(_ id: UInt32, body: String, headers: [(String, String)] = []) throws {
            var block = ByteBuffer()
            let fields = [(":method", "POST"), (":scheme", "https"), (":authority", "example"), (":path", "/v1/chat"), ("content-length", "\(body.utf8.count)")] + headers
            for (name, value) in fields { HPACKRequestEncoder.write(name: name, value: value, into: &block) }
            self.client.openStream(id, headerBlock: block, body: ByteBuffer(string: body))
            try self.pump()
        }

        /// What the server received on stream `id`: its header fields and its body.
        func request(_ id: Int) -> (headers: HPACKHeaders?, body: String, ended: Bool) {
            var headers: HPACKHeaders?
            var body = ""
            var ended = false
            for frame in self.serverFrames where frame.streamID == HTTP2StreamID(id) {
                switch frame.payload {
                case .headers(let h):
                    headers = h.headers
                    ended = ended || h.endStream
                case .data(let d):
                    if case .byteBuffer(let b) = d.data { body += String(buffer: b) }
                    ended = ended || d.endStream
                default: break
                }
            }
            return (headers, body, ended)
        }
    }

    @Test func aRequestAndItsStreamedResponse() throws {
        let pair = try Pair(serverSettings: [HTTP2Setting(parameter: .maxConcurrentStreams, value: 50)])
        #expect(pair.events == ["settings 50"])
        try pair.open(1, body: #"{"prompt":"x"}"#, headers: [("authorization", "Bearer k")])
        let request = pair.request(1)
        #expect(request.headers?.first(name: ":path") == "/v1/chat")
        #expect(request.headers?.first(name: "authorization") == "Bearer k")
        #expect(request.body == #"{"prompt":"x"}"#)
        #expect(request.ended)
        try pair.serverSends(1, .headers(.init(headers: [":status": "200", "content-type": "text/event-stream"])))
        for index in 1...3 {
            try pair.serverSends(1, .data(.init(data: .byteBuffer(ByteBuffer(string: "data: \(index)\n\n")))))
        }
        try pair.serverSends(1, .data(.init(data: .byteBuffer(ByteBuffer()), endStream: true)))
        #expect(pair.events == ["settings 50", "headers 1 200", "data 1 end", "closed 1 ok"])
        #expect(pair.bodies[1] == "data: 1\n\ndata: 2\n\ndata: 3\n\n")
        #expect(pair.client.openStreams == 0)
    }

    @Test func aBodyLargerThanTheWindowsWaitsForThemAndArrivesWhole() throws {
        let pair = try Pair()
        let body = String((0..<150_000).map { Character(Unicode.Scalar(UInt8(0x61 + $0 % 26))) })
        try pair.open(1, body: body)
        // 65 535 bytes (the initial windows) in frames of at most 16 384, then nothing.
        #expect(pair.request(1).body.utf8.count == 65_535)
        #expect(!pair.request(1).ended)
        try pair.serverSends(0, .windowUpdate(windowSizeIncrement: 100_000))
        #expect(pair.request(1).body.utf8.count == 65_535)
        try pair.serverSends(1, .windowUpdate(windowSizeIncrement: 50_000))
        #expect(pair.request(1).body.utf8.count == 115_535)
        try pair.serverSends(1, .windowUpdate(windowSizeIncrement: 50_000))
        #expect(pair.request(1).body == body)
        #expect(pair.request(1).ended)
        let sizes = pair.serverFrames.compactMap { frame -> Int? in
            if case .data(let d) = frame.payload { return d.data.readableBytes }
            return nil
        }
        #expect(sizes.allSatisfy { $0 <= 16_384 })
    }

    @Test func aResponseHeadLargerThanAFrameArrivesInContinuations() throws {
        let pair = try Pair(maxHeaderListSize: 100_000)
        try pair.open(1, body: "x")
        // Raw frames: NIOHTTP2's server does not split a header block.
        let big = String(repeating: "b", count: 40_000)
        var bytes = ByteBuffer()
        bytes.writeHTTP2Headers(streamID: 1, block: Self.headerBlock([(":status", "200"), ("x-big", big)]), endStream: true, maxFrameSize: 16_384)
        #expect(bytes.readableBytes > 2 * 16_384)  // HEADERS and two CONTINUATIONs
        pair.client.receive(bytes)
        #expect(try Self.events(&pair.client) == ["headers 1 end", "closed 1 ok"])
    }

    @Test func aResetEndsOnlyItsStream() throws {
        let pair = try Pair()
        try pair.open(1, body: "a")
        try pair.open(3, body: "b")
        try pair.serverSends(1, .rstStream(.refusedStream))
        try pair.serverSends(3, .headers(.init(headers: [":status": "200"], endStream: true)))
        #expect(pair.events.suffix(3) == ["closed 1 REFUSED_STREAM", "headers 3 200 end", "closed 3 ok"])
    }

    @Test func aGoAwayRefusesTheStreamsAboveItsLastID() throws {
        let pair = try Pair()
        for id: UInt32 in [1, 3, 5] { try pair.open(id, body: "x") }
        try pair.serverSends(0, .goAway(lastStreamID: 1, errorCode: .noError, opaqueData: nil))
        #expect(pair.events.suffix(3) == ["goaway 1 NO_ERROR", "closed 3 REFUSED_STREAM", "closed 5 REFUSED_STREAM"])
        try pair.serverSends(1, .headers(.init(headers: [":status": "200"], endStream: true)))
        #expect(pair.events.suffix(2) == ["headers 1 200 end", "closed 1 ok"])
    }

    @Test func aPingIsAnsweredAndOursGetsItsPong() throws {
        let pair = try Pair()
        pair.client.ping()
        try pair.pump()
        #expect(pair.events.last == "pong")
        // The server's PING: the client answers with the same data.
        var ping = ByteBuffer()
        ping.writeHTTP2Ping(0xfeed, ack: false)
        pair.client.receive(ping)
        #expect(try pair.client.nextEvent() == nil)
        var out = HTTP2FrameReader()
        out.append(pair.client.takeOutput())
        let answer = try #require(try out.next())
        #expect(answer.type == HTTP2FrameType.ping && answer.has(HTTP2Flags.ack))
        #expect(answer.payload.getInteger(at: answer.payload.readerIndex, as: UInt64.self) == 0xfeed)
    }

    @Test func moreBodyThanTheDeclaredLengthIsThatStreamsError() throws {
        let pair = try Pair()
        try pair.open(1, body: "x")
        try pair.open(3, body: "y")
        // Raw frames: NIOHTTP2's server would refuse to send them.
        let block = Self.headerBlock([(":status", "200"), ("content-length", "1")])
        var bytes = ByteBuffer()
        bytes.writeHTTP2Headers(streamID: 1, block: block, endStream: false, maxFrameSize: 16_384)
        bytes.writeHTTP2Data(streamID: 1, ByteBuffer(string: "too long"), endStream: false)
        pair.client.receive(bytes)
        #expect(try Self.events(&pair.client) == ["headers 1", "closed 1 PROTOCOL_ERROR"])
        #expect(try Self.written(&pair.client) == ["RST_STREAM 1 PROTOCOL_ERROR"])
        #expect(pair.client.openStreams == 1)
    }

    @Test func aPausedStreamGetsNoWindowBackAndAnOverrunIsItsError() throws {
        let pair = try Pair(streamWindow: 1000)
        try pair.open(1, body: "x")
        var bytes = ByteBuffer()
        bytes.writeHTTP2Headers(streamID: 1, block: Self.headerBlock([(":status", "200")]), endStream: false, maxFrameSize: 16_384)
        bytes.writeHTTP2Data(streamID: 1, ByteBuffer(repeating: 0x61, count: 600), endStream: false)
        pair.client.receive(bytes)
        _ = try Self.events(&pair.client)
        // Past half the window while reading: 600 bytes given back.
        #expect(try Self.written(&pair.client) == ["WINDOW_UPDATE 1 600"])
        pair.client.setReading(false, on: 1)
        bytes.clear()
        bytes.writeHTTP2Data(streamID: 1, ByteBuffer(repeating: 0x61, count: 1000), endStream: false)
        pair.client.receive(bytes)
        _ = try Self.events(&pair.client)
        #expect(try Self.written(&pair.client) == [])
        pair.client.setReading(true, on: 1)
        #expect(try Self.written(&pair.client) == ["WINDOW_UPDATE 1 1000"])
        pair.client.setReading(false, on: 1)
        bytes.clear()
        bytes.writeHTTP2Data(streamID: 1, ByteBuffer(repeating: 0x61, count: 1001), endStream: false)
        pair.client.receive(bytes)
        #expect(try Self.events(&pair.client) == ["closed 1 FLOW_CONTROL_ERROR"])
    }

    @Test func beforeOurSettingsAreAcknowledgedTheDefaultWindowIsAllowed() throws {
        var client = HTTP2ClientProtocol(streamWindowSize: 1000, connectionWindowSize: 1 << 20, maxHeaderListSize: 16_384)
        client.start()
        client.openStream(1, headerBlock: Self.headerBlock([(":method", "POST")]), body: ByteBuffer())
        _ = client.takeOutput()
        client.setReading(false, on: 1)
        var bytes = ByteBuffer()
        bytes.writeHTTP2Settings([])
        bytes.writeHTTP2Headers(streamID: 1, block: Self.headerBlock([(":status", "200")]), endStream: false, maxFrameSize: 16_384)
        bytes.writeHTTP2Data(streamID: 1, ByteBuffer(repeating: 0x61, count: 5000), endStream: false)
        client.receive(bytes)
        // The server may not have seen our 1 000-byte window yet: 5 000 bytes are within its 65 535.
        #expect(try Self.events(&client) == ["settings", "headers 1", "data 1"])
        bytes.clear()
        bytes.writeHTTP2Settings([], ack: true)
        bytes.writeHTTP2Data(streamID: 1, ByteBuffer(repeating: 0x61, count: 1), endStream: false)
        client.receive(bytes)
        // From the acknowledgement on, our window holds: 5 001 bytes unread overrun 1 000.
        #expect(try Self.events(&client) == ["closed 1 FLOW_CONTROL_ERROR"])
    }

    /// A client with one stream open (1) and the server's SETTINGS taken, for raw-frame tests.
    static func opened(body: ByteBuffer = ByteBuffer(), settings: [(UInt16, UInt32)] = []) throws -> HTTP2ClientProtocol {
        var client = HTTP2ClientProtocol(streamWindowSize: 65_535, connectionWindowSize: 1 << 20, maxHeaderListSize: 16_384)
        client.start()
        var bytes = ByteBuffer()
        bytes.writeHTTP2Settings(settings)
        client.receive(bytes)
        _ = try Self.events(&client)
        _ = client.takeOutput()  // the preface, our SETTINGS and the acknowledgement
        client.openStream(1, headerBlock: Self.headerBlock([(":method", "POST")]), body: body)
        return client
    }

    /// A padded frame's pad length byte, 5 bytes of priority, the content, then the padding.
    static func padded(_ type: UInt8, stream: UInt32, flags: UInt8 = 0, priority: Bool = false, _ content: ByteBuffer, padding: Int) -> ByteBuffer {
        var bytes = ByteBuffer()
        let length = 1 + (priority ? 5 : 0) + content.readableBytes + padding
        bytes.writeHTTP2FrameHeader(length: length, type: type, flags: flags | HTTP2Flags.padded | (priority ? HTTP2Flags.priority : 0), streamID: stream)
        bytes.writeInteger(UInt8(padding))
        if priority { bytes.writeBytes([0, 0, 0, 0, 16]) }
        bytes.writeImmutableBuffer(content)
        bytes.writeBytes([UInt8](repeating: 0, count: padding))
        return bytes
    }

    @Test func paddingAndPriorityAreStrippedAndContentLengthCountsOnlyContent() throws {
        var client = try Self.opened()
        client.receive(Self.padded(HTTP2FrameType.headers, stream: 1, flags: HTTP2Flags.endHeaders, priority: true, Self.headerBlock([(":status", "200"), ("content-length", "5")]), padding: 3))
        client.receive(Self.padded(HTTP2FrameType.data, stream: 1, flags: HTTP2Flags.endStream, ByteBuffer(string: "hello"), padding: 255))
        var delivered = ""
        var seen: [String] = []
        while let event = try client.nextEvent() {
            switch event {
            case .headers(_, let headers, _): seen.append("headers \(headers.first(name: ":status") ?? "?")")
            case .data(_, let bytes, let end):
                delivered += String(buffer: bytes)
                seen.append("data\(end ? " end" : "")")
            case .streamClosed(_, let reason): seen.append("closed \(reason.map { "\($0)" } ?? "ok")")
            default: break
            }
        }
        #expect(seen == ["headers 200", "data end", "closed ok"])
        #expect(delivered == "hello")
    }

    @Test func paddingCountsForTheWindow() throws {
        var client = try Self.opened()
        client.receive(Self.padded(HTTP2FrameType.headers, stream: 1, flags: HTTP2Flags.endHeaders, Self.headerBlock([(":status", "200")]), padding: 0))
        // 4 frames of 9 000 bytes and 255 of padding: 37 024 flow-controlled bytes, past half of
        // the 65 535-byte window at the fourth; 36 000 bytes delivered.
        for _ in 0..<4 { client.receive(Self.padded(HTTP2FrameType.data, stream: 1, ByteBuffer(repeating: 0x61, count: 9_000), padding: 255)) }
        var delivered = 0
        while let event = try client.nextEvent() {
            if case .data(_, let bytes, _) = event { delivered += bytes.readableBytes }
        }
        #expect(delivered == 36_000)
        #expect(try Self.written(&client).filter { $0.hasPrefix("WINDOW_UPDATE 1") } == ["WINDOW_UPDATE 1 37024"])
    }

    @Test func aSmallerInitialWindowHoldsABodyBackUntilTheServerOpensIt() throws {
        var client = try Self.opened(body: ByteBuffer(repeating: 0x62, count: 30_000), settings: [(HTTP2SettingID.initialWindowSize, 10_000)])
        #expect(try Self.written(&client).filter { $0.hasPrefix("DATA") } == ["DATA 1 10000"])
        // The window shrinks below what was sent (to −5 000), then grows by 10 000: 5 000 go.
        var bytes = ByteBuffer()
        bytes.writeHTTP2Settings([(HTTP2SettingID.initialWindowSize, 5_000)])
        bytes.writeHTTP2WindowUpdate(streamID: 1, increment: 10_000)
        client.receive(bytes)
        _ = try Self.events(&client)
        #expect(try Self.written(&client).filter { $0.hasPrefix("DATA") } == ["DATA 1 5000"])
        bytes.clear()
        bytes.writeHTTP2WindowUpdate(streamID: 1, increment: 100_000)
        client.receive(bytes)
        _ = try Self.events(&client)
        #expect(try Self.written(&client).filter { $0.hasPrefix("DATA") } == ["DATA 1 15000 end"])
    }

    @Test func aLargerMaxFrameSizeMakesFewerFrames() throws {
        var client = try Self.opened(body: ByteBuffer(repeating: 0x62, count: 40_000), settings: [(HTTP2SettingID.maxFrameSize, 32_768), (HTTP2SettingID.initialWindowSize, 1 << 20)])
        // The connection's window (65 535) is more than the body: two frames of at most 32 768.
        #expect(try Self.written(&client).filter { $0.hasPrefix("DATA") } == ["DATA 1 32768", "DATA 1 7232 end"])
    }

    @Test func aStreamWindowPastTwoToTheThirtyOneIsThatStreamsError() throws {
        // No body: the stream's whole 65 535-byte window is unused, so 2^31 − 1 more overflows it.
        var client = try Self.opened()
        _ = client.takeOutput()
        var bytes = ByteBuffer()
        bytes.writeHTTP2WindowUpdate(streamID: 1, increment: Int(Int32.max))
        client.receive(bytes)
        #expect(try Self.events(&client) == ["closed 1 FLOW_CONTROL_ERROR"])
        #expect(try Self.written(&client) == ["RST_STREAM 1 FLOW_CONTROL_ERROR"])
    }

    @Test func aServerThatBreaksTheProtocolGetsAGoAway() throws {
        let cases: [(String, (inout ByteBuffer) -> Void, ClientErrorCode)] = [
            ("no SETTINGS first", { $0.writeHTTP2Ping(1, ack: false) }, .protocolError),
            ("PUSH_PROMISE", { $0.writeHTTP2Settings([]); $0.writeHTTP2FrameHeader(length: 4, type: HTTP2FrameType.pushPromise, flags: 4, streamID: 1); $0.writeInteger(UInt32(2)) }, .protocolError),
            ("DATA on a stream never opened", { $0.writeHTTP2Settings([]); $0.writeHTTP2Data(streamID: 9, ByteBuffer(string: "x"), endStream: false) }, .protocolError),
            ("a bad header block", { $0.writeHTTP2Settings([]); $0.writeHTTP2Headers(streamID: 1, block: ByteBuffer(bytes: [0xff, 0xff, 0xff, 0xff, 0xff, 0xff]), endStream: false, maxFrameSize: 16_384) }, .compressionError),
            ("an interrupted header block", { $0.writeHTTP2Settings([]); $0.writeHTTP2FrameHeader(length: 1, type: HTTP2FrameType.headers, streamID: 1); $0.writeInteger(UInt8(0x88)); $0.writeHTTP2Ping(1, ack: false) }, .protocolError),
            ("SETTINGS_ENABLE_PUSH 1 from a server", { $0.writeHTTP2Settings([(HTTP2SettingID.enablePush, 1)]) }, .protocolError),
            ("SETTINGS of 5 bytes", { $0.writeHTTP2FrameHeader(length: 5, type: HTTP2FrameType.settings, streamID: 0); $0.writeBytes([0, 3, 0, 0, 1]) }, .frameSizeError),
            ("a window past 2^31", { $0.writeHTTP2Settings([]); $0.writeHTTP2WindowUpdate(streamID: 0, increment: Int(Int32.max)) }, .flowControlError),
            ("a frame too long", { $0.writeHTTP2Settings([]); $0.writeHTTP2Data(streamID: 1, ByteBuffer(repeating: 0, count: 20_000), endStream: false) }, .frameSizeError),
        ]
        for (name, write, code) in cases {
            var client = HTTP2ClientProtocol(streamWindowSize: 65_535, connectionWindowSize: 65_535, maxHeaderListSize: 16_384)
            client.start()
            client.openStream(1, headerBlock: Self.headerBlock([(":method", "POST")]), body: ByteBuffer())
            _ = client.takeOutput()
            var bytes = ByteBuffer()
            write(&bytes)
            client.receive(bytes)
            let error = #expect(throws: HTTP2ConnectionError.self, "\(name)") { _ = try Self.events(&client) }
            #expect(error?.code == code, "\(name)")
            #expect(try Self.written(&client).last?.hasPrefix("GOAWAY 0 \(code)") == true, "\(name)")
        }
    }

    /// A server that asks for acknowledgements (PING, SETTINGS) faster than our output is taken
    /// (sent) would make us buffer answers without end: past a thousand waiting, the connection
    /// ends with ENHANCE_YOUR_CALM. Taking the output starts the count again.
    @Test func aServerAskingForMoreAnswersThanItReadsIsToldToCalmDown() throws {
        var calm = try Self.opened()
        _ = calm.takeOutput()  // the stream's HEADERS
        for round in 0..<3 {
            var bytes = ByteBuffer()
            for ping in 0..<(HTTP2ClientProtocol.maxQueuedAcknowledgements / 2) { bytes.writeHTTP2Ping(UInt64(ping), ack: false) }
            bytes.writeHTTP2Settings([])
            calm.receive(bytes)
            #expect(try Self.events(&calm).count == 1, "round \(round): the SETTINGS")
            #expect(try Self.written(&calm).count == HTTP2ClientProtocol.maxQueuedAcknowledgements / 2, "round \(round): every PING answered")
        }

        var flooded = try Self.opened()
        var bytes = ByteBuffer()
        for ping in 0..<HTTP2ClientProtocol.maxQueuedAcknowledgements { bytes.writeHTTP2Ping(UInt64(ping), ack: false) }
        bytes.writeHTTP2Settings([])
        flooded.receive(bytes)
        let error = #expect(throws: HTTP2ConnectionError.self) { _ = try Self.events(&flooded) }
        #expect(error?.code == .enhanceYourCalm)
        #expect(try Self.written(&flooded).last?.hasPrefix("GOAWAY 0 ENHANCE_YOUR_CALM") == true)
    }

    // MARK: Helpers

    static func headerBlock(_ fields: [(String, String)]) -> ByteBuffer {
        var block = ByteBuffer()
        for (name, value) in fields { HPACKRequestEncoder.write(name: name, value: value, into: &block) }
        return block
    }

    static func events(_ client: inout HTTP2ClientProtocol) throws -> [String] {
        var seen: [String] = []
        while let event = try client.nextEvent() {
            switch event {
            case .headers(let id, _, let end): seen.append("headers \(id)\(end ? " end" : "")")
            case .data(let id, _, let end): seen.append("data \(id)\(end ? " end" : "")")
            case .streamClosed(let id, let reason): seen.append("closed \(id) \(reason.map { "\($0)" } ?? "ok")")
            case .settings: seen.append("settings")
            default: seen.append("\(event)")
            }
        }
        return seen
    }

    /// The frames the client wrote (DATA with its length), settings acknowledgements left out.
    static func written(_ client: inout HTTP2ClientProtocol) throws -> [String] {
        var reader = HTTP2FrameReader(maxFrameSize: 16_777_215)
        reader.append(client.takeOutput())
        var frames: [String] = []
        while var frame = try reader.next() {
            switch frame.type {
            case HTTP2FrameType.data:
                frames.append("DATA \(frame.streamID) \(frame.payload.readableBytes)\(frame.has(HTTP2Flags.endStream) ? " end" : "")")
            case HTTP2FrameType.rstStream:
                frames.append("RST_STREAM \(frame.streamID) \(ClientErrorCode(frame.payload.readInteger(as: UInt32.self)!))")
            case HTTP2FrameType.windowUpdate:
                frames.append("WINDOW_UPDATE \(frame.streamID) \(frame.payload.readInteger(as: UInt32.self)!)")
            case HTTP2FrameType.goAway:
                let last = frame.payload.readInteger(as: UInt32.self)!
                frames.append("GOAWAY \(last) \(ClientErrorCode(frame.payload.readInteger(as: UInt32.self)!))")
            case HTTP2FrameType.settings where frame.has(HTTP2Flags.ack):
                continue
            default:
                frames.append("type \(frame.type)")
            }
        }
        return frames
    }
}
