import Foundation

extension HandoffRequest {
    /// Decodes a handoff payload (NULs already trimmed). An empty payload is the protocol's
    /// "no `X-Handoff-Data`" and yields the defaults.
    public static func decode(_ payload: [UInt8], limits: HandoffRequestLimits = .init()) throws(HandoffRequestError) -> HandoffRequest {
        if payload.isEmpty { return HandoffRequest() }
        if let ordinary = payload.withUnsafeBytes({ Self.scan($0, limits: limits) }) { return ordinary }
        return try Self.decodeGeneral(payload, limits: limits)
    }

    /// Foundation's `JSONDecoder`, field by field: the authority on every payload, and the one
    /// that names what is wrong.
    static func decodeGeneral(_ payload: [UInt8], limits: HandoffRequestLimits) throws(HandoffRequestError) -> HandoffRequest {
        let decoder = JSONDecoder()
        decoder.userInfo[Wire.limitsKey] = limits
        do {
            return try decoder.decode(Wire.self, from: Data(payload)).request
        } catch let error as HandoffRequestError {
            throw error
        } catch let DecodingError.typeMismatch(_, context) where context.codingPath.isEmpty {
            throw .invalidJSON("the handoff data must be a JSON object")
        } catch let DecodingError.typeMismatch(type, context), let DecodingError.valueNotFound(type, context) {
            throw .wrongType(Self.path(context.codingPath), expected: Self.describe(type))
        } catch {
            throw .invalidJSON("the handoff data is not valid JSON")
        }
    }

    static func path(_ codingPath: [any CodingKey]) -> String {
        var result = ""
        for key in codingPath {
            if let index = key.intValue {
                result += "[\(index)]"
            } else {
                result += result.isEmpty ? key.stringValue : ".\(key.stringValue)"
            }
        }
        return result
    }

    private static func describe(_ type: Any.Type) -> String {
        switch type {
        case is String.Type: "a string"
        case is Int.Type, is Int64.Type: "an integer"
        case is Double.Type: "a number"
        case is Bool.Type: "a boolean"
        default: "a value of another type"
        }
    }

    /// The JSON shape, decoded field by field so each failure names its field.
    private struct Wire: Decodable {
        static let limitsKey = CodingUserInfoKey(rawValue: "handoff.limits")!

        var request = HandoffRequest()

        enum Key: String, CodingKey {
            case prompt, messages, system, model, temperature, backend
            case maxTokens = "max_tokens"
            case userID = "user_id"
            case requestID = "request_id"
            case testPattern = "test_pattern"
            case responseHeaders = "response_headers"
            case profile
            case threadID = "thread_id"
            case assistantID = "assistant_id"
            case streamMode = "stream_mode"
            case langGraphInput = "langgraph_input"
            case images, attachments
            case streamID = "stream_id"
            case resumable, resume, channel, completion
            case lastEventID = "last_event_id"
        }

        /// Any key, to look for refused fields.
        struct AnyKey: CodingKey {
            var stringValue: String
            var intValue: Int? { nil }
            init(stringValue: String) { self.stringValue = stringValue }
            init?(intValue: Int) { nil }
        }

