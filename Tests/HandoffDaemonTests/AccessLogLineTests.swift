@testable import HandoffDaemon
import Testing

/// The access log writes one line per stream, whatever its fields hold.
@Suite struct AccessLogLineTests {
    @Test func plainValuesStayBareAndTheTimeIsUTC() {
        var line = AccessLogLine(seconds: 1_796_133_406, nanoseconds: 7_000_000)
        line.append("backend", "mock")
        line.append("status", "200")
        line.append("model", nil)
        #expect(line.text == "2026-12-01T13:56:46.007Z stream backend=mock status=200")
    }

    @Test(arguments: [
        ("a\nFORGED-LINE x=1", #""a\nFORGED-LINE x=1""#),
        ("say \"hi\" \\ bye", #""say \"hi\" \\ bye""#),
        ("tab\there\r", #""tab\there\r""#),
        ("nul\u{0}del\u{7F}sep\u{2028}", #""nul\u{0}del\u{7f}sep\u{2028}""#),
        ("", #""""#),
        ("héllo wörld", #""héllo wörld""#),
    ])
    func everythingElseIsQuotedAndEscaped(value: String, written: String) {
        var line = AccessLogLine(seconds: 0, nanoseconds: 0)
        line.append("finish_reason", value)
        #expect(line.text == "1970-01-01T00:00:00.000Z stream finish_reason=\(written)")
        #expect(!line.text.contains("\n") && !line.text.contains("\r"))
    }
}
