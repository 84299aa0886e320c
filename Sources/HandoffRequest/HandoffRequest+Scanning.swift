import HandoffJSON

extension HandoffRequest {
    /// The handoff as most applications send it, read without a JSON tree: an object of the
    /// plain fields (`prompt`, `system`, the identifiers, `max_tokens`, `temperature`) and
    /// `messages` with text content, every value valid.
    ///
    /// `nil` for anything else (other known fields, content parts, wrong types, values over a
    /// limit, repeated fields, refused fields, invalid JSON): ``decode(_:limits:)`` then uses
    /// the general decoder, which accepts it or names what is wrong. The two agree on every
    /// payload this takes (`HandoffRequestScanTests`).
    static func scan(_ payload: UnsafeRawBufferPointer, limits: HandoffRequestLimits) -> HandoffRequest? {
        var reader = JSONReader(payload)
        var request = HandoffRequest()
        var seen: UInt32 = 0
        do throws(JSONReaderError) {
            try reader.readObject { reader, key throws(JSONReaderError) in
                guard let field = Field(key) else {
                    // Another known field, or one naming an upstream or a credential: the
                    // general decoder's. Anything else is ignored.
                    let name = try key.decoded()
                    if Self.otherFields.contains(name) || HandoffRequest.refusedFields.contains(name) { throw Self.declined }
                    try reader.skipValue()
                    return
                }
                let bit: UInt32 = 1 << field.rawValue
                guard seen & bit == 0 else { throw Self.declined }
                seen |= bit
                switch field {
                case .prompt: request.prompt = try reader.readStringOrNull()
                case .system: request.system = try reader.readStringOrNull()
                case .model: request.model = try Self.identifier(&reader, limits: limits)
                case .backend: request.backend = try Self.identifier(&reader, limits: limits)
                case .testPattern: request.testPattern = try Self.identifier(&reader, limits: limits)
                case .profile: request.profile = try Self.identifier(&reader, limits: limits)
                case .threadID: request.threadID = try Self.identifier(&reader, limits: limits)
                case .assistantID: request.assistantID = try Self.identifier(&reader, limits: limits)
                case .requestID: request.requestID = try Self.identifier(&reader, limits: limits, allowNumber: true)
                case .userID: request.userID = try Self.identifier(&reader, limits: limits, allowNumber: true)
                case .maxTokens:
                    guard let value = try reader.readIntOrNull() else { return }
                    guard (1...limits.maxTokens).contains(value) else { throw Self.declined }
                    request.maxTokens = value
                case .temperature:
                    guard let value = try Self.number(&reader) else { return }
                    guard value.isFinite, (0...2).contains(value) else { throw Self.declined }
                    request.temperature = value
                case .streamID:
                    guard let id = try Self.identifier(&reader, limits: limits) else { return }
                    guard HandoffRequest.isValidStreamID(id) else { throw Self.declined }
                    request.streamID = id
                case .resumable:
                    guard try reader.peek() == .bool else { throw Self.declined }
                    request.resumable = try reader.readBool()
                case .resume:
                    guard try reader.peek() == .bool else { throw Self.declined }
                    request.resume = try reader.readBool()
                case .completion:
                    guard try reader.peek() == .bool else { throw Self.declined }
                    request.completion = try reader.readBool()
                case .channel:
                    guard let channel = try Self.identifier(&reader, limits: limits) else { return }
                    guard !channel.isEmpty else { throw Self.declined }
                    request.channel = channel
                case .messages:
                    guard try !reader.readNull() else { return }
                    var messages: [ChatMessage] = []
                    try reader.readArray { reader, index throws(JSONReaderError) in
                        guard index < limits.maxMessages else { throw Self.declined }
                        messages.append(try Self.textMessage(&reader))
                    }
                    request.messages = messages
                }
            }
            try reader.finish()
        } catch {
            return nil
        }
        // What the general decoder checks across fields (and `last_event_id`, which it reads).
        if request.resumable || request.resume {
            guard request.streamID != nil, !(request.resumable && request.resume) else { return nil }
        }
        return request
    }

    /// The fields read here; every other known field goes to the general decoder.
    private enum Field: UInt32 {
        case prompt, system, model, backend, testPattern, profile, threadID, assistantID, requestID, userID
        case maxTokens, temperature, messages
        case streamID, resumable, resume, completion, channel

        init?(_ key: JSONKey) {
            if key == "prompt" { self = .prompt }
            else if key == "messages" { self = .messages }
            else if key == "user_id" { self = .userID }
            else if key == "model" { self = .model }
            else if key == "system" { self = .system }
            else if key == "request_id" { self = .requestID }
            else if key == "max_tokens" { self = .maxTokens }
            else if key == "temperature" { self = .temperature }
            else if key == "backend" { self = .backend }
            else if key == "test_pattern" { self = .testPattern }
            else if key == "profile" { self = .profile }
            else if key == "thread_id" { self = .threadID }
            else if key == "assistant_id" { self = .assistantID }
            else if key == "stream_id" { self = .streamID }
            else if key == "resumable" { self = .resumable }
            else if key == "resume" { self = .resume }
            else if key == "completion" { self = .completion }
            else if key == "channel" { self = .channel }
            else { return nil }
        }
    }

    /// Known fields that only the general decoder reads.
    private static let otherFields: Set<String> = [
        "response_headers", "stream_mode", "langgraph_input", "images", "attachments",
        "last_event_id",
    ]

    private static let declined = JSONReaderError(reason: .typeMismatch, offset: 0)

    /// What `KeyedDecodingContainer.identifier` accepts, or declined.
    private static func identifier(_ reader: inout JSONReader, limits: HandoffRequestLimits, allowNumber: Bool = false) throws(JSONReaderError) -> String? {
        let value: String
        switch try reader.peek() {
        case .null:
            _ = try reader.readNull()
            return nil
        case .string:
            value = try reader.readString()
        case .number where allowNumber:
            value = String(try reader.readInt())
        default:
            throw Self.declined
        }
        guard value.utf8.count <= limits.maxIdentifierBytes, !value.unicodeScalars.contains(where: \.isControlCharacter) else {
            throw Self.declined
        }
        return value
    }

    /// A number (or `null`), as `JSONDecoder` reads a `Double`.
    private static func number(_ reader: inout JSONReader) throws(JSONReaderError) -> Double? {
        switch try reader.peek() {
        case .null:
            _ = try reader.readNull()
            return nil
        case .number:
            guard let value = Double(try reader.readNumberText()) else { throw Self.declined }
            return value
        default:
            throw Self.declined
        }
    }

    /// `{"role": "...", "content": "text"}`; content parts are declined.
    private static func textMessage(_ reader: inout JSONReader) throws(JSONReaderError) -> ChatMessage {
        var role: String?
        var content: String?
        try reader.readObject { reader, key throws(JSONReaderError) in
            if key == "role" {
                guard role == nil else { throw Self.declined }
                role = try reader.readString()
            } else if key == "content" {
                guard content == nil else { throw Self.declined }
                content = try reader.readString()
            } else {
                try reader.skipValue()
            }
        }
        guard let role, let content, ChatMessage.roles.contains(role) else { throw Self.declined }
        return ChatMessage(role: role, content: .text(content))
    }
}
