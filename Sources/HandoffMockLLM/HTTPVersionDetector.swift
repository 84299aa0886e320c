import NIOCore

/// Looks at the first bytes of a plaintext connection: the HTTP/2 connection preface means h2c
/// with prior knowledge, anything else HTTP/1.1. Then configures the pipeline and leaves.
final class HTTPVersionDetector: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer

    private static let preface = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)
    private var buffered: ByteBuffer?
    private let configure: (any Channel, Bool) -> EventLoopFuture<Void>
    private var decided = false

    /// `configure(channel, isHTTP2)` adds the protocol handlers after this one.
    init(configure: @escaping (any Channel, Bool) -> EventLoopFuture<Void>) {
        self.configure = configure
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var incoming = self.unwrapInboundIn(data)
        if self.buffered == nil {
            self.buffered = incoming
        } else {
            self.buffered!.writeBuffer(&incoming)
        }
        guard !self.decided, let buffered = self.buffered else { return }
        let count = min(buffered.readableBytes, Self.preface.count)
        let prefix = Array(buffered.readableBytesView.prefix(count))
        let isHTTP2: Bool
        if prefix == Array(Self.preface.prefix(count)) {
            guard count == Self.preface.count else { return }
            isHTTP2 = true
        } else {
            isHTTP2 = false
        }
        self.decided = true
        self.configure(context.channel, isHTTP2).assumeIsolated().whenComplete { _ in
            let bytes = self.buffered
            self.buffered = nil
            if let bytes {
                context.fireChannelRead(NIOAny(bytes))
                context.fireChannelReadComplete()
            }
            context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
        }
    }
}
