import Foundation
import Yams

/// The YAML configuration file: the same keys as the flags (`socket: /run/…`,
/// `max-connections: 50000`), plus the LangGraph profiles, which only a file can hold.
///
///     openai-base-url: https://api.openai.com/v1
///     langgraph:
///       default-profile: support
///       profiles:
///         support:
///           url: https://support.example.langgraph.app
///           api-key-env: LANGGRAPH_API_KEY
///           assistant: agent
///           stream-mode: [values, messages]
public struct ConfigurationFile: Sendable {
    /// Top-level scalar settings, by key, as strings.
    public var values: [String: String]
    /// The `langgraph` section's profiles, by name.
    public var langGraphProfiles: [String: [String: any Sendable]]
    /// `langgraph.default-profile`.
    public var defaultLangGraphProfile: String?
    /// Where it was read from, for messages.
    public var path: String

    /// Reads and checks `path`: unknown keys and non-scalar values are errors naming the key.
    public static func load(_ path: String) throws(ConfigurationError) -> ConfigurationFile {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw ConfigurationError(key: "config", message: "cannot read '\(path)'")
        }
        let parsed: Any?
        do {
            parsed = try Yams.load(yaml: text)
        } catch {
            throw ConfigurationError(key: "config", message: "'\(path)' is not valid YAML: \(error)")
        }
        guard let root = parsed as? [String: Any] else {
            throw ConfigurationError(key: "config", message: "'\(path)' must be a mapping of keys to values")
        }
        let known = Set(ConfigurationSource.keys.map(\.name))
        var values: [String: String] = [:]
        var profiles: [String: [String: any Sendable]] = [:]
        var defaultProfile: String?
        for (key, value) in root {
            if key == "langgraph" {
                guard let section = value as? [String: Any] else {
                    throw ConfigurationError(key: "\(path): langgraph", message: "must be a mapping with profiles")
                }
                for (sectionKey, sectionValue) in section {
                    switch sectionKey {
                    case "default-profile":
                        defaultProfile = "\(sectionValue)"
                    case "profiles":
                        guard let list = sectionValue as? [String: Any] else {
                            throw ConfigurationError(key: "\(path): langgraph.profiles", message: "must map profile names to settings")
                        }
                        for (name, settings) in list {
                            guard let settings = settings as? [String: Any] else {
                                throw ConfigurationError(key: "\(path): langgraph.profiles.\(name)", message: "must be a mapping")
                            }
                            profiles[name] = try Self.sendable(settings, at: "\(path): langgraph.profiles.\(name)")
                        }
                    default:
                        throw ConfigurationError(key: "\(path): langgraph.\(sectionKey)", message: "unknown key (default-profile, profiles)")
                    }
                }
                continue
            }
            guard known.contains(key), key != "config" else {
                throw ConfigurationError(key: "\(path): \(key)", message: "unknown key; see handoffd --help")
            }
            guard let scalar = Self.scalar(value) else {
                throw ConfigurationError(key: "\(path): \(key)", message: "must be a single value")
            }
            values[key] = scalar
        }
        return ConfigurationFile(values: values, langGraphProfiles: profiles, defaultLangGraphProfile: defaultProfile, path: path)
    }

    static func scalar(_ value: Any) -> String? {
        switch value {
        case let string as String: string
        case let bool as Bool: bool ? "true" : "false"
        case let int as Int: String(int)
        case let double as Double: String(double)
        default: nil
        }
    }

    private static func sendable(_ settings: [String: Any], at location: String) throws(ConfigurationError) -> [String: any Sendable] {
        var out: [String: any Sendable] = [:]
        for (key, value) in settings {
            if let scalar = Self.scalar(value) {
                out[key] = scalar
            } else if let list = value as? [Any] {
                out[key] = list.compactMap(Self.scalar)
            } else {
                throw ConfigurationError(key: "\(location).\(key)", message: "must be a value or a list of values")
            }
        }
        return out
    }
}

extension ConfigurationSource {
    /// Builds the LangGraph backend from the file's profiles, with the same upstream options
    /// as the flags (`http`, `insecure`, `ca-file`, `unix-socket`) per profile.
    static func langGraph(from file: ConfigurationFile, environment: [String: String]) throws(ConfigurationError) -> LangGraphBackend? {
        guard !file.langGraphProfiles.isEmpty else { return nil }
        var profiles: [String: LangGraphProfile] = [:]
        let allowed: Set<String> = ["url", "api-key", "api-key-env", "assistant", "stream-mode", "create-threads", "http", "insecure", "ca-file", "unix-socket"]
        for (name, settings) in file.langGraphProfiles {
            let location = "\(file.path): langgraph.profiles.\(name)"
            if let unknown = settings.keys.first(where: { !allowed.contains($0) }) {
                throw ConfigurationError(key: "\(location).\(unknown)", message: "unknown key (\(allowed.sorted().joined(separator: ", ")))")
            }
            guard let url = settings["url"] as? String else {
                throw ConfigurationError(key: "\(location).url", message: "is required")
            }
            var flags: [String: String] = [:]
            for (key, flag) in [("http", "upstream-http"), ("insecure", "upstream-insecure"), ("ca-file", "upstream-ca-file"), ("unix-socket", "upstream-unix-socket")] {
                if let value = settings[key] as? String { flags[flag] = value }
            }
            let upstream = try Self.upstream(url: url, key: "\(location).url", values: Values(flags: flags, environment: [:]))
            var apiKey = settings["api-key"] as? String
            if let variable = settings["api-key-env"] as? String {
                guard let value = environment[variable], !value.isEmpty else {
                    throw ConfigurationError(key: "\(location).api-key-env", message: "the environment has no \(variable)")
                }
                apiKey = value
            }
            var streamMode = ["values"]
            if let modes = settings["stream-mode"] as? [String] { streamMode = modes } else if let mode = settings["stream-mode"] as? String { streamMode = [mode] }
            let createThreads = (settings["create-threads"] as? String).map { $0 == "true" } ?? true
            profiles[name] = LangGraphProfile(upstream: upstream, apiKey: apiKey, assistantID: settings["assistant"] as? String, streamMode: streamMode, createThreads: createThreads)
        }
        if let chosen = file.defaultLangGraphProfile, profiles[chosen] == nil {
            throw ConfigurationError(key: "\(file.path): langgraph.default-profile", message: "names no profile ('\(chosen)')")
        }
        return LangGraphBackend(profiles: profiles, defaultProfile: file.defaultLangGraphProfile)
    }
}
