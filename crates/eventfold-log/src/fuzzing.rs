//! Entry points for the fuzz targets in `fuzz/` (not part of the API): each feeds
//! arbitrary bytes to one of the engine's decoders, the way a damaged or hostile file
//! would reach it, and checks what must hold whatever the bytes are.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;

use crate::io::{OpenMode, Storage};
use crate::record::{Gap, decode_header, plausible_len, unchecked_header_fields};
use crate::segment::SegmentIndex;
use crate::sim::SimStorage;

/// One record: decoding never panics, a record that decodes re-encodes to the same
/// bytes, and a plausible length is never shorter than a record.
pub fn record(bytes: &[u8]) {
    let _ = unchecked_header_fields(bytes);
    if let Some(len) = plausible_len(bytes) {
        assert!(len >= crate::record::RECORD_BYTES_MIN);
    }
    let Ok(header) = decode_header(bytes) else {
        return;
    };
    let record = &bytes[..header.len];
    if header.gap {
        if let Ok(gap) = Gap::decode(&header, record) {
            let mut again = Vec::new();
            gap.encode(&mut again);
            assert_eq!(again, record, "a gap record re-encodes to other bytes");
        }
        return;
    }
    let buffer = Bytes::copy_from_slice(record);
    if let Ok(event) = header.to_event(&buffer, 0) {
        let mut again = Vec::new();
        crate::record::encode(
            &crate::record::RecordParts {
                position: event.position.get(),
                revision: event.revision.get(),
                recorded_at_micros: header.recorded_at_micros,
                id: event.id,
                version: event.version,
                commit: header.commit,
                stream: &event.stream,
                event_type: &event.event_type,
                metadata: &event.metadata,
                data: &event.data,
            },
            &mut again,
        );
        assert_eq!(again, record, "a record re-encodes to other bytes");
    }
}

/// An index file: decoding never panics nor allocates what the bytes merely claim.
pub fn index_file(bytes: &[u8]) {
    if let Ok(index) = SegmentIndex::decode(bytes, 0) {
        assert_eq!(
            index.encode(0),
            bytes,
            "an index file re-encodes to other bytes"
        );
        let _ = index.end_position();
    }
}

/// A data directory whose only segment holds `bytes` (with a valid header put in
/// front when `with_header`): opening it read-only and read-write, reading it,
/// verifying it and planning a repair never panic; whatever opens for writing reads
/// back the same after a restart, and `verify` finds it intact.
pub fn segment(bytes: &[u8], with_header: bool) {
    let storage = SimStorage::new();
    let dir = Path::new("/data");
    let segments = dir.join("segments");
    if storage.create_dir_all(&segments).is_err() {
        return;
    }
    let mut contents = if with_header {
        crate::segment::encode_segment_header(0, 0).to_vec()
    } else {
        Vec::new()
    };
    contents.extend_from_slice(bytes);
    let path = segments.join("0000000000.seg");
    let Ok(file) = storage.open(&path, OpenMode::CreateNew) else {
        return;
    };
    if file
        .write_all_at(&contents, 0)
        .and_then(|()| file.sync_data())
        .is_err()
    {
        return;
    }
    drop(file);
    let storage: Arc<dyn Storage> = Arc::new(storage);
    let _ = crate::verify::verify_with(storage.as_ref(), dir);
    let _ = crate::repair::repair_with(
        storage.as_ref(),
        dir,
        &crate::repair::RepairOptions {
            dry_run: true,
            reason: String::new(),
        },
    );
    if let Ok(store) = crate::store::LogStore::open_read_only_with(storage.clone(), dir) {
        let _ = store.read_all_blocking(&eventfold_core::ReadAll::from(
            eventfold_core::Position(0),
            10_000,
        ));
    }
    let options = crate::options::LogOptions {
        ack_mark_interval_ms: 0,
        fsyncs_in_flight_max: 1,
        ..Default::default()
    };
    let first = match crate::store::LogStore::open_with(storage.clone(), dir, options.clone()) {
        Ok(store) => store.read_all_blocking(&eventfold_core::ReadAll::from(
            eventfold_core::Position(0),
            10_000,
        )),
        Err(_) => return,
    };
    let Ok(first) = first else { return };
    let report = crate::verify::verify_with(storage.as_ref(), dir);
    assert!(
        report
            .as_ref()
            .is_ok_and(crate::verify::VerifyReport::is_intact),
        "a store that opened for writing does not verify: {report:?}"
    );
    let store = crate::store::LogStore::open_with(storage, dir, options)
        .unwrap_or_else(|e| panic!("a recovered store does not open again: {e}"));
    let again = store
        .read_all_blocking(&eventfold_core::ReadAll::from(
            eventfold_core::Position(0),
            10_000,
        ))
        .unwrap_or_else(|e| panic!("a recovered store does not read again: {e}"));
    assert_eq!(first, again, "recovery changed what reads return");
}

