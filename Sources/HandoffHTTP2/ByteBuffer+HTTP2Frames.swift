public import NIOCore

/// Writers of the frames a client sends (RFC 9113 §6).
extension ByteBuffer {
    public mutating func writeHTTP2FrameHeader(length: Int, type: UInt8, flags: UInt8 = 0, streamID: UInt32) {
        self.writeInteger(UInt16(truncatingIfNeeded: length >> 8))
        self.writeInteger(UInt8(truncatingIfNeeded: length))
        self.writeInteger(type)
        self.writeInteger(flags)
        self.writeInteger(streamID & 0x7fff_ffff)
    }

    /// SETTINGS with `settings` (id, value), or its acknowledgement when empty and `ack`.
    public mutating func writeHTTP2Settings(_ settings: [(UInt16, UInt32)], ack: Bool = false) {
        self.writeHTTP2FrameHeader(length: settings.count * 6, type: HTTP2FrameType.settings, flags: ack ? HTTP2Flags.ack : 0, streamID: 0)
        for (id, value) in settings {
            self.writeInteger(id)
            self.writeInteger(value)
        }
    }

    public mutating func writeHTTP2Ping(_ data: UInt64, ack: Bool) {
        self.writeHTTP2FrameHeader(length: 8, type: HTTP2FrameType.ping, flags: ack ? HTTP2Flags.ack : 0, streamID: 0)
        self.writeInteger(data)
    }

    public mutating func writeHTTP2WindowUpdate(streamID: UInt32, increment: Int) {
        self.writeHTTP2FrameHeader(length: 4, type: HTTP2FrameType.windowUpdate, streamID: streamID)
        self.writeInteger(UInt32(increment) & 0x7fff_ffff)
    }

    public mutating func writeHTTP2RstStream(streamID: UInt32, code: HTTP2ErrorCode) {
        self.writeHTTP2FrameHeader(length: 4, type: HTTP2FrameType.rstStream, streamID: streamID)
        self.writeInteger(code.code)
    }

    public mutating func writeHTTP2GoAway(lastStreamID: UInt32, code: HTTP2ErrorCode, debug: String) {
        let detail = debug.utf8.prefix(256)
        self.writeHTTP2FrameHeader(length: 8 + detail.count, type: HTTP2FrameType.goAway, streamID: 0)
        self.writeInteger(lastStreamID & 0x7fff_ffff)
        self.writeInteger(code.code)
        self.writeBytes(detail)
    }

    /// HEADERS, then CONTINUATION frames if `block` is longer than `maxFrameSize`.
    public mutating func writeHTTP2Headers(streamID: UInt32, block: ByteBuffer, endStream: Bool, maxFrameSize: Int) {
        var rest = block
        var type = HTTP2FrameType.headers
        repeat {
            let piece = rest.readSlice(length: min(rest.readableBytes, maxFrameSize))!
            var flags: UInt8 = rest.readableBytes == 0 ? HTTP2Flags.endHeaders : 0
            if endStream, type == HTTP2FrameType.headers { flags |= HTTP2Flags.endStream }
            self.writeHTTP2FrameHeader(length: piece.readableBytes, type: type, flags: flags, streamID: streamID)
            self.writeImmutableBuffer(piece)
            type = HTTP2FrameType.continuation
        } while rest.readableBytes > 0
    }

    public mutating func writeHTTP2Data(streamID: UInt32, _ data: ByteBuffer, endStream: Bool) {
        self.writeHTTP2FrameHeader(length: data.readableBytes, type: HTTP2FrameType.data, flags: endStream ? HTTP2Flags.endStream : 0, streamID: streamID)
        self.writeImmutableBuffer(data)
    }
}
