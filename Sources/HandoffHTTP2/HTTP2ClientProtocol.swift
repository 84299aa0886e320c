public import NIOCore
public import NIOHPACK

/// What the server said, frame by frame, as ``HTTP2ClientProtocol`` hands it on.
public enum HTTP2ClientEvent {
    /// The server's SETTINGS (already acknowledged), with its MAX_CONCURRENT_STREAMS if it set one.
    case settings(maxConcurrentStreams: Int?)
    /// A header block for an open stream: informational, the response head, or trailers.
    case headers(streamID: UInt32, HPACKHeaders, endStream: Bool)
    /// Body bytes for an open stream (padding removed; flow control already accounted).
    case data(streamID: UInt32, ByteBuffer, endStream: Bool)
    /// The stream is over: after its last frame both ways (`reason` nil), or reset by either
    /// side or refused by a GOAWAY (`reason` is the code).
    case streamClosed(streamID: UInt32, reason: HTTP2ErrorCode?)
    /// GOAWAY: streams above `lastStreamID` were never processed (each is reported closed
    /// with REFUSED_STREAM right after this event).
    case goAway(lastStreamID: UInt32, code: HTTP2ErrorCode, debug: String)
    /// The answer to our PING.
    case pong
}

/// The client side of one HTTP/2 connection (RFC 9113) as a pure state machine: bytes in,
/// events out, and the bytes to send (``takeOutput()``) — the preface, requests, and what the
/// protocol answers by itself (SETTINGS and PING acknowledgements, WINDOW_UPDATE, RST_STREAM
/// for a stream's own error, GOAWAY for a connection error).
///
/// It does what a streaming client needs and no more: no server push (disabled in our
/// SETTINGS), no dynamic table on the request side (``HPACKRequestEncoder``), priorities
/// ignored. Flow control is whole: request bodies wait for the server's windows, and the
/// receive windows are given back only while a stream reads (``setReading(_:on:)``), so a paused
/// stream stops its server at the window's end; a server that overruns a window is an error.
public struct HTTP2ClientProtocol {
    private struct Stream {
        /// What the server lets us send on it.
        var sendWindow: Int
        /// Request body bytes not sent yet; `nil` once END_STREAM went out.
        var body: ByteBuffer?
        var receiveWindow: HTTP2InboundWindow
        var finalHeadersSeen = false
        var contentLength: Int?
        var receivedBytes = 0
    }

    private var reader = HTTP2FrameReader()
    private var decoder: HPACKDecoder
    private var output = ByteBuffer()
    private var events = CircularBuffer<HTTP2ClientEvent>(initialCapacity: 4)
    private var streams: [UInt32: Stream] = [:]
    /// Streams whose body waits for window, in the order they asked.
    private var blocked = CircularBuffer<UInt32>()
    /// A header block still waiting for its CONTINUATION frames.
    private var headerBlock: (streamID: UInt32, endStream: Bool, block: ByteBuffer)?
    private var connectionWindow: HTTP2InboundWindow
    private var connectionSendWindow = 65_535
    private var peerInitialWindow = 65_535
    private var sawSettings = false
    /// The server acknowledged our SETTINGS (our stream window applies from then on).
    private var settingsAcknowledged = false
    private var highestStreamID: UInt32 = 0
    /// PING and SETTINGS acknowledgements written since the output was last taken.
    private var queuedAcknowledgements = 0
    private var failure: HTTP2ConnectionError?
    private let streamWindowSize: Int
    private let maxHeaderListSize: Int

    /// The server's SETTINGS_MAX_FRAME_SIZE.
    public private(set) var peerMaxFrameSize = http2DefaultMaxFrameSize

    /// The window every connection starts with (RFC 9113 §6.9.2).
    public static let initialWindowSize = 65_535

    /// More acknowledgements than this waiting to be sent means the server asks (PING,
    /// SETTINGS) faster than it reads what we send: the connection ends with ENHANCE_YOUR_CALM
    /// instead of buffering answers without end. The owner takes the output only while the
    /// socket takes writes, so what waits here is what the server has not read.
    public static let maxQueuedAcknowledgements = 1_000

