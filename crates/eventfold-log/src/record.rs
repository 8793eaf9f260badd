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
/// The smallest record there can be: frame and fixed body, no names, no payload.
pub(crate) const RECORD_BYTES_MIN: usize = FRAME_BYTES + BODY_FIXED_BYTES;
/// The largest record accepted, frame included.
pub(crate) const RECORD_BYTES_MAX: usize = 16 * 1024 * 1024;

/// Byte offsets of a record's fields, counted from the start of the record (the frame
/// included), exactly as the table in `docs/log-format.md` counts them. The encoder
/// and the decoder both use these, so the two cannot drift apart.
mod at {
    pub const BODY_LEN: usize = 0;
    pub const CRC: usize = 4;
    pub const POSITION: usize = 8;
    pub const REVISION: usize = 16;
    pub const RECORDED_AT: usize = 24;
    pub const ID: usize = 32;
    pub const VERSION: usize = 48;
    pub const FLAGS: usize = 52;
    pub const RESERVED_1: usize = 53;
    pub const STREAM_LEN: usize = 54;
    pub const TYPE_LEN: usize = 56;
    pub const RESERVED_2: usize = 58;
    pub const METADATA_LEN: usize = 60;
    pub const DATA_LEN: usize = 64;
    pub const VARIABLE: usize = 68;
}
const _: () = assert!(at::VARIABLE == FRAME_BYTES + BODY_FIXED_BYTES);
const _: () = assert!(at::BODY_LEN + 4 == at::CRC && at::CRC + 4 == FRAME_BYTES);

/// Flag of the last record of a transaction.
pub(crate) const FLAG_COMMIT: u8 = 1;
/// Flag of a gap record: positions deliberately left without an event (see
/// "Gap records" in `docs/log-format.md`).
pub(crate) const FLAG_GAP: u8 = 2;
/// Every flag a record may carry; any other bit set is damage.
const FLAGS_KNOWN: u8 = FLAG_COMMIT | FLAG_GAP;

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
    RECORD_BYTES_MIN + stream.len() + event_type.len() + metadata.len() + data.len()
}

/// Appends the record to `out`. The caller has checked the sizes against the limits
/// (stream and type ≤ u16::MAX, record ≤ `RECORD_BYTES_MAX`).
pub(crate) fn encode(parts: &RecordParts<'_>, out: &mut Vec<u8>) {
    encode_with_flags(parts, if parts.commit { FLAG_COMMIT } else { 0 }, out);
}

fn encode_with_flags(parts: &RecordParts<'_>, flags: u8, out: &mut Vec<u8>) {
    let start = out.len();
    let total = encoded_len(parts.stream, parts.event_type, parts.metadata, parts.data);
    debug_assert!(total <= RECORD_BYTES_MAX);
    let body_len = (total - FRAME_BYTES) as u32;
    out.reserve(total);
    out.resize(start + at::VARIABLE, 0);
    let record = &mut out[start..];
    let mut put = |offset: usize, bytes: &[u8]| {
        record[offset..offset + bytes.len()].copy_from_slice(bytes);
    };
    put(at::BODY_LEN, &body_len.to_le_bytes());
    put(at::POSITION, &parts.position.to_le_bytes());
    put(at::REVISION, &parts.revision.to_le_bytes());
    put(at::RECORDED_AT, &parts.recorded_at_micros.to_le_bytes());
    put(at::ID, parts.id.as_bytes());
    put(at::VERSION, &parts.version.to_le_bytes());
    put(at::FLAGS, &[flags]);
    put(at::STREAM_LEN, &(parts.stream.len() as u16).to_le_bytes());
    put(at::TYPE_LEN, &(parts.event_type.len() as u16).to_le_bytes());
    put(
        at::METADATA_LEN,
        &(parts.metadata.len() as u32).to_le_bytes(),
    );
    put(at::DATA_LEN, &(parts.data.len() as u32).to_le_bytes());
    out.extend_from_slice(parts.stream.as_bytes());
    out.extend_from_slice(parts.event_type.as_bytes());
    out.extend_from_slice(parts.metadata);
    out.extend_from_slice(parts.data);
    assert_eq!(out.len() - start, total, "record encoding length mismatch");
    let crc = crc32c::crc32c(&out[start + FRAME_BYTES..]);
    out[start + at::CRC..start + at::CRC + 4].copy_from_slice(&crc.to_le_bytes());
}

/// Sets the `COMMIT` flag of an encoded record and recomputes its CRC: a scavenge
/// ends a transaction early when it removes the records that followed.
pub(crate) fn set_commit(record: &mut [u8]) {
    record[at::FLAGS] |= FLAG_COMMIT;
    let crc = crc32c::crc32c(&record[FRAME_BYTES..]);
    record[at::CRC..at::CRC + 4].copy_from_slice(&crc.to_le_bytes());
}

/// An event given up by a repair, as far as it is known: its gap record keeps the
/// stream and revision so that the stream's revisions are never handed out again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LostEvent {
    pub position: u64,
    pub stream: String,
    pub revision: u64,
}

