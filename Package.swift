// swift-tools-version:6.0
import PackageDescription

// One set of settings for every target: Swift 6 language mode (strict concurrency) everywhere.
let settings: [SwiftSetting] = [
    .swiftLanguageMode(.v6),
]

let argumentParser: Target.Dependency = .product(name: "ArgumentParser", package: "swift-argument-parser")
let logging: Target.Dependency = .product(name: "Logging", package: "swift-log")
let lifecycle: Target.Dependency = .product(name: "ServiceLifecycle", package: "swift-service-lifecycle")
let crypto: Target.Dependency = .product(name: "Crypto", package: "swift-crypto")
let grdb: Target.Dependency = .product(name: "GRDB", package: "GRDB.swift")
let hummingbird: Target.Dependency = .product(name: "Hummingbird", package: "hummingbird")
let metrics: Target.Dependency = .product(name: "Metrics", package: "swift-metrics")
let prometheus: Target.Dependency = .product(name: "Prometheus", package: "swift-prometheus")
let deque: Target.Dependency = .product(name: "DequeModule", package: "swift-collections")
let ordered: Target.Dependency = .product(name: "OrderedCollections", package: "swift-collections")

/// A service is a library (the logic tests import) plus a tiny executable that runs it.
func service(_ name: String, executable: String, dependencies: [Target.Dependency]) -> [Target] {
    [
        .target(name: "Ferry\(name)", dependencies: dependencies, path: "Services/\(name)/Sources", swiftSettings: settings),
        .executableTarget(name: executable, dependencies: [.target(name: "Ferry\(name)"), "FerryService", "FerryTrust", logging, lifecycle, argumentParser],
                          path: "Services/\(name)/Main", swiftSettings: settings),
    ]
}

let serviceBase: [Target.Dependency] = ["ZeroMQ", "FerryProtocol", "FerryService", logging, metrics]

let package = Package(
    name: "Ferry",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "ferry", targets: ["ferry"]),
        .executable(name: "ferry-origin", targets: ["ferry-origin"]),
        .executable(name: "ferry-intake", targets: ["ferry-intake"]),
        .executable(name: "ferry-matcher", targets: ["ferry-matcher"]),
        .executable(name: "ferry-broker", targets: ["ferry-broker"]),
        .executable(name: "ferry-relay", targets: ["ferry-relay"]),
        .executable(name: "ferry-reporter", targets: ["ferry-reporter"]),
        .executable(name: "ferry-agent", targets: ["ferry-agent"]),
        .executable(name: "ferry-eventbus", targets: ["ferry-eventbus"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.6.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.0.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.0.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.5.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.0.0"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.21.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.65.0"),
        .package(url: "https://github.com/apple/swift-collections", from: "1.1.0"),
    ],
    targets: [
        // Shared/: what more than one service needs.
        .systemLibrary(name: "CZeroMQ", path: "Shared/CZeroMQ", providers: [.apt(["libzmq3-dev"])]),
        .target(name: "ZeroMQ", dependencies: ["CZeroMQ"], path: "Shared/ZeroMQ", swiftSettings: settings),
        .target(name: "FerryProtocol", dependencies: [], path: "Shared/FerryProtocol", swiftSettings: settings),
        .target(name: "FerryTrust", dependencies: ["FerryProtocol", crypto], path: "Shared/FerryTrust", swiftSettings: settings),
        .target(name: "FerryContent", dependencies: ["FerryProtocol", "FerryTrust", crypto], path: "Shared/FerryContent", swiftSettings: settings),
        .target(name: "FerryLink", dependencies: ["FerryProtocol", "ZeroMQ"], path: "Shared/FerryLink", swiftSettings: settings),
        .target(name: "FerryService", dependencies: ["ZeroMQ", "FerryProtocol", "FerryTrust", argumentParser, logging, lifecycle, metrics, prometheus, hummingbird,
                                                  .product(name: "AsyncHTTPClient", package: "async-http-client"),
                                                  .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOHTTP1", package: "swift-nio")],
                path: "Shared/FerryService", swiftSettings: settings),
    ]
    + service("Origin", executable: "ferry-origin", dependencies: serviceBase + ["FerryContent", "FerryTrust", hummingbird, grdb, lifecycle, deque, ordered])
    + service("Intake", executable: "ferry-intake", dependencies: serviceBase)
    + service("Matcher", executable: "ferry-matcher", dependencies: serviceBase)
    + service("Broker", executable: "ferry-broker", dependencies: serviceBase + ["FerryTrust", ordered])
    + service("Relay", executable: "ferry-relay", dependencies: serviceBase + ["FerryLink", "FerryTrust"])
    + service("Reporter", executable: "ferry-reporter", dependencies: serviceBase + ["FerryTrust", grdb])
    + service("Agent", executable: "ferry-agent", dependencies: serviceBase + ["FerryContent", "FerryLink", "FerryTrust", "FerryRelay"])
    + service("EventBus", executable: "ferry-eventbus", dependencies: serviceBase)
    + [
        .executableTarget(name: "ferry", dependencies: serviceBase + ["FerryContent", "FerryTrust", argumentParser],
                          path: "Services/CLI", swiftSettings: settings),
        .testTarget(name: "ZeroMQTests", dependencies: ["ZeroMQ"], swiftSettings: settings),
        .testTarget(name: "FerryProtocolTests", dependencies: ["FerryProtocol"], exclude: ["Corpus"], swiftSettings: settings),
        .testTarget(name: "FerryContentTests", dependencies: ["FerryContent", "FerryTrust"], swiftSettings: settings),
        .testTarget(name: "FerryLinkTests", dependencies: ["FerryLink"], swiftSettings: settings),
        .testTarget(name: "FerryTrustTests", dependencies: ["FerryTrust", "FerryProtocol", crypto], swiftSettings: settings),
        .testTarget(name: "ServiceLogicTests", dependencies: ["FerryMatcher", "FerryBroker", "FerryIntake", "FerryReporter", "FerryAgent", "FerryRelay", "FerryOrigin", "FerryContent", "FerryLink", "FerryProtocol", "FerryService", "FerryTrust", "ZeroMQ"],
                    swiftSettings: settings),
        .testTarget(name: "IntegrationTests", dependencies: ["ZeroMQ", "FerryProtocol", "FerryContent", "FerryLink", "FerryTrust", "FerryService"], exclude: ["status_page.py"],
                    swiftSettings: settings),
    ]
)