    /// - Parameters:
    ///   - streamWindowSize: each stream's receive window (our SETTINGS_INITIAL_WINDOW_SIZE).
    ///   - connectionWindowSize: the connection's receive window, raised to this at once.
    ///   - maxHeaderListSize: the largest response header list taken (SETTINGS_MAX_HEADER_LIST_SIZE).
    public init(streamWindowSize: Int, connectionWindowSize: Int, maxHeaderListSize: Int) {
        self.streamWindowSize = min(http2MaxWindowSize, streamWindowSize)
        self.connectionWindow = HTTP2InboundWindow(size: min(http2MaxWindowSize, max(Self.initialWindowSize, connectionWindowSize)))
        self.maxHeaderListSize = maxHeaderListSize
        self.decoder = HPACKDecoder(allocator: ByteBufferAllocator(), maxDynamicTableSize: HPACKDecoder.maxDynamicTableSize, maxHeaderListSize: maxHeaderListSize)
    }

    // MARK: Sending

    /// The connection preface, our SETTINGS, and the connection window's raise.
    public mutating func start() {
        self.output.writeStaticString(http2ClientPreface)
        self.output.writeHTTP2Settings([
            (HTTP2SettingID.enablePush, 0),
            (HTTP2SettingID.initialWindowSize, UInt32(self.streamWindowSize)),
            (HTTP2SettingID.maxHeaderListSize, UInt32(self.maxHeaderListSize)),
        ])
        let raise = self.connectionWindow.size - Self.initialWindowSize
        if raise > 0 { self.output.writeHTTP2WindowUpdate(streamID: 0, increment: raise) }
    }

    /// Opens stream `id` (odd, above every earlier one) with a request's header block
    /// (``HPACKRequestEncoder``) and body; the body goes out as the server's windows allow.
    public mutating func openStream(_ id: UInt32, headerBlock: ByteBuffer, body: ByteBuffer) {
        precondition(id & 1 == 1 && id > self.highestStreamID, "stream ids rise and are odd")
        self.highestStreamID = id
        let hasBody = body.readableBytes > 0
        self.output.writeHTTP2Headers(streamID: id, block: headerBlock, endStream: !hasBody, maxFrameSize: self.peerMaxFrameSize)
        self.streams[id] = Stream(
            sendWindow: self.peerInitialWindow,
            body: hasBody ? body : nil,
            receiveWindow: HTTP2InboundWindow(size: self.streamWindowSize)
        )
        // A body that waits only for its own stream's window holds no one else up, so a new one
        // goes as far as the windows let it at once.
        if hasBody, !self.sendBody(of: id) { self.blocked.append(id) }
    }

    /// Resets stream `id` with `code`; returns whether it was open (it is closed now).
    @discardableResult
    public mutating func resetStream(_ id: UInt32, code: HTTP2ErrorCode) -> Bool {
        guard self.streams.removeValue(forKey: id) != nil else { return false }
        self.output.writeHTTP2RstStream(streamID: id, code: code)
        return true
    }

    /// Stream `id`'s reader paused or resumed: its window is given back only while it reads.
    public mutating func setReading(_ reading: Bool, on id: UInt32) {
        guard let increment = self.streams[id]?.receiveWindow.setReading(reading) else { return }
        self.output.writeHTTP2WindowUpdate(streamID: id, increment: increment)
    }

    public mutating func ping() {
        self.output.writeHTTP2Ping(1, ack: false)
    }

    /// A GOAWAY of our own, before we close the connection.
    public mutating func goAway(_ code: HTTP2ErrorCode, _ detail: String) {
        self.output.writeHTTP2GoAway(lastStreamID: 0, code: code, debug: detail)
    }

    public var hasOutput: Bool { self.output.readableBytes > 0 }

    /// The bytes to send, in order.
    public mutating func takeOutput() -> ByteBuffer {
        defer {
            self.output = ByteBuffer()
            self.queuedAcknowledgements = 0
        }
        return self.output
    }

    /// Open streams (sent or received frames pending either way).
    public var openStreams: Int { self.streams.count }

