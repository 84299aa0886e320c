// swift-tools-version:6.1
import PackageDescription

let strict: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("InternalImportsByDefault"),
]

// The per-event path (daemon, SSE, JSON, the Redis client of recorded streams) in release builds: no dynamic exclusivity checks
// (`swift_beginAccess` was ~3% of the daemon's CPU on the openai path). Debug builds, which
// the tests run, keep them, so a violation still traps there.
let hotPath: [SwiftSetting] = strict + [.unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release))]

let package = Package(
    name: "socket-handoff",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "handoffd", targets: ["handoffd"]),
        .executable(name: "handoff-mock-llm", targets: ["handoff-mock-llm"]),
        .executable(name: "handoff-bench", targets: ["handoff-bench"]),
        .executable(name: "handoff-exec", targets: ["handoff-exec"]),
        .library(name: "HandoffWire", targets: ["HandoffWire"]),
        .library(name: "HandoffSSE", targets: ["HandoffSSE"]),
        .library(name: "HandoffRequest", targets: ["HandoffRequest"]),
        .library(name: "HandoffJSON", targets: ["HandoffJSON"]),
        .library(name: "HandoffDaemon", targets: ["HandoffDaemon"]),
        .library(name: "HandoffRedis", targets: ["HandoffRedis"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-atomics", from: "1.3.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-nio-http2", from: "1.46.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-certificates", from: "1.21.1"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        .package(url: "https://github.com/apple/swift-asn1", from: "1.7.4"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.2.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "5.0.1"),
    ],
    targets: [
        // `CMSG_*`, `struct ucred` and packed `epoll_event`: what Swift cannot import directly.
        .target(name: "CHandoffShim"),

        // Syscalls, descriptor ownership, SEQPACKET + SCM_RIGHTS. No NIO: builds in seconds.
        .target(name: "HandoffWire", dependencies: ["CHandoffShim"], swiftSettings: strict),

        // Server-Sent Events encoding (and later parsing) on NIO's ByteBuffer.
        .target(
            name: "HandoffSSE",
            dependencies: [.product(name: "NIOCore", package: "swift-nio")],
            swiftSettings: hotPath
        ),

        // A strict pull reader for JSON on hot paths (upstream chunks), with no tree. No dependencies.
        .target(name: "HandoffJSON", swiftSettings: hotPath),

        // A small pipelined Redis client (RESP2/RESP3, pub/sub, TLS) on SwiftNIO: only what the daemon uses.
        .target(
            name: "HandoffRedis",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: hotPath
        ),

        // The handoff JSON: strict decoding, validation and attachments. No NIO.
        .target(name: "HandoffRequest", dependencies: ["HandoffWire", "HandoffJSON"], swiftSettings: strict),

        // The client side of HTTP/2 (framing, flow control, request header blocks) as pure code.
        .target(
            name: "HandoffHTTP2",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHPACK", package: "swift-nio-http2"),
            ],
            swiftSettings: hotPath
        ),

        // The daemon as a library: configuration, acceptor, streams, backends.
        .target(
            name: "HandoffDaemon",
            dependencies: [
                "HandoffRequest",
                "HandoffWire",
                "HandoffSSE",
                "HandoffJSON",
                "HandoffRedis",
                "HandoffHTTP2",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOHPACK", package: "swift-nio-http2"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Atomics", package: "swift-atomics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Yams", package: "Yams"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: hotPath
        ),

        .executableTarget(
            name: "handoffd",
            dependencies: [
                "HandoffDaemon",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Metrics", package: "swift-metrics"),
            ],
            swiftSettings: strict
        ),

        // Runs a program per handoff (the counterpart of the original fdrecv). No NIO.
        .target(name: "HandoffExec", dependencies: ["HandoffWire"], swiftSettings: strict),
        .executableTarget(
            name: "handoff-exec",
            dependencies: ["HandoffExec", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            swiftSettings: strict
        ),

        // The mock upstream: OpenAI- and LangGraph-compatible, HTTP/1.1, h2c, h2 over TLS.
        .target(
            name: "HandoffMockLLM",
            dependencies: [
                "HandoffSSE",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOHTTP2", package: "swift-nio-http2"),
                .product(name: "NIOHPACK", package: "swift-nio-http2"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "handoff-mock-llm",
            dependencies: [
                "HandoffMockLLM",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),

        // Plays Apache and the browser: client connections, handoffs exactly as the module sends
        // them, responses read and parsed. Used by the tests, the load generator and the
        // conformance runner.
        .target(
            name: "HandoffClientKit",
            dependencies: ["HandoffWire", "HandoffSSE"],
            swiftSettings: strict
        ),

        // The load generator and the conformance runner, as a library.
        .target(
            name: "HandoffBench",
            dependencies: [
                "HandoffWire",
                "HandoffSSE",
                "HandoffClientKit",
                "HandoffMockLLM",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
            ],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "handoff-bench",
            dependencies: [
                "HandoffBench",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),

        // Shared by every test target: socketpairs, temporary socket paths, blocking I/O off the pool.
        .target(
            name: "HandoffTestSupport",
            dependencies: ["HandoffWire", "HandoffClientKit"],
            swiftSettings: strict
        ),

        .testTarget(
            name: "HandoffWireTests",
            dependencies: ["HandoffWire", "HandoffClientKit", "HandoffTestSupport"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "HandoffRedisTests",
            dependencies: [
                "HandoffRedis",
                "HandoffTestSupport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "HandoffExecTests",
            dependencies: ["HandoffExec"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "HandoffJSONTests",
            dependencies: ["HandoffJSON", "HandoffTestSupport"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "HandoffBenchTests",
            dependencies: ["HandoffBench"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "HandoffHTTP2Tests",
            dependencies: [
                "HandoffHTTP2",
                "HandoffTestSupport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOHPACK", package: "swift-nio-http2"),
                .product(name: "NIOHTTP2", package: "swift-nio-http2"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "HandoffSSETests",
            dependencies: ["HandoffSSE", .product(name: "NIOCore", package: "swift-nio")],
            swiftSettings: strict
        ),
        .testTarget(
            name: "HandoffDaemonTests",
            dependencies: [
                "HandoffDaemon",
                "HandoffHTTP2",
                "HandoffRedis",
                "HandoffRequest",
                "HandoffWire",
                "HandoffClientKit",
                "HandoffTestSupport",
                "HandoffMockLLM",
                "HandoffSSE",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "MetricsTestKit", package: "swift-metrics"),
                .product(name: "NIOHPACK", package: "swift-nio-http2"),
            ],
            swiftSettings: strict
        ),
    ],
    swiftLanguageModes: [.v6]
)