        init(from decoder: any Decoder) throws {
            let limits = decoder.userInfo[Self.limitsKey] as? HandoffRequestLimits ?? .init()
            let container = try decoder.container(keyedBy: Key.self)
            let all = try decoder.container(keyedBy: AnyKey.self)
            if let refused = all.allKeys.first(where: { HandoffRequest.refusedFields.contains($0.stringValue) }) {
                throw HandoffRequestError.invalidValue(
                    refused.stringValue,
                    "upstream URLs and credentials come from the server's configuration, never from a handoff"
                )
            }
            var request = HandoffRequest()
            request.prompt = try container.decodeIfPresent(String.self, forKey: .prompt)
            request.system = try container.decodeIfPresent(String.self, forKey: .system)
            request.model = try container.identifier(.model, limits: limits)
            request.backend = try container.identifier(.backend, limits: limits)
            request.testPattern = try container.identifier(.testPattern, limits: limits)
            request.requestID = try container.identifier(.requestID, limits: limits, allowNumber: true)
            request.userID = try container.identifier(.userID, limits: limits, allowNumber: true)
            if let maxTokens = try container.decodeIfPresent(Int.self, forKey: .maxTokens) {
                guard (1...limits.maxTokens).contains(maxTokens) else {
                    throw HandoffRequestError.invalidValue("max_tokens", "must be between 1 and \(limits.maxTokens)")
                }
                request.maxTokens = maxTokens
            }
            if let temperature = try container.decodeIfPresent(Double.self, forKey: .temperature) {
                guard temperature.isFinite, (0...2).contains(temperature) else {
                    throw HandoffRequestError.invalidValue("temperature", "must be between 0 and 2")
                }
                request.temperature = temperature
            }
            if container.contains(.messages), try !container.decodeNil(forKey: .messages) {
                var list = try container.nestedUnkeyedContainer(forKey: .messages)
                var messages: [ChatMessage] = []
                while !list.isAtEnd {
                    guard messages.count < limits.maxMessages else {
                        throw HandoffRequestError.tooLarge("messages", limit: limits.maxMessages, unit: "messages")
                    }
                    messages.append(try ChatMessage.decode(from: &list, index: messages.count, limits: limits))
                }
                request.messages = messages
            }
            request.profile = try container.identifier(.profile, limits: limits)
            request.threadID = try container.identifier(.threadID, limits: limits)
            request.assistantID = try container.identifier(.assistantID, limits: limits)
            if container.contains(.streamMode), try !container.decodeNil(forKey: .streamMode) {
                if let single = try? container.decode(String.self, forKey: .streamMode) {
                    request.streamMode = [single]
                } else if let list = try? container.decode([String].self, forKey: .streamMode), list.count <= 8 {
                    request.streamMode = list
                } else {
                    throw HandoffRequestError.wrongType("stream_mode", expected: "a string or an array of up to 8 strings")
                }
            }
            if container.contains(.langGraphInput) {
                let input = try container.decode(JSONValue.self, forKey: .langGraphInput)
                guard case .object = input else {
                    throw HandoffRequestError.wrongType("langgraph_input", expected: "an object")
                }
                request.langGraphInput = input
            }
            try Self.decodeFiles(from: container, into: &request, limits: limits)
            try Self.decodeResumption(from: container, into: &request, limits: limits)
            if let headers = try container.decodeIfPresent([String: String].self, forKey: .responseHeaders) {
                request.responseHeaders = try ResponseHeaderFilter.filter(headers, limits: limits)
            }
            self.request = request
        }

        /// `stream_id`, `resumable`, `resume`, `last_event_id`, `channel`, `completion`.
        static func decodeResumption(from container: KeyedDecodingContainer<Key>, into request: inout HandoffRequest, limits: HandoffRequestLimits) throws {
            if let id = try container.identifier(.streamID, limits: limits) {
                guard HandoffRequest.isValidStreamID(id) else {
                    throw HandoffRequestError.invalidValue("stream_id", "must be 1 to 128 characters from A-Z a-z 0-9 _ . : -")
                }
                request.streamID = id
            }
            request.resumable = try container.decodeIfPresent(Bool.self, forKey: .resumable) ?? false
            request.resume = try container.decodeIfPresent(Bool.self, forKey: .resume) ?? false
            request.completion = try container.decodeIfPresent(Bool.self, forKey: .completion) ?? true
            if container.contains(.lastEventID), try !container.decodeNil(forKey: .lastEventID) {
                let text: String
                if let number = try? container.decode(Int64.self, forKey: .lastEventID) {
                    text = String(number)
                } else if let string = try? container.decode(String.self, forKey: .lastEventID) {
                    text = string
                } else {
                    throw HandoffRequestError.wrongType("last_event_id", expected: "a string or an integer")
                }
                if text.isEmpty {
                    request.lastEventID = 0
                } else {
                    guard text.utf8.count <= 18, text.utf8.allSatisfy({ (0x30...0x39).contains($0) }), let value = Int64(text) else {
                        throw HandoffRequestError.invalidValue("last_event_id", "must be an event id this server sent (a decimal number)")
                    }
                    request.lastEventID = value
                }
            }
            if let channel = try container.identifier(.channel, limits: limits) {
                guard !channel.isEmpty else { throw HandoffRequestError.invalidValue("channel", "must not be empty") }
                request.channel = channel
            }
            if request.resumable || request.resume {
                guard request.streamID != nil else {
                    throw HandoffRequestError.invalidValue(request.resume ? "resume" : "resumable", "needs a stream_id")
                }
            }
            if request.resumable, request.resume {
                throw HandoffRequestError.invalidValue("resume", "cannot be combined with resumable: a handoff either starts a stream or follows one")
            }
        }

