//! Encoding and decoding of event records (layout in `docs/log-format.md`).
//!
//! Every record is checked right before it is written (the encoder computes lengths
//! from what it writes) and right after it is read (CRC, lengths, expected position).

use bytes::Bytes;
use chrono::{DateTime, Utc};
use eventfold_core::{Position, RecordedEvent, Revision};
use uuid::Uuid;

/// Bytes before the body: `body_len` and the CRC.
pub(crate) const FRAME_BYTES: usize = 8;
/// Fixed part of the body, before the variable-length fields.
pub(crate) const BODY_FIXED_BYTES: usize = 60;
/// The largest record accepted, frame included.
pub(crate) const RECORD_BYTES_MAX: usize = 16 * 1024 * 1024;

/// Flag of the last record of a transaction.
pub(crate) const FLAG_COMMIT: u8 = 1;

/// The parts of an event that go into one record.
pub(crate) struct RecordParts<'a> {
    pub position: u64,
    pub revision: u64,
    pub recorded_at_micros: i64,
    pub id: Uuid,
    pub version: u32,
    pub commit: bool,
    pub stream: &'a str,
    pub event_type: &'a str,
    pub metadata: &'a [u8],
    pub data: &'a [u8],
}

/// Size of the record `parts` encodes to, frame included.
pub(crate) fn encoded_len(stream: &str, event_type: &str, metadata: &[u8], data: &[u8]) -> usize {
    FRAME_BYTES + BODY_FIXED_BYTES + stream.len() + event_type.len() + metadata.len() + data.len()
}

/// Appends the record to `out`. The caller has checked the sizes against the limits
/// (stream and type ≤ u16::MAX, record ≤ `RECORD_BYTES_MAX`).
pub(crate) fn encode(parts: &RecordParts<'_>, out: &mut Vec<u8>) {
    let start = out.len();
    let total = encoded_len(parts.stream, parts.event_type, parts.metadata, parts.data);
    debug_assert!(total <= RECORD_BYTES_MAX);
    let body_len = (total - FRAME_BYTES) as u32;
    out.reserve(total);
    out.extend_from_slice(&body_len.to_le_bytes());
    out.extend_from_slice(&[0; 4]); // CRC, filled in below
    out.extend_from_slice(&parts.position.to_le_bytes());
    out.extend_from_slice(&parts.revision.to_le_bytes());
    out.extend_from_slice(&parts.recorded_at_micros.to_le_bytes());
    out.extend_from_slice(parts.id.as_bytes());
    out.extend_from_slice(&parts.version.to_le_bytes());
    out.push(if parts.commit { FLAG_COMMIT } else { 0 });
    out.push(0);
    out.extend_from_slice(&(parts.stream.len() as u16).to_le_bytes());
    out.extend_from_slice(&(parts.event_type.len() as u16).to_le_bytes());
    out.extend_from_slice(&[0; 2]);
    out.extend_from_slice(&(parts.metadata.len() as u32).to_le_bytes());
    out.extend_from_slice(&(parts.data.len() as u32).to_le_bytes());
    out.extend_from_slice(parts.stream.as_bytes());
    out.extend_from_slice(parts.event_type.as_bytes());
    out.extend_from_slice(parts.metadata);
    out.extend_from_slice(parts.data);
    assert_eq!(out.len() - start, total, "record encoding length mismatch");
    let crc = crc32c::crc32c(&out[start + FRAME_BYTES..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Why bytes are not a valid record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Invalid {
    /// Fewer bytes than the record needs: the end of the written data.
    Truncated,
    /// The bytes are there but wrong.
    Damaged(String),
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Invalid::Truncated => f.write_str("record is cut short"),
            Invalid::Damaged(reason) => f.write_str(reason),
        }
    }
}

/// A record's header fields, decoded without copying the payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RecordHeader {
    pub len: usize,
    pub position: u64,
    pub revision: u64,
    pub recorded_at_micros: i64,
    pub id: Uuid,
    pub version: u32,
    pub commit: bool,
    stream: (usize, usize),
    event_type: (usize, usize),
    metadata: (usize, usize),
    data: (usize, usize),
}

