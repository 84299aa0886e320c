import Foundation
import HandoffJSON

/// What the OpenAI dialect reads from one `chat.completion.chunk`: the first choice's content
/// delta and finish reason, the usage, and an error the provider reported in the stream.
///
/// Read by ``scan(_:)``, a reader for exactly this shape that builds no JSON tree (it runs once
/// per token); anything it does not take as ordinary goes to ``decodeGeneral(_:)``, Foundation's
/// `JSONDecoder`, which decides. The two agree on every chunk (`OpenAIChunkTests`).
struct OpenAIChunk: Equatable {
    struct Choice: Equatable {
        var content: String?
        var finishReason: String?
    }

    struct Usage: Equatable {
        var promptTokens: Int?
        var completionTokens: Int?
    }

    struct ErrorBody: Equatable {
        var message: String?
        var type: String?
    }

    /// `choices[0]`, if there is one.
    var firstChoice: Choice?
    var usage: Usage?
    var error: ErrorBody?

    /// Decodes one event's data; `nil` if it is not a completion chunk.
    static func decode(_ data: String) -> OpenAIChunk? {
        var data = data
        return data.withUTF8 { bytes in
            Self.scan(UnsafeRawBufferPointer(bytes)) ?? Self.decodeGeneral(UnsafeRawBufferPointer(bytes))
        }
    }

    // MARK: The reader for ordinary chunks

    /// `nil` for anything unusual: invalid JSON, a field of another type, a repeated field,
    /// deep nesting. The general decoder then decides.
    static func scan(_ bytes: UnsafeRawBufferPointer) -> OpenAIChunk? {
        var reader = JSONReader(bytes)
        var chunk = OpenAIChunk()
        var seen = Fields()
        do throws(JSONReaderError) {
            try reader.readObject { reader, key throws(JSONReaderError) in
                if key == "choices" {
                    try seen.insert(.choices)
                    guard try !reader.readNull() else { return }
                    try reader.readArray { reader, index throws(JSONReaderError) in
                        let choice = try Self.scanChoice(&reader)
                        if index == 0 { chunk.firstChoice = choice }
                    }
                } else if key == "usage" {
                    try seen.insert(.usage)
                    guard try !reader.readNull() else { return }
                    var usage = Usage()
                    var seen = Fields()
                    try reader.readObject { reader, key throws(JSONReaderError) in
                        if key == "prompt_tokens" {
                            try seen.insert(.promptTokens)
                            usage.promptTokens = try reader.readIntOrNull()
                        } else if key == "completion_tokens" {
                            try seen.insert(.completionTokens)
                            usage.completionTokens = try reader.readIntOrNull()
                        } else {
                            try reader.skipValue()
                        }
                    }
                    chunk.usage = usage
                } else if key == "error" {
                    try seen.insert(.error)
                    guard try !reader.readNull() else { return }
                    var error = ErrorBody()
                    var seen = Fields()
                    try reader.readObject { reader, key throws(JSONReaderError) in
                        if key == "message" {
                            try seen.insert(.message)
                            error.message = try reader.readStringOrNull()
                        } else if key == "type" {
                            try seen.insert(.type)
                            error.type = try reader.readStringOrNull()
                        } else {
                            try reader.skipValue()
                        }
                    }
                    chunk.error = error
                } else {
                    try reader.skipValue()
                }
            }
            try reader.finish()
        } catch {
            return nil
        }
        return chunk
    }

    /// One element of `choices`: an object whose `delta` (object or null) may hold `content`.
    private static func scanChoice(_ reader: inout JSONReader) throws(JSONReaderError) -> Choice {
        var choice = Choice()
        var seen = Fields()
        try reader.readObject { reader, key throws(JSONReaderError) in
            if key == "delta" {
                try seen.insert(.delta)
                guard try !reader.readNull() else { return }
                var seen = Fields()
                try reader.readObject { reader, key throws(JSONReaderError) in
                    if key == "content" {
                        try seen.insert(.content)
                        choice.content = try reader.readStringOrNull()
                    } else {
                        try reader.skipValue()
                    }
                }
            } else if key == "finish_reason" {
                try seen.insert(.finishReason)
                choice.finishReason = try reader.readStringOrNull()
            } else {
                try reader.skipValue()
            }
        }
        return choice
    }

    /// The fields read, so a repeated one goes to the general decoder.
    private struct Fields: OptionSet {
        var rawValue: UInt16
        static let choices = Fields(rawValue: 1 << 0)
        static let usage = Fields(rawValue: 1 << 1)
        static let error = Fields(rawValue: 1 << 2)
        static let promptTokens = Fields(rawValue: 1 << 3)
        static let completionTokens = Fields(rawValue: 1 << 4)
        static let message = Fields(rawValue: 1 << 5)
        static let type = Fields(rawValue: 1 << 6)
        static let delta = Fields(rawValue: 1 << 7)
        static let content = Fields(rawValue: 1 << 8)
        static let finishReason = Fields(rawValue: 1 << 9)

        mutating func insert(_ field: Fields) throws(JSONReaderError) {
            guard !self.contains(field) else { throw JSONReaderError(reason: .repeatedMember, offset: 0) }
            self.formUnion(field)
        }
    }

    // MARK: The general decoder

    /// Foundation's `JSONDecoder`: the authority on anything ``scan(_:)`` declines.
    static func decodeGeneral(_ bytes: UnsafeRawBufferPointer) -> OpenAIChunk? {
        guard let wire = try? JSONDecoder().decode(Wire.self, from: Data(bytes)) else { return nil }
        return OpenAIChunk(
            firstChoice: wire.choices?.first.map { Choice(content: $0.delta?.content, finishReason: $0.finish_reason) },
            usage: wire.usage.map { Usage(promptTokens: $0.prompt_tokens, completionTokens: $0.completion_tokens) },
            error: wire.error.map { ErrorBody(message: $0.message, type: $0.type) }
        )
    }

    private struct Wire: Decodable {
        struct Choice: Decodable {
            struct Delta: Decodable { var content: String? }
            var delta: Delta?
            var finish_reason: String?
        }
        struct Usage: Decodable {
            var prompt_tokens: Int?
            var completion_tokens: Int?
        }
        struct ErrorBody: Decodable {
            var message: String?
            var type: String?
        }
        var choices: [Choice]?
        var usage: Usage?
        var error: ErrorBody?
    }
}