    /// Sends what the windows allow of stream `id`'s body; returns whether it is all sent.
    private mutating func sendBody(of id: UInt32) -> Bool {
        guard var stream = self.streams[id] else { return true }
        guard var body = stream.body else { return true }
        while body.readableBytes > 0 {
            let length = min(body.readableBytes, stream.sendWindow, self.connectionSendWindow, self.peerMaxFrameSize)
            guard length > 0 else { break }
            let piece = body.readSlice(length: length)!
            stream.sendWindow -= length
            self.connectionSendWindow -= length
            self.output.writeHTTP2Data(streamID: id, piece, endStream: body.readableBytes == 0)
        }
        let done = body.readableBytes == 0
        stream.body = done ? nil : body
        self.streams[id] = stream
        return done
    }

    /// Windows opened: the waiting bodies go on, first come first.
    private mutating func sendBlockedBodies() {
        var stillBlocked = CircularBuffer<UInt32>()
        while let id = self.blocked.popFirst() {
            guard self.streams[id]?.body != nil else { continue }  // closed or sent meanwhile
            if self.connectionSendWindow <= 0 || !self.sendBody(of: id) { stillBlocked.append(id) }
        }
        self.blocked = stillBlocked
    }

    // MARK: Receiving

    /// Bytes read from the connection; ``nextEvent()`` hands out what they say.
    public mutating func receive(_ bytes: ByteBuffer) {
        self.reader.append(bytes)
    }

    /// The next event from the bytes received so far, or `nil` until more arrive. A connection
    /// error has written a GOAWAY to the output; the connection must send it and close.
    public mutating func nextEvent() throws(HTTP2ConnectionError) -> HTTP2ClientEvent? {
        if let failure = self.failure { throw failure }
        do {
            while self.events.isEmpty {
                guard let frame = try self.reader.next() else { return nil }
                try self.process(frame)
            }
        } catch {
            self.failure = error
            self.goAway(error.code, error.detail)
            throw error
        }
        return self.events.removeFirst()
    }

    private mutating func process(_ frame: HTTP2RawFrame) throws(HTTP2ConnectionError) {
        if let pending = self.headerBlock, frame.type != HTTP2FrameType.continuation || frame.streamID != pending.streamID {
            throw HTTP2ConnectionError(.protocolError, "a header block of stream \(pending.streamID) was interrupted")
        }
        if !self.sawSettings, frame.type != HTTP2FrameType.settings || frame.has(HTTP2Flags.ack) {
            throw HTTP2ConnectionError(.protocolError, "the server's first frame was not SETTINGS")
        }
        switch frame.type {
        case HTTP2FrameType.data: try self.receivedData(frame)
        case HTTP2FrameType.headers: try self.receivedHeaders(frame)
        case HTTP2FrameType.continuation: try self.receivedContinuation(frame)
        case HTTP2FrameType.rstStream: try self.receivedReset(frame)
        case HTTP2FrameType.settings: try self.receivedSettings(frame)
        case HTTP2FrameType.ping: try self.receivedPing(frame)
        case HTTP2FrameType.goAway: try self.receivedGoAway(frame)
        case HTTP2FrameType.windowUpdate: try self.receivedWindowUpdate(frame)
        case HTTP2FrameType.pushPromise:
            throw HTTP2ConnectionError(.protocolError, "PUSH_PROMISE, though push is disabled")
        case HTTP2FrameType.priority:
            guard frame.streamID != 0 else { throw HTTP2ConnectionError(.protocolError, "PRIORITY on stream 0") }
        default:
            break  // unknown frame types are ignored (RFC 9113 §4.1)
        }
    }

    /// Frames for a stream the client never opened are a connection error (the server opens
    /// none: push is off).
    private func checkOpened(_ id: UInt32, _ kind: String) throws(HTTP2ConnectionError) {
        guard id != 0 else { throw HTTP2ConnectionError(.protocolError, "\(kind) on stream 0") }
        guard id & 1 == 1, id <= self.highestStreamID else {
            throw HTTP2ConnectionError(.protocolError, "\(kind) on stream \(id), which the client never opened")
        }
    }

    /// Strips the padding of a DATA or HEADERS frame.
    private static func unpadded(_ frame: HTTP2RawFrame) throws(HTTP2ConnectionError) -> ByteBuffer {
        var payload = frame.payload
        guard frame.has(HTTP2Flags.padded) else { return payload }
        guard let padding = payload.readInteger(as: UInt8.self), Int(padding) <= payload.readableBytes else {
            throw HTTP2ConnectionError(.protocolError, "padding longer than its frame on stream \(frame.streamID)")
        }
        return payload.readSlice(length: payload.readableBytes - Int(padding))!
    }