/// Inputs the fuzz targets start from, built deterministically: `(target, bytes)`.
/// `fuzz/corpus/<target>/` holds them (a test checks they are there), and every file
/// of the corpus also runs through the entry points in the ordinary test suite.
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    use crate::record::{LostEvent, RecordParts, encode};
    let event = |position: u64, revision: u64, stream: &str, commit: bool, out: &mut Vec<u8>| {
        encode(
            &RecordParts {
                position,
                revision,
                recorded_at_micros: 1_767_225_600_000_000 + position as i64,
                id: uuid::Uuid::from_u64_pair(0x0190_0000_0000_7000, position),
                version: 1,
                commit,
                stream,
                event_type: "OrderPlaced",
                metadata: br#"{"correlation_id":"c-1"}"#,
                data: br#"{"total":42}"#,
            },
            out,
        );
    };
    let mut one = Vec::new();
    event(7, 3, "order-1", true, &mut one);
    let mut gap = Vec::new();
    Gap {
        first: 2,
        count: 3,
        recorded_at_micros: 1_767_225_600_000_000,
        reason: "repaired by fuzz seed".into(),
        lost: vec![LostEvent {
            position: 3,
            stream: "order-1".into(),
            revision: 1,
        }],
    }
    .encode(&mut gap);
    // A segment's records: single appends, a transaction over two streams, a gap.
    let mut records = Vec::new();
    event(0, 0, "order-1", true, &mut records);
    event(1, 0, "order-2", false, &mut records);
    event(2, 1, "order-1", true, &mut records);
    Gap {
        first: 3,
        count: 2,
        recorded_at_micros: 1_767_225_600_000_000,
        reason: "seed".into(),
        lost: Vec::new(),
    }
    .encode(&mut records);
    event(5, 2, "order-1", true, &mut records);
    let mut index = SegmentIndex {
        first_position: 0,
        len: 32 + records.len() as u64,
        ..SegmentIndex::default()
    };
    let mut numbers = crate::index::FastMap::default();
    let mut offset = 32u32;
    let mut rest = &records[..];
    while let Ok(header) = decode_header(rest) {
        if header.gap {
            if let Ok(gap) = Gap::decode(&header, &rest[..header.len]) {
                crate::segment::index_gap(&mut index, &mut numbers, &gap);
            }
        } else if let Ok(stream) = header.stream(&rest[..header.len]) {
            let stream = index.stream_number(&mut numbers, stream);
            index.entries.push(crate::segment::IndexEntry {
                offset,
                stream,
                revision: header.revision,
                id: header.id,
            });
        }
        offset += header.len as u32;
        rest = &rest[header.len..];
    }
    let with_header = |bytes: &[u8]| [&[0u8][..], bytes].concat();
    let mut torn = records.clone();
    torn.truncate(torn.len() - 9);
    let mut flipped = records.clone();
    flipped[100] ^= 0x04;
    vec![
        ("record", one),
        ("record", gap),
        ("index_file", index.encode(0)),
        ("segment", with_header(&records)),
        ("segment", with_header(&torn)),
        ("segment", with_header(&flipped)),
    ]
}
