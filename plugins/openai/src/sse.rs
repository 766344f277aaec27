//! A strict server-sent events decoder for OpenAI's streams: `data:` lines joined per event, comments and the
//! `event`/`id`/`retry` fields ignored, anything else is a [`ProtocolError::MalformedSseLine`].

use crate::error::ProtocolError;

/// The longest line accepted (a chunk with a large tool argument stays far below).
const MAX_LINE: usize = 4 * 1024 * 1024;

/// Decodes an event stream fed in arbitrary byte chunks.
#[derive(Debug, Default)]
pub(crate) struct SseDecoder {
    buf: Vec<u8>,
    data: Option<String>,
}

impl SseDecoder {
    /// Feeds bytes; returns the data of every event completed by them.
    pub(crate) fn feed(&mut self, bytes: &[u8]) -> Result<Vec<String>, ProtocolError> {
        self.buf.extend_from_slice(bytes);
        let mut events = Vec::new();
        let mut start = 0;
        while let Some(nl) = self.buf[start..].iter().position(|b| *b == b'\n') {
            let end = start + nl;
            let line = &self.buf[start..end];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let line = std::str::from_utf8(line).map_err(|_| ProtocolError::InvalidUtf8)?;
            if let Some(ev) = Self::line(&mut self.data, line)? {
                events.push(ev);
            }
            start = end + 1;
        }
        self.buf.drain(..start);
        if self.buf.len() > MAX_LINE {
            return Err(ProtocolError::LineTooLong { limit: MAX_LINE });
        }
        Ok(events)
    }

    /// Ends the stream: a last event without its blank line is still delivered.
    pub(crate) fn finish(&mut self) -> Result<Option<String>, ProtocolError> {
        let rest = std::mem::take(&mut self.buf);
        if !rest.is_empty() {
            let line = std::str::from_utf8(&rest).map_err(|_| ProtocolError::InvalidUtf8)?;
            let line = line.strip_suffix('\r').unwrap_or(line);
            if let Some(ev) = Self::line(&mut self.data, line)? {
                return Ok(Some(ev));
            }
        }
        Ok(self.data.take())
    }

    fn line(data: &mut Option<String>, line: &str) -> Result<Option<String>, ProtocolError> {
        if line.is_empty() {
            return Ok(data.take());
        }
        if line.starts_with(':') {
            return Ok(None);
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "data" => {
                match data {
                    Some(d) => {
                        d.push('\n');
                        d.push_str(value);
                    }
                    None => *data = Some(value.to_owned()),
                }
                Ok(None)
            }
            "event" | "id" | "retry" => Ok(None),
            _ => Err(ProtocolError::MalformedSseLine {
                line: line.chars().take(120).collect(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_across_chunk_boundaries() {
        let mut d = SseDecoder::default();
        assert!(d.feed(b"data: {\"a\"").unwrap().is_empty());
        assert_eq!(
            d.feed(b":1}\r\n\r\n: keep-alive\n\ndata: x\ndata: y\n")
                .unwrap(),
            vec!["{\"a\":1}"]
        );
        assert_eq!(
            d.feed(b"\nevent: e\nid: 3\ndata: [DONE]").unwrap(),
            vec!["x\ny"]
        );
        assert_eq!(d.finish().unwrap().as_deref(), Some("[DONE]"));
    }

    #[test]
    fn malformed_line_and_bad_utf8_are_errors() {
        let mut d = SseDecoder::default();
        assert!(matches!(
            d.feed(b"data: ok\n\nnot an sse line\n"),
            Err(ProtocolError::MalformedSseLine { .. })
        ));
        let mut d = SseDecoder::default();
        assert_eq!(d.feed(b"data: \xff\n"), Err(ProtocolError::InvalidUtf8));
    }
}