    private mutating func receivedData(_ frame: HTTP2RawFrame) throws(HTTP2ConnectionError) {
        let id = frame.streamID
        try self.checkOpened(id, "DATA")
        let flowLength = frame.payload.readableBytes
        guard !self.connectionWindow.wouldOverflow(flowLength) else {
            throw HTTP2ConnectionError(.flowControlError, "DATA past the connection's window")
        }
        if let increment = self.connectionWindow.received(flowLength) {
            self.output.writeHTTP2WindowUpdate(streamID: 0, increment: increment)
        }
        let data = try Self.unpadded(frame)
        guard var stream = self.streams[id] else { return }  // closed: it only counted for the connection
        let endStream = frame.has(HTTP2Flags.endStream)
        guard stream.finalHeadersSeen else { return self.streamError(id, .protocolError) }
        // Until the server acknowledges our SETTINGS it may use the default window, which can be larger.
        let limit = self.settingsAcknowledged ? self.streamWindowSize : max(self.streamWindowSize, Self.initialWindowSize)
        guard stream.receiveWindow.unacknowledged + flowLength <= limit else {
            return self.streamError(id, .flowControlError)
        }
        stream.receivedBytes += data.readableBytes
        if let declared = stream.contentLength, stream.receivedBytes > declared || endStream && stream.receivedBytes != declared {
            return self.streamError(id, .protocolError)
        }
        if !endStream, let increment = stream.receiveWindow.received(flowLength) {
            self.output.writeHTTP2WindowUpdate(streamID: id, increment: increment)
        }
        self.streams[id] = stream
        self.events.append(.data(streamID: id, data, endStream: endStream))
        if endStream { self.remoteEnded(id) }
    }

    private mutating func receivedHeaders(_ frame: HTTP2RawFrame) throws(HTTP2ConnectionError) {
        try self.checkOpened(frame.streamID, "HEADERS")
        var fragment = try Self.unpadded(frame)
        if frame.has(HTTP2Flags.priority) {
            guard fragment.readableBytes >= 5 else { throw HTTP2ConnectionError(.frameSizeError, "HEADERS too short for its priority") }
            fragment.moveReaderIndex(forwardBy: 5)
        }
        let endStream = frame.has(HTTP2Flags.endStream)
        if frame.has(HTTP2Flags.endHeaders) {
            try self.headerBlockEnded(frame.streamID, endStream: endStream, block: fragment)
        } else {
            self.headerBlock = (frame.streamID, endStream, fragment)
        }
    }

    private mutating func receivedContinuation(_ frame: HTTP2RawFrame) throws(HTTP2ConnectionError) {
        guard let pending = self.headerBlock else {
            throw HTTP2ConnectionError(.protocolError, "CONTINUATION without HEADERS on stream \(frame.streamID)")
        }
        var block = pending.block
        guard block.readableBytes + frame.payload.readableBytes <= 4 * self.maxHeaderListSize else {
            throw HTTP2ConnectionError(.enhanceYourCalm, "a header block longer than \(4 * self.maxHeaderListSize) bytes")
        }
        block.writeImmutableBuffer(frame.payload)
        if frame.has(HTTP2Flags.endHeaders) {
            self.headerBlock = nil
            try self.headerBlockEnded(pending.streamID, endStream: pending.endStream, block: block)
        } else {
            self.headerBlock = (pending.streamID, pending.endStream, block)
        }
    }

