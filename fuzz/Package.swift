// swift-tools-version:6.1
// libFuzzer targets (`make fuzz`, not part of `make test`): built with `--sanitize=fuzzer`
// (and address) against the project's own libraries.
import PackageDescription

let asLibrary: [SwiftSetting] = [.unsafeFlags(["-parse-as-library"])]

let package = Package(
    name: "socket-handoff-fuzz",
    dependencies: [.package(name: "socket-handoff", path: "..")],
    targets: [
        .executableTarget(
            name: "fuzz-handoff-request",
            dependencies: [.product(name: "HandoffRequest", package: "socket-handoff")],
            swiftSettings: asLibrary
        ),
        .executableTarget(
            name: "fuzz-json-reader",
            dependencies: [.product(name: "HandoffJSON", package: "socket-handoff")],
            swiftSettings: asLibrary
        ),
        .executableTarget(
            name: "fuzz-sse-parser",
            dependencies: [.product(name: "HandoffSSE", package: "socket-handoff")],
            swiftSettings: asLibrary
        ),
        .executableTarget(
            name: "fuzz-handoff-record",
            dependencies: [.product(name: "HandoffWire", package: "socket-handoff")],
            swiftSettings: asLibrary
        ),
    ]
)