/// A gap record: positions `first..first + count` hold no event. `lost` names the
/// events known to have held some of them; `reason` is a line of text kept in the log
/// as the audit trail of whoever made the gap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Gap {
    pub first: u64,
    pub count: u64,
    pub recorded_at_micros: i64,
    pub reason: String,
    pub lost: Vec<LostEvent>,
}

/// Bytes of one lost-event entry before its stream name: position, revision, name length.
const LOST_ENTRY_FIXED_BYTES: usize = 18;

impl Gap {
    /// Appends the gap record to `out` (its own committed transaction).
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        let mut data = Vec::new();
        for lost in &self.lost {
            data.extend_from_slice(&lost.position.to_le_bytes());
            data.extend_from_slice(&lost.revision.to_le_bytes());
            data.extend_from_slice(&(lost.stream.len() as u16).to_le_bytes());
            data.extend_from_slice(lost.stream.as_bytes());
        }
        encode_with_flags(
            &RecordParts {
                position: self.first,
                revision: self.count,
                recorded_at_micros: self.recorded_at_micros,
                id: Uuid::nil(),
                version: 0,
                commit: true,
                stream: "",
                event_type: "",
                metadata: self.reason.as_bytes(),
                data: &data,
            },
            FLAG_GAP | FLAG_COMMIT,
            out,
        );
    }

    /// Reads the gap record whose header is `header` out of `record` (its bytes).
    pub(crate) fn decode(header: &RecordHeader, record: &[u8]) -> Result<Self, Invalid> {
        let damaged = |what: &str| Invalid::Damaged(format!("gap record: {what}"));
        if !header.gap || !header.commit || header.count() == 0 {
            return Err(damaged("flags or count are wrong"));
        }
        let empty = |(a, b): (usize, usize)| a == b;
        if !header.id.is_nil()
            || header.version != 0
            || !empty(header.stream)
            || !empty(header.event_type)
        {
            return Err(damaged("event fields are set"));
        }
        let reason = std::str::from_utf8(&record[header.metadata.0..header.metadata.1])
            .map_err(|_| damaged("reason is not UTF-8"))?
            .to_string();
        let mut data = &record[header.data.0..header.data.1];
        let end = header.position + header.count();
        let mut lost: Vec<LostEvent> = Vec::new();
        while !data.is_empty() {
            if data.len() < LOST_ENTRY_FIXED_BYTES {
                return Err(damaged("lost-event list is cut short"));
            }
            let position = u64_at(data, 0);
            let revision = u64_at(data, 8);
            let len = u16_at(data, 16);
            let stream = data
                .get(LOST_ENTRY_FIXED_BYTES..LOST_ENTRY_FIXED_BYTES + len)
                .and_then(|s| std::str::from_utf8(s).ok())
                .ok_or_else(|| damaged("lost stream name is damaged"))?;
            let in_order = lost.last().is_none_or(|l| l.position < position);
            if !(header.position..end).contains(&position) || !in_order {
                return Err(damaged("lost event lies outside the gap or out of order"));
            }
            lost.push(LostEvent {
                position,
                stream: stream.to_string(),
                revision,
            });
            data = &data[LOST_ENTRY_FIXED_BYTES + len..];
        }
        Ok(Gap {
            first: header.position,
            count: header.count(),
            recorded_at_micros: header.recorded_at_micros,
            reason,
            lost,
        })
    }
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
    /// An event's revision; a gap record's count of positions.
    pub revision: u64,
    pub recorded_at_micros: i64,
    pub id: Uuid,
    pub version: u32,
    pub commit: bool,
    /// A gap record, not an event.
    pub gap: bool,
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

/// The length of the record at the start of `buf` if its frame and fixed fields look
/// like a record's (known flags, zero reserved bytes, lengths that add up), without
/// checking the CRC. Used to look for intact records past damage, where most offsets
/// fail here long before a checksum is computed.
pub(crate) fn plausible_len(buf: &[u8]) -> Option<usize> {
    if buf.len() < RECORD_BYTES_MIN {
        return None;
    }
    let body_len = u32_at(buf, at::BODY_LEN) as usize;
    let fields = u16_at(buf, at::STREAM_LEN)
        + u16_at(buf, at::TYPE_LEN)
        + u32_at(buf, at::METADATA_LEN) as usize
        + u32_at(buf, at::DATA_LEN) as usize;
    let plausible = (BODY_FIXED_BYTES..=RECORD_BYTES_MAX - FRAME_BYTES).contains(&body_len)
        && buf[at::FLAGS] & !FLAGS_KNOWN == 0
        && buf[at::RESERVED_1] == 0
        && buf[at::RESERVED_2..at::RESERVED_2 + 2] == [0, 0]
        && BODY_FIXED_BYTES + fields == body_len;
    plausible.then_some(FRAME_BYTES + body_len)
}

