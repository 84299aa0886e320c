extension ConfigurationSource {
    /// What the command line asked for: settings by key, and the actions that are not settings.
    public struct Arguments: Sendable, Equatable {
        /// Settings by key name (the last of repeated ones wins, as with any option parser).
        public var values: [String: String] = [:]
        /// `--check-config`: check, report, exit.
        public var checkConfig = false
        /// `--example-config`: print the example file, exit.
        public var exampleConfig = false
        /// `--help` / `-h`.
        public var help = false
    }

    /// Keys given as a bare flag, with no value (`--upstream-insecure`); `--key=false` also works.
    static let switches: Set<String> = ["upstream-insecure"]

    /// Parses `--key value`, `--key=value` and the switches, every key from ``keys``: the one
    /// table is also the command line. Unknown options and missing values name themselves.
    public static func parseArguments(_ arguments: [String]) throws(ConfigurationError) -> Arguments {
        let known = Set(self.keys.map(\.name))
        var result = Arguments()
        var index = 0
        while index < arguments.count {
            let argument = arguments[index]
            index += 1
            switch argument {
            case "--check-config": result.checkConfig = true; continue
            case "--example-config": result.exampleConfig = true; continue
            case "--help", "-h": result.help = true; continue
            default: break
            }
            guard argument.hasPrefix("--"), argument.count > 2 else {
                throw ConfigurationError(key: argument, message: "is not an option; options look like --socket PATH (see handoffd --help)")
            }
            var name = String(argument.dropFirst(2))
            var value: String?
            if let equals = name.firstIndex(of: "=") {
                value = String(name[name.index(after: equals)...])
                name = String(name[..<equals])
            }
            guard known.contains(name) else {
                throw ConfigurationError(key: "--\(name)", message: "unknown option (see handoffd --help)")
            }
            if value == nil {
                if self.switches.contains(name) {
                    value = "true"
                } else {
                    guard index < arguments.count else {
                        throw ConfigurationError(key: "--\(name)", message: "needs a value")
                    }
                    value = arguments[index]
                    index += 1
                }
            }
            result.values[name] = value
        }
        return result
    }

    /// `handoffd --help`: every key of the table with its help, value and variable.
    public static func helpText() -> String {
        var text = """
            USAGE: handoffd [--config FILE] [--socket PATH] [--KEY VALUE ...] [--check-config] [--example-config]

            Every option can also be set with its environment variable or in the --config file
            (the same names): a flag wins over the environment, which wins over the file, which
            wins over the default. OPENAI_BASE_URL and OPENAI_API_KEY are honoured too. With
            systemd socket activation (LISTEN_FDS=1) the inherited socket is used and --socket
            only names it in logs.

            OPTIONS:

            """
        for key in self.keys {
            let flag = self.switches.contains(key.name) ? "--\(key.name)" : "--\(key.name) <value>"
            text += "  \(flag)\n      \(key.help) [env: \(key.environment)]\n"
        }
        text += """
              --check-config
                  Check the configuration (flags, environment, --config file), print what is wrong or 'configuration OK', and exit.
              --example-config
                  Print a YAML configuration file with every key, commented, and exit.
              -h, --help
                  Show this help.

            """
        return text
    }
}
