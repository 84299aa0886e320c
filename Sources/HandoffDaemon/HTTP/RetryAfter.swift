import CHandoffShim

/// A `Retry-After` value (RFC 9110 §10.2.3): delay seconds, or an HTTP-date passed on as the
/// upstream wrote it. Only well-formed values get through, so nothing an upstream sends can
/// inject a header.
public struct RetryAfter: Sendable, Hashable, CustomStringConvertible {
    /// The header value, exactly as it goes on the wire.
    public let value: String

    /// A delay in seconds.
    public static func seconds(_ seconds: Int) -> RetryAfter {
        RetryAfter(value: String(max(0, seconds)))
    }

    /// Reads an upstream's header value; `nil` when it is neither delay seconds nor an HTTP-date
    /// (IMF-fixdate, or the obsolete RFC 850 and asctime forms recipients must accept).
    public static func parse(_ header: String) -> RetryAfter? {
        let trimmed = header.trimmingSpaces
        guard !trimmed.isEmpty, trimmed.utf8.count <= 64 else { return nil }
        if trimmed.utf8.allSatisfy({ (0x30...0x39).contains($0) }) {
            return Int(trimmed).map { .seconds($0) } ?? .seconds(Int.max)
        }
        guard trimmed.utf8.allSatisfy({ (0x20...0x7E).contains($0) }) else { return nil }
        return trimmed.withCString { handoff_is_http_date($0) } == 1 ? RetryAfter(value: trimmed) : nil
    }

    public var description: String { self.value }
}

extension String {
    fileprivate var trimmingSpaces: String {
        var scalars = Substring(self)
        while scalars.first == " " || scalars.first == "\t" { scalars = scalars.dropFirst() }
        while scalars.last == " " || scalars.last == "\t" { scalars = scalars.dropLast() }
        return String(scalars)
    }
}
