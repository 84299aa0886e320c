import HandoffRedis
import Testing

@Suite struct RedisConfigurationTests {
    @Test func readsEveryPartOfTheURL() throws {
        let plain = try RedisConfiguration(url: "redis://localhost")
        #expect(plain.host == "localhost" && plain.port == 6379 && plain.database == 0 && !plain.tls && plain.password == nil)

        let full = try RedisConfiguration(url: "rediss://app:p%40ss%3Aword@redis.internal:6380/3?protocol=3&timeout_ms=250&tls_verify=false")
        #expect(full.host == "redis.internal" && full.port == 6380 && full.database == 3)
        #expect(full.username == "app" && full.password == "p@ss:word")
        #expect(full.tls && !full.tlsVerify && full.protocolVersion == 3 && full.commandTimeout == .milliseconds(250))
        #expect(full.redacted == "rediss://app:***@redis.internal:6380/3")

        let passwordOnly = try RedisConfiguration(url: "redis://:secret@127.0.0.1:7000")
        #expect(passwordOnly.username == nil && passwordOnly.password == "secret" && passwordOnly.port == 7000)
        let ipv6 = try RedisConfiguration(url: "redis://[::1]:7001/2")
        #expect(ipv6.host == "::1" && ipv6.port == 7001 && ipv6.database == 2)
    }

    @Test func namesWhatIsWrong() {
        let cases: [(String, String)] = [
            ("http://localhost", "redis:// or rediss://"),
            ("redis://", "no host"),
            ("redis://host:99999", "port"),
            ("redis://host/x", "database number"),
            ("redis://host?protocol=4", "protocol must be 2 or 3"),
            ("redis://host?colour=blue", "unknown URL option 'colour'"),
            ("redis://:pa%zz@host", "%-escape"),
        ]
        for (url, message) in cases {
            #expect {
                try RedisConfiguration(url: url)
            } throws: { error in
                "\(error)".contains(message)
            }
        }
    }
}
