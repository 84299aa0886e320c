/// An HTTP/2 error code (RFC 9113 §7), as RST_STREAM and GOAWAY carry it.
public struct HTTP2ErrorCode: Hashable, Sendable, CustomStringConvertible {
    public let code: UInt32

    public init(_ code: UInt32) {
        self.code = code
    }

    public static let noError = Self(0x0)
    public static let protocolError = Self(0x1)
    public static let internalError = Self(0x2)
    public static let flowControlError = Self(0x3)
    public static let settingsTimeout = Self(0x4)
    public static let streamClosed = Self(0x5)
    public static let frameSizeError = Self(0x6)
    public static let refusedStream = Self(0x7)
    public static let cancel = Self(0x8)
    public static let compressionError = Self(0x9)
    public static let connectError = Self(0xa)
    public static let enhanceYourCalm = Self(0xb)
    public static let inadequateSecurity = Self(0xc)
    public static let http11Required = Self(0xd)

    private static let names = [
        "NO_ERROR", "PROTOCOL_ERROR", "INTERNAL_ERROR", "FLOW_CONTROL_ERROR", "SETTINGS_TIMEOUT",
        "STREAM_CLOSED", "FRAME_SIZE_ERROR", "REFUSED_STREAM", "CANCEL", "COMPRESSION_ERROR",
        "CONNECT_ERROR", "ENHANCE_YOUR_CALM", "INADEQUATE_SECURITY", "HTTP_1_1_REQUIRED",
    ]

    public var description: String {
        self.code < Self.names.count ? Self.names[Int(self.code)] : "0x\(String(self.code, radix: 16))"
    }
}

/// A connection error (RFC 9113 §5.4.1): the connection sent GOAWAY with `code` and must close.
public struct HTTP2ConnectionError: Error, Equatable, CustomStringConvertible {
    public let code: HTTP2ErrorCode
    public let detail: String

    public init(_ code: HTTP2ErrorCode, _ detail: String) {
        self.code = code
        self.detail = detail
    }

    public var description: String { "\(self.code): \(self.detail)" }
}
