import HandoffRequest
import NIOCore
@testable import HandoffDaemon
import Testing

/// The access log writes one line per stream, whatever its fields hold.
@Suite struct AccessLogLineTests {
    /// Every part of the time keeps its width: milliseconds 0–999 as three digits, the rest
    /// as two (the String version's output for each).
    @Test(arguments: [(0, "000"), (7, "007"), (50, "050"), (99, "099"), (100, "100"), (999, "999")])
    func theTimesPartsKeepTheirWidth(milliseconds: Int, written: String) {
        let line = AccessLogLine(seconds: 1_772_345_678, nanoseconds: milliseconds * 1_000_000 + 999_999)
        #expect(line.text == "2026-03-01T06:14:38.\(written)Z stream")
    }

    @Test func plainValuesStayBareAndTheTimeIsUTC() {
        var line = AccessLogLine(seconds: 1_796_133_406, nanoseconds: 7_000_000)
        line.append("backend", "mock")
        line.append("status", integer: 200)
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

    /// Times to first byte are milliseconds with the shortest fraction that keeps every
    /// microsecond digit, as Swift prints a `Double` of them.
    @Test(arguments: [(12_345, "12.345"), (12_045, "12.045"), (1_012, "1.012"), (12_300, "12.3"), (12_050, "12.05"), (12_000, "12.0"), (5, "0.005"), (0, "0.0"), (1_234_567_890, "1234567.89")] as [(Int64, String)])
    func millisecondsKeepTheirMicroseconds(microseconds: Int64, written: String) {
        var line = AccessLogLine(seconds: 0, nanoseconds: 0)
        line.append("ttfb_ms", millisecondsFromMicroseconds: microseconds)
        #expect(line.text == "1970-01-01T00:00:00.000Z stream ttfb_ms=\(written)")
        #expect(written == String(Double(microseconds) / 1000))
    }

    @Test func aStreamsLineCarriesEveryField() {
        var fields = AccessLogFields(request: HandoffRequest(model: "gpt", userID: "7", requestID: "r1"), backend: .openai)
        fields.status = 200
        fields.upstreamStatus = 200
        fields.bytes = 1234
        fields.events = 3
        fields.failure = "upstream_reset"
        var summary = StreamSummary()
        summary.finishReason = "stop"
        summary.promptTokens = 12
        summary.completionTokens = 40
        let line = fields.line(
            seconds: 0, nanoseconds: 0, timeToFirstByteNanoseconds: 12_345_678, durationNanoseconds: 2_040_000_000,
            outcome: .failedMidStream, summary: summary
        )
        #expect(String(buffer: line) == "1970-01-01T00:00:00.000Z stream request_id=r1 user_id=7 backend=openai model=gpt status=200 ttfb_ms=12.345 duration_ms=2040 bytes=1234 events=3 outcome=failed_mid_stream upstream_status=200 error=upstream_reset finish_reason=stop prompt_tokens=12 completion_tokens=40")
    }
}