        private enum ImageKey: String, CodingKey { case data, mediaType = "media_type" }
        private enum AttachmentKey: String, CodingKey { case path, mediaType = "media_type", name }

        /// `images`: `{"data": base64, "media_type": "image/png"}` or a `data:` URL string.
        /// `attachments`: `{"path": "relative/file", "media_type"?, "name"?}`.
        static func decodeFiles(from container: KeyedDecodingContainer<Key>, into request: inout HandoffRequest, limits: HandoffRequestLimits) throws {
            var count = 0
            // Images and attachments share one cap.
            func admit(_ field: String) throws {
                count += 1
                guard count <= limits.attachments.maxCount else {
                    throw HandoffRequestError.tooLarge(field, limit: limits.attachments.maxCount, unit: "images and attachments")
                }
            }
            if container.contains(.images), try !container.decodeNil(forKey: .images) {
                var list = try container.nestedUnkeyedContainer(forKey: .images)
                while !list.isAtEnd {
                    let field = "images[\(request.imageURLs.count)]"
                    try admit("images")
                    let image: InlineImage
                    if let url = try? list.decode(String.self) {
                        image = try Self.inlineImage(dataURL: url, field: field)
                    } else if let object = try? list.nestedContainer(keyedBy: ImageKey.self),
                        let data = try? object.decode(String.self, forKey: .data),
                        let type = try? object.decode(String.self, forKey: .mediaType)
                    {
                        image = InlineImage(mediaType: type, base64: data)
                    } else {
                        throw HandoffRequestError.wrongType(field, expected: "a data: URL or an object with data and media_type")
                    }
                    request.imageURLs.append(try Attachments.dataURL(for: image, limits: limits.attachments, field: field))
                }
            }
            if container.contains(.attachments), try !container.decodeNil(forKey: .attachments) {
                var list = try container.nestedUnkeyedContainer(forKey: .attachments)
                while !list.isAtEnd {
                    let field = "attachments[\(request.attachments.count)]"
                    try admit("attachments")
                    guard let object = try? list.nestedContainer(keyedBy: AttachmentKey.self),
                        let path = try? object.decode(String.self, forKey: .path)
                    else {
                        throw HandoffRequestError.wrongType(field, expected: "an object with a string path")
                    }
                    guard path.utf8.count <= 1024 else { throw HandoffRequestError.tooLarge("\(field).path", limit: 1024) }
                    request.attachments.append(
                        AttachmentReference(
                            path: path,
                            mediaType: try? object.decodeIfPresent(String.self, forKey: .mediaType),
                            name: try? object.decodeIfPresent(String.self, forKey: .name)
                        )
                    )
                }
            }
        }

        static func inlineImage(dataURL: String, field: String) throws -> InlineImage {
            guard dataURL.hasPrefix("data:"), let comma = dataURL.firstIndex(of: ","),
                dataURL[..<comma].hasSuffix(";base64")
            else {
                throw HandoffRequestError.invalidValue(field, "must be a data:<type>;base64,… URL")
            }
            let type = dataURL[dataURL.index(dataURL.startIndex, offsetBy: 5)..<comma].dropLast(";base64".count)
            return InlineImage(mediaType: String(type), base64: String(dataURL[dataURL.index(after: comma)...]))
        }
    }
}