    /// A whole header block: decoded in any case (the HPACK table is the connection's), then
    /// handed on if its stream is open.
    private mutating func headerBlockEnded(_ id: UInt32, endStream: Bool, block: ByteBuffer) throws(HTTP2ConnectionError) {
        var block = block
        let headers: HPACKHeaders
        do {
            headers = try self.decoder.decodeHeaders(from: &block)
        } catch {
            throw HTTP2ConnectionError(.compressionError, "stream \(id)'s header block: \(error)")
        }
        guard var stream = self.streams[id] else { return }
        if !stream.finalHeadersSeen {
            let status = headers.first(name: ":status").flatMap { Int($0) }
            if let status, (100..<200).contains(status) {
                // Informational: the response head is still to come.
                guard !endStream else { return self.streamError(id, .protocolError) }
                self.events.append(.headers(streamID: id, headers, endStream: false))
                return
            }
            stream.finalHeadersSeen = true
            if let length = headers.first(name: "content-length") {
                guard let declared = Int(length), declared >= 0 else { return self.streamError(id, .protocolError) }
                stream.contentLength = declared
            }
        } else if !endStream {
            return self.streamError(id, .protocolError)  // trailers end the stream
        }
        if endStream, let declared = stream.contentLength, stream.receivedBytes != declared {
            return self.streamError(id, .protocolError)
        }
        self.streams[id] = stream
        self.events.append(.headers(streamID: id, headers, endStream: endStream))
        if endStream { self.remoteEnded(id) }
    }

    /// The server ended stream `id`. Our END_STREAM went out with the body, so the stream is
    /// closed; a body still waiting for window is abandoned (RST_STREAM(NO_ERROR), RFC 9113 §8.1).
    private mutating func remoteEnded(_ id: UInt32) {
        guard let stream = self.streams.removeValue(forKey: id) else { return }
        if stream.body != nil { self.output.writeHTTP2RstStream(streamID: id, code: .noError) }
        self.events.append(.streamClosed(streamID: id, reason: nil))
    }

    /// A stream's own error: it is reset, and the connection carries on.
    private mutating func streamError(_ id: UInt32, _ code: HTTP2ErrorCode) {
        guard self.resetStream(id, code: code) else { return }
        self.events.append(.streamClosed(streamID: id, reason: code))
    }

    private mutating func receivedReset(_ frame: HTTP2RawFrame) throws(HTTP2ConnectionError) {
        try self.checkOpened(frame.streamID, "RST_STREAM")
        var payload = frame.payload
        guard payload.readableBytes == 4, let code = payload.readInteger(as: UInt32.self) else {
            throw HTTP2ConnectionError(.frameSizeError, "RST_STREAM of \(frame.payload.readableBytes) bytes")
        }
        guard self.streams.removeValue(forKey: frame.streamID) != nil else { return }
        self.events.append(.streamClosed(streamID: frame.streamID, reason: HTTP2ErrorCode(code)))
    }

    private mutating func receivedSettings(_ frame: HTTP2RawFrame) throws(HTTP2ConnectionError) {
        guard frame.streamID == 0 else { throw HTTP2ConnectionError(.protocolError, "SETTINGS on stream \(frame.streamID)") }
        var payload = frame.payload
        if frame.has(HTTP2Flags.ack) {
            guard payload.readableBytes == 0 else { throw HTTP2ConnectionError(.frameSizeError, "a SETTINGS acknowledgement with a payload") }
            self.settingsAcknowledged = true
            return
        }
        guard payload.readableBytes % 6 == 0 else { throw HTTP2ConnectionError(.frameSizeError, "SETTINGS of \(payload.readableBytes) bytes") }
        var maxConcurrentStreams: Int?
        var windowGrew = false
        while let parameter = payload.readInteger(as: UInt16.self), let value = payload.readInteger(as: UInt32.self) {
            switch parameter {
            case HTTP2SettingID.enablePush:
                // A server may only say 0 (RFC 9113 §6.5.2).
                guard value == 0 else { throw HTTP2ConnectionError(.protocolError, "SETTINGS_ENABLE_PUSH \(value) from a server") }
            case HTTP2SettingID.maxConcurrentStreams:
                maxConcurrentStreams = Int(value)
            case HTTP2SettingID.initialWindowSize:
                guard value <= UInt32(http2MaxWindowSize) else {
                    throw HTTP2ConnectionError(.flowControlError, "SETTINGS_INITIAL_WINDOW_SIZE \(value)")
                }
                let delta = Int(value) - self.peerInitialWindow
                self.peerInitialWindow = Int(value)
                for id in self.streams.keys {
                    self.streams[id]!.sendWindow += delta
                    guard self.streams[id]!.sendWindow <= http2MaxWindowSize else {
                        throw HTTP2ConnectionError(.flowControlError, "stream \(id)'s window past 2^31 − 1")
                    }
                }
                windowGrew = windowGrew || delta > 0
            case HTTP2SettingID.maxFrameSize:
                guard (http2DefaultMaxFrameSize...16_777_215).contains(Int(value)) else {
                    throw HTTP2ConnectionError(.protocolError, "SETTINGS_MAX_FRAME_SIZE \(value)")
                }
                self.peerMaxFrameSize = Int(value)
            default:
                break  // the header table size does not matter to a block without the dynamic table
            }
        }
        self.sawSettings = true
        self.output.writeHTTP2Settings([], ack: true)
        try self.acknowledgementQueued()
        self.events.append(.settings(maxConcurrentStreams: maxConcurrentStreams))
        if windowGrew { self.sendBlockedBodies() }
    }