fn u16_at(b: &[u8], at: usize) -> usize {
    u16::from_le_bytes([b[at], b[at + 1]]) as usize
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut x = [0; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

/// Decodes and checks the record at the start of `buf`.
pub(crate) fn decode_header(buf: &[u8]) -> Result<RecordHeader, Invalid> {
    if buf.len() < FRAME_BYTES {
        return Err(Invalid::Truncated);
    }
    let body_len = u32_at(buf, 0) as usize;
    if !(BODY_FIXED_BYTES..=RECORD_BYTES_MAX - FRAME_BYTES).contains(&body_len) {
        return Err(Invalid::Damaged(format!(
            "impossible record length {body_len}"
        )));
    }
    let len = FRAME_BYTES + body_len;
    if buf.len() < len {
        return Err(Invalid::Truncated);
    }
    let body = &buf[FRAME_BYTES..len];
    if crc32c::crc32c(body) != u32_at(buf, 4) {
        return Err(Invalid::Damaged("checksum mismatch".into()));
    }
    let stream_len = u16_at(body, 46);
    let type_len = u16_at(body, 48);
    let metadata_len = u32_at(body, 52) as usize;
    let data_len = u32_at(body, 56) as usize;
    if BODY_FIXED_BYTES + stream_len + type_len + metadata_len + data_len != body_len {
        return Err(Invalid::Damaged(
            "field lengths do not add up to the record length".into(),
        ));
    }
    let flags = body[44];
    let mut at = FRAME_BYTES + BODY_FIXED_BYTES;
    let mut field = |n: usize| {
        let range = (at, at + n);
        at += n;
        range
    };
    let stream = field(stream_len);
    let event_type = field(type_len);
    let metadata = field(metadata_len);
    let data = field(data_len);
    let mut id = [0; 16];
    id.copy_from_slice(&body[24..40]);
    Ok(RecordHeader {
        len,
        position: u64_at(body, 0),
        revision: u64_at(body, 8),
        recorded_at_micros: u64_at(body, 16) as i64,
        id: Uuid::from_bytes(id),
        version: u32_at(body, 40),
        commit: flags & FLAG_COMMIT != 0,
        stream,
        event_type,
        metadata,
        data,
    })
}

impl RecordHeader {
    /// The stream name, read from the record bytes this header was decoded from.
    pub(crate) fn stream<'a>(&self, record: &'a [u8]) -> Result<&'a str, Invalid> {
        std::str::from_utf8(&record[self.stream.0..self.stream.1])
            .map_err(|_| Invalid::Damaged("stream name is not UTF-8".into()))
    }

    /// The event type, read from the record bytes this header was decoded from.
    pub(crate) fn event_type<'a>(&self, record: &'a [u8]) -> Result<&'a str, Invalid> {
        std::str::from_utf8(&record[self.event_type.0..self.event_type.1])
            .map_err(|_| Invalid::Damaged("event type is not UTF-8".into()))
    }

    /// Builds the event. `record` is a shared buffer whose slice
    /// `offset..offset + self.len` holds the record; the payload is not copied.
    pub(crate) fn to_event(&self, buffer: &Bytes, offset: usize) -> Result<RecordedEvent, Invalid> {
        let record = &buffer[offset..offset + self.len];
        let text = |(a, b): (usize, usize), what: &str| {
            std::str::from_utf8(&record[a..b])
                .map(str::to_owned)
                .map_err(|_| Invalid::Damaged(format!("{what} is not UTF-8")))
        };
        let recorded_at = DateTime::<Utc>::from_timestamp_micros(self.recorded_at_micros)
            .ok_or_else(|| Invalid::Damaged("recorded_at out of range".into()))?;
        Ok(RecordedEvent {
            stream: text(self.stream, "stream name")?,
            revision: Revision(self.revision),
            position: Position(self.position),
            id: self.id,
            event_type: text(self.event_type, "event type")?,
            version: self.version,
            metadata: buffer.slice(offset + self.metadata.0..offset + self.metadata.1),
            data: buffer.slice(offset + self.data.0..offset + self.data.1),
            recorded_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(commit: bool) -> Vec<u8> {
        let mut out = Vec::new();
        encode(
            &RecordParts {
                position: 7,
                revision: 3,
                recorded_at_micros: 1_700_000_000_000_000,
                id: Uuid::from_u128(42),
                version: 2,
                commit,
                stream: "order-1",
                event_type: "OrderPlaced",
                metadata: b"{}",
                data: br#"{"total":5}"#,
            },
            &mut out,
        );
        out
    }

    #[test]
    fn a_record_round_trips() {
        let bytes = Bytes::from(sample(true));
        let header = decode_header(&bytes).unwrap();
        assert_eq!(header.len, bytes.len());
        assert!(header.commit);
        let event = header.to_event(&bytes, 0).unwrap();
        assert_eq!(event.stream, "order-1");
        assert_eq!(event.revision, Revision(3));
        assert_eq!(event.position, Position(7));
        assert_eq!(event.id, Uuid::from_u128(42));
        assert_eq!(event.event_type, "OrderPlaced");
        assert_eq!(event.version, 2);
        assert_eq!(&event.data[..], br#"{"total":5}"#);
        assert_eq!(&event.metadata[..], b"{}");
    }

    #[test]
    fn every_single_bit_flip_is_detected() {
        let good = sample(false);
        for bit in 0..good.len() * 8 {
            let mut bad = good.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(
                decode_header(&bad).is_err(),
                "flipping bit {bit} went unnoticed"
            );
        }
    }

    #[test]
    fn a_short_buffer_is_truncated_not_damaged() {
        let good = sample(true);
        for cut in 0..good.len() {
            assert_eq!(
                decode_header(&good[..cut]),
                Err(Invalid::Truncated),
                "cut at {cut}"
            );
        }
    }
}