extension KeyedDecodingContainer where Key: CodingKey {
    /// A short string field (or, when allowed, an integer rendered as a string).
    fileprivate func identifier(_ key: Key, limits: HandoffRequestLimits, allowNumber: Bool = false) throws -> String? {
        guard self.contains(key), try !self.decodeNil(forKey: key) else { return nil }
        let value: String
        if let string = try? self.decode(String.self, forKey: key) {
            value = string
        } else if allowNumber, let number = try? self.decode(Int64.self, forKey: key) {
            value = String(number)
        } else {
            throw HandoffRequestError.wrongType(key.stringValue, expected: allowNumber ? "a string or an integer" : "a string")
        }
        guard value.utf8.count <= limits.maxIdentifierBytes else {
            throw HandoffRequestError.tooLarge(key.stringValue, limit: limits.maxIdentifierBytes)
        }
        // These end up in logs, headers and upstream requests: a line break would forge lines.
        guard !value.unicodeScalars.contains(where: \.isControlCharacter) else {
            throw HandoffRequestError.invalidValue(key.stringValue, "must not contain control characters")
        }
        return value
    }
}

extension HandoffRequest.ChatMessage {
    private enum Key: String, CodingKey { case role, content }
    private enum PartKey: String, CodingKey { case type, text, imageURL = "image_url" }
    private enum ImageKey: String, CodingKey { case url }

    fileprivate static func decode(from list: inout any UnkeyedDecodingContainer, index: Int, limits: HandoffRequestLimits) throws -> Self {
        let field = "messages[\(index)]"
        guard let message = try? list.nestedContainer(keyedBy: Key.self) else {
            throw HandoffRequestError.wrongType(field, expected: "an object with role and content")
        }
        guard let role = try? message.decode(String.self, forKey: .role) else {
            throw HandoffRequestError.wrongType("\(field).role", expected: "a string")
        }
        guard Self.roles.contains(role) else {
            throw HandoffRequestError.invalidValue("\(field).role", "must be system, user, assistant, tool or developer")
        }
        if let text = try? message.decode(String.self, forKey: .content) {
            return Self(role: role, content: .text(text))
        }
        guard var parts = try? message.nestedUnkeyedContainer(forKey: .content) else {
            throw HandoffRequestError.wrongType("\(field).content", expected: "a string or an array of content parts")
        }
        var decoded: [HandoffRequest.ContentPart] = []
        while !parts.isAtEnd {
            let partField = "\(field).content[\(decoded.count)]"
            guard decoded.count < limits.maxContentParts else {
                throw HandoffRequestError.tooLarge("\(field).content", limit: limits.maxContentParts, unit: "parts")
            }
            guard let part = try? parts.nestedContainer(keyedBy: PartKey.self),
                let type = try? part.decode(String.self, forKey: .type)
            else {
                throw HandoffRequestError.wrongType(partField, expected: "an object with a string type")
            }
            switch type {
            case "text":
                guard let text = try? part.decode(String.self, forKey: .text) else {
                    throw HandoffRequestError.wrongType("\(partField).text", expected: "a string")
                }
                decoded.append(.text(text))
            case "image_url":
                let url: String
                if let image = try? part.nestedContainer(keyedBy: ImageKey.self, forKey: .imageURL), let value = try? image.decode(String.self, forKey: .url) {
                    url = value
                } else if let value = try? part.decode(String.self, forKey: .imageURL) {
                    url = value
                } else {
                    throw HandoffRequestError.wrongType("\(partField).image_url", expected: "an object with a string url")
                }
                decoded.append(.imageURL(url))
            default:
                throw HandoffRequestError.invalidValue("\(partField).type", "must be text or image_url")
            }
        }
        return Self(role: role, content: .parts(decoded))
    }
}

extension Unicode.Scalar {
    // public: the access log escapes the same set.
    /// C0, DEL, C1, and the Unicode line and paragraph separators.
    public var isControlCharacter: Bool {
        self.value < 0x20 || (0x7F...0x9F).contains(self.value) || self.value == 0x2028 || self.value == 0x2029
    }
}