    private mutating func receivedPing(_ frame: HTTP2RawFrame) throws(HTTP2ConnectionError) {
        guard frame.streamID == 0 else { throw HTTP2ConnectionError(.protocolError, "PING on stream \(frame.streamID)") }
        var payload = frame.payload
        guard payload.readableBytes == 8, let data = payload.readInteger(as: UInt64.self) else {
            throw HTTP2ConnectionError(.frameSizeError, "PING of \(frame.payload.readableBytes) bytes")
        }
        if frame.has(HTTP2Flags.ack) {
            self.events.append(.pong)
        } else {
            self.output.writeHTTP2Ping(data, ack: true)
            try self.acknowledgementQueued()
        }
    }

    private mutating func acknowledgementQueued() throws(HTTP2ConnectionError) {
        self.queuedAcknowledgements += 1
        guard self.queuedAcknowledgements <= Self.maxQueuedAcknowledgements else {
            throw HTTP2ConnectionError(.enhanceYourCalm, "more than \(Self.maxQueuedAcknowledgements) PING and SETTINGS acknowledgements waiting to be sent")
        }
    }

    private mutating func receivedGoAway(_ frame: HTTP2RawFrame) throws(HTTP2ConnectionError) {
        guard frame.streamID == 0 else { throw HTTP2ConnectionError(.protocolError, "GOAWAY on stream \(frame.streamID)") }
        var payload = frame.payload
        guard let last = payload.readInteger(as: UInt32.self), let code = payload.readInteger(as: UInt32.self) else {
            throw HTTP2ConnectionError(.frameSizeError, "GOAWAY of \(frame.payload.readableBytes) bytes")
        }
        let lastStreamID = last & 0x7fff_ffff
        let debug = String(decoding: payload.readableBytesView.prefix(256), as: UTF8.self)
        self.events.append(.goAway(lastStreamID: lastStreamID, code: HTTP2ErrorCode(code), debug: debug))
        for id in self.streams.keys.sorted() where id > lastStreamID {
            self.streams.removeValue(forKey: id)
            self.events.append(.streamClosed(streamID: id, reason: .refusedStream))
        }
    }

    private mutating func receivedWindowUpdate(_ frame: HTTP2RawFrame) throws(HTTP2ConnectionError) {
        var payload = frame.payload
        guard payload.readableBytes == 4, let raw = payload.readInteger(as: UInt32.self) else {
            throw HTTP2ConnectionError(.frameSizeError, "WINDOW_UPDATE of \(frame.payload.readableBytes) bytes")
        }
        let increment = Int(raw & 0x7fff_ffff)
        let id = frame.streamID
        if id == 0 {
            guard increment > 0 else { throw HTTP2ConnectionError(.protocolError, "a WINDOW_UPDATE of 0 for the connection") }
            self.connectionSendWindow += increment
            guard self.connectionSendWindow <= http2MaxWindowSize else {
                throw HTTP2ConnectionError(.flowControlError, "the connection's window past 2^31 − 1")
            }
            if !self.blocked.isEmpty { self.sendBlockedBodies() }
            return
        }
        try self.checkOpened(id, "WINDOW_UPDATE")
        guard var stream = self.streams[id] else { return }
        guard increment > 0 else { return self.streamError(id, .protocolError) }
        stream.sendWindow += increment
        guard stream.sendWindow <= http2MaxWindowSize else { return self.streamError(id, .flowControlError) }
        let waiting = stream.body != nil
        self.streams[id] = stream
        if waiting { self.sendBlockedBodies() }
    }
}
