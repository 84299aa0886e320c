public import NIOCore

/// The frame types and flags of RFC 9113 §6 a client needs.
public enum HTTP2FrameType {
    public static let data: UInt8 = 0x0
    public static let headers: UInt8 = 0x1
    public static let priority: UInt8 = 0x2
    public static let rstStream: UInt8 = 0x3
    public static let settings: UInt8 = 0x4
    public static let pushPromise: UInt8 = 0x5
    public static let ping: UInt8 = 0x6
    public static let goAway: UInt8 = 0x7
    public static let windowUpdate: UInt8 = 0x8
    public static let continuation: UInt8 = 0x9
}

public enum HTTP2Flags {
    /// DATA, HEADERS.
    public static let endStream: UInt8 = 0x1
    /// SETTINGS, PING.
    public static let ack: UInt8 = 0x1
    /// HEADERS, CONTINUATION.
    public static let endHeaders: UInt8 = 0x4
    /// DATA, HEADERS.
    public static let padded: UInt8 = 0x8
    /// HEADERS.
    public static let priority: UInt8 = 0x20
}

/// The SETTINGS parameters (RFC 9113 §6.5.2) a client sends or reads; the header table size
/// (0x1) is neither, since request blocks never use the dynamic table.
public enum HTTP2SettingID {
    public static let enablePush: UInt16 = 0x2
    public static let maxConcurrentStreams: UInt16 = 0x3
    public static let initialWindowSize: UInt16 = 0x4
    public static let maxFrameSize: UInt16 = 0x5
    public static let maxHeaderListSize: UInt16 = 0x6
}

/// One frame as read off the wire: its header's fields and its payload (a slice, not a copy).
public struct HTTP2RawFrame {
    public var type: UInt8
    public var flags: UInt8
    public var streamID: UInt32
    public var payload: ByteBuffer

    public init(type: UInt8, flags: UInt8, streamID: UInt32, payload: ByteBuffer) {
        self.type = type
        self.flags = flags
        self.streamID = streamID
        self.payload = payload
    }

    public func has(_ flag: UInt8) -> Bool { self.flags & flag != 0 }
}

/// The 24 bytes a client sends first (RFC 9113 §3.4).
public let http2ClientPreface: StaticString = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

/// The largest frame payload before SETTINGS_MAX_FRAME_SIZE raises it.
public let http2DefaultMaxFrameSize = 16_384

/// The largest flow-control window (2^31 − 1).
public let http2MaxWindowSize = Int(Int32.max)