/// The position, revision and stream name a damaged record's header still shows,
/// read without any check. Only a repair uses it, and only believes it when the stream
/// is one it knows and the revision is exactly that stream's next one.
pub(crate) fn unchecked_header_fields(buf: &[u8]) -> Option<(u64, u64, &str)> {
    let fixed = buf.get(..RECORD_BYTES_MIN)?;
    let stream_len = u16_at(fixed, at::STREAM_LEN);
    let stream = buf.get(at::VARIABLE..at::VARIABLE + stream_len)?;
    Some((
        u64_at(fixed, at::POSITION),
        u64_at(fixed, at::REVISION),
        std::str::from_utf8(stream).ok()?,
    ))
}

/// Decodes and checks the record at the start of `buf`.
pub(crate) fn decode_header(buf: &[u8]) -> Result<RecordHeader, Invalid> {
    if buf.len() < FRAME_BYTES {
        return Err(Invalid::Truncated);
    }
    let body_len = u32_at(buf, at::BODY_LEN) as usize;
    if !(BODY_FIXED_BYTES..=RECORD_BYTES_MAX - FRAME_BYTES).contains(&body_len) {
        return Err(Invalid::Damaged(format!(
            "impossible record length {body_len}"
        )));
    }
    let len = FRAME_BYTES + body_len;
    if buf.len() < len {
        return Err(Invalid::Truncated);
    }
    if crc32c::crc32c(&buf[FRAME_BYTES..len]) != u32_at(buf, at::CRC) {
        return Err(Invalid::Damaged("checksum mismatch".into()));
    }
    let stream_len = u16_at(buf, at::STREAM_LEN);
    let type_len = u16_at(buf, at::TYPE_LEN);
    let metadata_len = u32_at(buf, at::METADATA_LEN) as usize;
    let data_len = u32_at(buf, at::DATA_LEN) as usize;
    if BODY_FIXED_BYTES + stream_len + type_len + metadata_len + data_len != body_len {
        return Err(Invalid::Damaged(
            "field lengths do not add up to the record length".into(),
        ));
    }
    if buf[at::RESERVED_1] != 0 || buf[at::RESERVED_2..at::METADATA_LEN] != [0, 0] {
        return Err(Invalid::Damaged(
            "reserved header bytes are not zero".into(),
        ));
    }
    let flags = buf[at::FLAGS];
    if flags & !FLAGS_KNOWN != 0 {
        return Err(Invalid::Damaged(format!(
            "unknown record flags {flags:#04x}"
        )));
    }
    let mut offset = at::VARIABLE;
    let mut field = |n: usize| {
        let range = (offset, offset + n);
        offset += n;
        range
    };
    let stream = field(stream_len);
    let event_type = field(type_len);
    let metadata = field(metadata_len);
    let data = field(data_len);
    let mut id = [0; 16];
    id.copy_from_slice(&buf[at::ID..at::ID + 16]);
    Ok(RecordHeader {
        len,
        position: u64_at(buf, at::POSITION),
        revision: u64_at(buf, at::REVISION),
        recorded_at_micros: u64_at(buf, at::RECORDED_AT) as i64,
        id: Uuid::from_bytes(id),
        version: u32_at(buf, at::VERSION),
        commit: flags & FLAG_COMMIT != 0,
        gap: flags & FLAG_GAP != 0,
        stream,
        event_type,
        metadata,
        data,
    })
}

impl RecordHeader {
    /// The positions this record accounts for: one for an event, the count of a gap.
    pub(crate) fn count(&self) -> u64 {
        if self.gap { self.revision } else { 1 }
    }

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
        if self.gap {
            return Err(Invalid::Damaged(
                "a gap record was read where an event was expected".into(),
            ));
        }
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
    fn a_gap_record_round_trips_and_every_flip_is_detected() {
        let gap = Gap {
            first: 40,
            count: 5,
            recorded_at_micros: 1_700_000_000_000_000,
            reason: "repair: test".into(),
            lost: vec![
                LostEvent {
                    position: 41,
                    stream: "order-1".into(),
                    revision: 3,
                },
                LostEvent {
                    position: 44,
                    stream: "a".into(),
                    revision: 0,
                },
            ],
        };
        let mut bytes = Vec::new();
        gap.encode(&mut bytes);
        let header = decode_header(&bytes).unwrap();
        assert!(header.gap && header.commit);
        assert_eq!((header.position, header.count()), (40, 5));
        assert_eq!(Gap::decode(&header, &bytes).unwrap(), gap);
        assert!(header.to_event(&Bytes::from(bytes.clone()), 0).is_err());
        assert_eq!(plausible_len(&bytes), Some(bytes.len()));
        for bit in 0..bytes.len() * 8 {
            let mut bad = bytes.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(
                decode_header(&bad).is_err(),
                "flipping bit {bit} went unnoticed"
            );
        }
    }

    #[test]
    fn plausible_len_accepts_records_and_refuses_zeros_and_noise() {
        let good = sample(true);
        assert_eq!(plausible_len(&good), Some(good.len()));
        assert_eq!(plausible_len(&[0u8; 200]), None);
        let mut noise = good.clone();
        noise[at::RESERVED_1] = 7;
        assert_eq!(plausible_len(&noise), None);
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
