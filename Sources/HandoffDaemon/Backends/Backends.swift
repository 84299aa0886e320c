import Logging
import NIOCore

/// The configured upstream backends and their transports, built once at start.
final class Backends: Sendable {
    let openAI: (backend: OpenAIBackend, transport: any UpstreamTransport)?
    let langGraph: [String: (profile: LangGraphProfile, transport: any UpstreamTransport)]
    let defaultLangGraphProfile: String?

    init(configuration: DaemonConfiguration, eventLoops: [any EventLoop], logger: Logger) throws {
        if let openAI = configuration.openAI {
            self.openAI = (openAI, try Self.transport(for: openAI.upstream, eventLoops: eventLoops, logger: logger))
        } else {
            self.openAI = nil
        }
        var profiles: [String: (LangGraphProfile, any UpstreamTransport)] = [:]
        for (name, profile) in configuration.langGraph?.profiles ?? [:] {
            profiles[name] = (profile, try Self.transport(for: profile.upstream, eventLoops: eventLoops, logger: logger))
        }
        self.langGraph = profiles
        self.defaultLangGraphProfile = configuration.langGraph?.defaultProfile
    }

    static func transport(for settings: UpstreamSettings, eventLoops: [any EventLoop], logger: Logger) throws -> any UpstreamTransport {
        switch settings.httpVersion {
        case .http2: try HTTP2UpstreamTransport(settings: settings, eventLoops: eventLoops, logger: logger)
        case .http1: try HTTP1UpstreamTransport(settings: settings)
        }
    }

    /// Descriptors one more stream on `backend` opens (its own upstream connection or none).
    func descriptorsPerStream(_ backend: BackendKind, profile: String?) -> Int {
        switch backend {
        case .mock, .channel: 0
        case .openai: self.openAI?.transport.descriptorsPerStream ?? 0
        case .langgraph: (profile ?? self.defaultLangGraphProfile).flatMap { self.langGraph[$0]?.transport.descriptorsPerStream } ?? 0
        }
    }

    /// Open upstream connections across every transport.
    var openConnections: Int {
        (self.openAI?.transport.openConnections ?? 0) + self.langGraph.values.reduce(0) { $0 + $1.transport.openConnections }
    }

    func shutdown() async {
        await self.openAI?.transport.shutdown()
        for entry in self.langGraph.values { await entry.transport.shutdown() }
    }
}
