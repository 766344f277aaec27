//! A small `multipart/form-data` reader (RFC 7578) and a WAV header reader, enough to check uploads.

use super::WavInfo;

/// One part of a form.
pub(super) struct Part {
    pub(super) name: String,
    pub(super) filename: Option<String>,
    pub(super) content_type: Option<String>,
    pub(super) data: Vec<u8>,
}

fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if needle.is_empty() || from > haystack.len() {
        return None;
    }
    haystack[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

/// The boundary of a `multipart/form-data` content type.
pub(super) fn boundary(content_type: &str) -> Option<String> {
    let mut parts = content_type.split(';');
    let mime = parts.next()?.trim();
    if !mime.eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    parts.find_map(|p| {
        let (k, v) = p.trim().split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| v.trim().trim_matches('"').to_owned())
    })
}

/// Splits a form body into its parts.
pub(super) fn parse(body: &[u8], boundary: &str) -> Result<Vec<Part>, String> {
    let delimiter = format!("--{boundary}");
    let delimiter = delimiter.as_bytes();
    let mut pos = find(body, delimiter, 0).ok_or("no multipart boundary in the body")?;
    let mut parts = Vec::new();
    loop {
        pos += delimiter.len();
        if body[pos..].starts_with(b"--") {
            return Ok(parts);
        }
        if !body[pos..].starts_with(b"\r\n") {
            return Err("malformed multipart delimiter line".into());
        }
        pos += 2;
        let head_end = find(body, b"\r\n\r\n", pos).ok_or("multipart part without headers end")?;
        let head = String::from_utf8_lossy(&body[pos..head_end]).into_owned();
        let data_start = head_end + 4;
        let mut closing = b"\r\n".to_vec();
        closing.extend_from_slice(delimiter);
        let data_end =
            find(body, &closing, data_start).ok_or("multipart part without closing boundary")?;
        let mut name = None;
        let mut filename = None;
        let mut content_type = None;
        for line in head.split("\r\n") {
            let Some((k, v)) = line.split_once(':') else {
                continue;
            };
            if k.trim().eq_ignore_ascii_case("content-disposition") {
                for attr in v.split(';').skip(1) {
                    if let Some((ak, av)) = attr.trim().split_once('=') {
                        let av = av.trim().trim_matches('"').to_owned();
                        match ak.trim() {
                            "name" => name = Some(av),
                            "filename" => filename = Some(av),
                            _ => {}
                        }
                    }
                }
            } else if k.trim().eq_ignore_ascii_case("content-type") {
                content_type = Some(v.trim().to_owned());
            }
        }
        parts.push(Part {
            name: name.ok_or("multipart part without a name")?,
            filename,
            content_type,
            data: body[data_start..data_end].to_vec(),
        });
        pos = data_end + 2;
    }
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes([
        *b.get(at)?,
        *b.get(at + 1)?,
        *b.get(at + 2)?,
        *b.get(at + 3)?,
    ]))
}

/// Reads a PCM WAV header: `RIFF`/`WAVE`, a `fmt ` chunk (format 1) and a `data` chunk that fits in the file.
pub(super) fn wav_info(b: &[u8]) -> Option<WavInfo> {
    if b.get(0..4)? != b"RIFF" || b.get(8..12)? != b"WAVE" {
        return None;
    }
    let mut pos = 12;
    let mut fmt = None;
    while pos + 8 <= b.len() {
        let id = b.get(pos..pos + 4)?;
        let size = usize::try_from(u32_at(b, pos + 4)?).ok()?;
        let body = pos + 8;
        if id == b"fmt " {
            let format = u16_at(b, body)?;
            let channels = u16_at(b, body + 2)?;
            let rate = u32_at(b, body + 4)?;
            let bits = u16_at(b, body + 14)?;
            if format != 1 || channels == 0 || rate == 0 || bits == 0 {
                return None;
            }
            fmt = Some((channels, rate, bits));
        } else if id == b"data" {
            let (channels, rate, bits) = fmt?;
            if body + size > b.len() {
                return None;
            }
            let frame_bytes = usize::from(channels) * usize::from(bits / 8).max(1);
            return Some(WavInfo {
                sample_rate: rate,
                channels,
                bits_per_sample: bits,
                frames: (size / frame_bytes) as u64,
            });
        }
        pos = body + size + (size % 2);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_fields_and_a_file() {
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n--XyZ\r\n\
Content-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\nContent-Type: audio/wav\r\n\r\nRIFF\r\nx\r\n--XyZ--\r\n";
        assert_eq!(
            boundary("multipart/form-data; boundary=XyZ").as_deref(),
            Some("XyZ")
        );
        assert_eq!(boundary("application/json"), None);
        let parts = parse(body, "XyZ").unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(
            (parts[0].name.as_str(), parts[0].data.as_slice()),
            ("model", &b"whisper-1"[..])
        );
        assert_eq!(parts[1].filename.as_deref(), Some("a.wav"));
        assert_eq!(parts[1].content_type.as_deref(), Some("audio/wav"));
        assert_eq!(parts[1].data, b"RIFF\r\nx");
        assert!(parse(b"--XyZ\r\nno headers end", "XyZ").is_err());
    }

    #[test]
    fn reads_a_pcm_wav_header_and_rejects_garbage() {
        let mut wav = b"RIFF\0\0\0\0WAVEfmt ".to_vec();
        wav.extend_from_slice(&16u32.to_le_bytes());
        wav.extend_from_slice(&1u16.to_le_bytes());
        wav.extend_from_slice(&1u16.to_le_bytes());
        wav.extend_from_slice(&16_000u32.to_le_bytes());
        wav.extend_from_slice(&32_000u32.to_le_bytes());
        wav.extend_from_slice(&2u16.to_le_bytes());
        wav.extend_from_slice(&16u16.to_le_bytes());
        wav.extend_from_slice(b"data");
        wav.extend_from_slice(&8u32.to_le_bytes());
        wav.extend_from_slice(&[0; 8]);
        let info = wav_info(&wav).unwrap();
        assert_eq!(
            (
                info.sample_rate,
                info.channels,
                info.bits_per_sample,
                info.frames
            ),
            (16_000, 1, 16, 4)
        );
        assert!(
            wav_info(&wav[..wav.len() - 2]).is_none(),
            "data chunk longer than the file"
        );
        assert!(wav_info(b"ID3 not a wav file").is_none());
    }
}
