// swift-tools-version:6.0
import PackageDescription

// libFuzzer harness for every decoder of bytes from the network. Scripts/fuzz builds and runs it.
//
// The root package exports no library products for its Shared/ modules, and a package can use
// another's modules only through its products, so this package compiles the same sources itself,
// through the `Shared` symlink (to ../../Shared). The targets below must keep the root
// Package.swift's module names and dependencies, since the sources import each other by module
// name; when they drift, this package stops building. Once the root package exports these modules
// as library products, a `.package(path: "../..")` dependency can replace all but the last target.

let settings: [SwiftSetting] = [.swiftLanguageMode(.v6)]
let crypto: Target.Dependency = .product(name: "Crypto", package: "swift-crypto")

let package = Package(
    name: "FerryFuzz",
    products: [.executable(name: "ferry-fuzz", targets: ["FerryFuzz"])],
    dependencies: [
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
    ],
    targets: [
        .systemLibrary(name: "CZeroMQ", path: "Shared/CZeroMQ", providers: [.apt(["libzmq3-dev"])]),
        .target(name: "ZeroMQ", dependencies: ["CZeroMQ"], path: "Shared/ZeroMQ", swiftSettings: settings),
        .target(name: "FerryProtocol", path: "Shared/FerryProtocol", swiftSettings: settings),
        .target(name: "FerryTrust", dependencies: ["FerryProtocol", crypto], path: "Shared/FerryTrust", swiftSettings: settings),
        .target(name: "FerryContent", dependencies: ["FerryProtocol", "FerryTrust", crypto], path: "Shared/FerryContent", swiftSettings: settings),
        .target(name: "FerryLink", dependencies: ["FerryProtocol", "ZeroMQ"], path: "Shared/FerryLink", swiftSettings: settings),
        .executableTarget(name: "FerryFuzz", dependencies: ["FerryProtocol", "FerryTrust", "FerryContent", "FerryLink", "ZeroMQ"],
                          swiftSettings: settings),
    ]
)
