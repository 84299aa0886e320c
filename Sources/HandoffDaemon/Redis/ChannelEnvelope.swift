import HandoffJSON
import HandoffSSE
import NIOCore

/// A message published to a channel, read with the channel backend's framing.
///
/// A JSON object with any of `event`, `data`, `close` is an envelope:
///
///     {"event": "update", "data": "text or any JSON", "id": "42", "close": false}
///
/// `data` that is a string is sent as it is (line breaks become several `data:` lines);
/// any other JSON value is sent as its JSON text. `close: true` ends the stream after the
/// envelope's event (if it has `event` or `data`), with `data: [DONE]`. Anything else — plain
/// text, or JSON without those members — is sent whole as the event's data.
struct ChannelEnvelope: Sendable, Equatable {
    var event: String?
    /// The event's data; `nil` when the message only closes the channel.
    var data: String?
    var id: String?
    var close = false

    init(event: String? = nil, data: String?, id: String? = nil, close: Bool = false) {
        self.event = event
        self.data = data
        self.id = id
        self.close = close
    }

    init(_ payload: ByteBuffer) {
        if let envelope = Self.envelope(payload) {
            self = envelope
        } else {
            self.init(data: String(buffer: payload))
        }
    }

    private static func envelope(_ payload: ByteBuffer) -> ChannelEnvelope? {
        payload.withUnsafeReadableBytes { bytes -> ChannelEnvelope? in
            guard bytes.first == UInt8(ascii: "{") else { return nil }
            var reader = JSONReader(bytes)
            var result = ChannelEnvelope(data: nil)
            var framed = false
            do throws(JSONReaderError) {
                try reader.readObject { reader, key throws(JSONReaderError) in
                    if key == "event" {
                        framed = true
                        result.event = try reader.readString()
                    } else if key == "data" {
                        framed = true
                        if try reader.peek() == .string {
                            result.data = try reader.readString()
                        } else {
                            _ = try reader.peek()
                            let start = reader.offset
                            try reader.skipValue()
                            result.data = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<reader.offset]), as: UTF8.self)
                        }
                    } else if key == "close" {
                        framed = true
                        result.close = try reader.readBool()
                    } else if key == "id" {
                        result.id = try reader.peek() == .number ? String(try reader.readNumberText()) : try reader.readString()
                    } else {
                        try reader.skipValue()
                    }
                }
                try reader.finish()
            } catch {
                return nil
            }
            guard framed else { return nil }
            if result.data == nil, result.event != nil { result.data = "" }
            return result
        }
    }
}

/// One published message as delivered on one loop: parsed and encoded once, shared by every
/// client of the channel there (each write sends the same bytes).
final class ChannelMessage {
    let payload: ByteBuffer
    /// When it reached this loop (one clock read for every listener).
    let receivedAt = NIODeadline.now()

    init(payload: ByteBuffer) {
        self.payload = payload
    }

    lazy var envelope = ChannelEnvelope(self.payload)

    /// The SSE event's bytes; `nil` for a bare close.
    lazy var eventBytes: ByteBuffer? = {
        guard let data = self.envelope.data else { return nil }
        var buffer = ByteBufferAllocator().buffer(capacity: data.utf8.count + 32)
        SSEEncoder.writeEvent(data, event: self.envelope.event, id: self.envelope.id, into: &buffer)
        return buffer
    }()
}
