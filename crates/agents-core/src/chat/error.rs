//! Errors of [`ChatContext`](super::ChatContext) operations and of its JSON import.

use agents_audio::AudioFrameError;

/// Why a chat context operation or a JSON import failed.
///
/// JSON errors carry a `path`: a JSON Pointer (RFC 6901) to the offending value, such as `/items/2/content/0`
/// (the empty string is the document root).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ChatContextError {
    /// The item with the instructions id ([`INSTRUCTIONS_ID`](super::INSTRUCTIONS_ID)) is not a message.
    #[error("the item with id `{id}` holds the instructions but is a {found}, not a message")]
    InstructionsNotAMessage {
        /// The id looked up.
        id: String,
        /// The kind of item found instead (`function_call`, `function_call_output`, `agent_handoff`).
        found: &'static str,
    },
    /// A JSON value has the wrong JSON type (e.g. a number where an object is expected).
    #[error("{path}: expected {expected}, found {found}")]
    WrongType {
        /// Where the value is.
        path: String,
        /// What was expected (`object`, `string`, ...).
        expected: &'static str,
        /// The JSON type found.
        found: &'static str,
    },
    /// A required field is absent (or `null`).
    #[error("{path}: missing required field `{field}`")]
    MissingField {
        /// The object that lacks the field.
        path: String,
        /// The field's name.
        field: &'static str,
    },
    /// An item or content part has a `type` this version does not know.
    #[error("{path}: unknown type `{type_name}`")]
    UnknownType {
        /// The object whose `type` is unknown.
        path: String,
        /// The `type` found.
        type_name: String,
    },
    /// A field has the right JSON type but an unacceptable value (unknown role, bad base64, out-of-range number...).
    #[error("{path}: invalid value: {reason}")]
    InvalidValue {
        /// Where the value is.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An audio frame's format is invalid (zero sample rate or channels, odd byte count, uneven channels).
    #[error("{path}: invalid audio frame: {source}")]
    InvalidAudio {
        /// The frame object.
        path: String,
        /// The audio error.
        #[source]
        source: AudioFrameError,
    },
}
