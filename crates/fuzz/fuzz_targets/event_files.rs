//! Event files: bytes written as a Parquet event file and read with the events crate's
//! reader (schema check, every row decoded and checked, row groups one at a time), as a
//! Taobao UserBehavior CSV imported to an event file and read back, or as an identity CSV.
//!
//! Input: a mode byte (0 Parquet, 1 Taobao CSV, 2 identity CSV), then the file.
#![no_main]

use liveprofile_events::EventReader;
use liveprofile_fuzz::{Input, fresh_dir, seeds};

fn read_parquet(path: &std::path::Path) {
    let Ok(reader) = EventReader::open(path) else { return };
    let total = reader.total_rows();
    let Ok(all) = reader.read_all() else { return };
    assert!((all.events.len() + all.rejected.len()) as u64 <= total, "more rows decoded than the file holds");
    for e in &all.events {
        e.validate().expect("a decoded event passes the contract");
    }
    if let Ok(groups) = EventReader::row_group_sizes(path) {
        for g in 0..groups.len().min(4) {
            if let Ok(mut r) = EventReader::open_row_groups(path, Some(g)) {
                while let Ok(Some(_)) = r.next_batch() {}
            }
        }
    }
}

libfuzzer_sys::fuzz_target!(init: liveprofile_fuzz::start("event_files", seeds::event_files), |data: &[u8]| {
    let mut input = Input::new(data);
    let mode = input.byte() % 3;
    let dir = fresh_dir("events");
    let file = dir.join("input");
    std::fs::write(&file, input.rest()).expect("scratch write");
    match mode {
        0 => read_parquet(&file),
        1 => {
            let out = dir.join("imported.parquet");
            if let Ok(report) = liveprofile_import::import_taobao(&file, &out, false) {
                // What the importer wrote, the reader reads back whole and valid.
                let back = EventReader::open(&out).and_then(EventReader::read_all).expect("an imported file reads back");
                assert!(back.rejected.is_empty(), "the importer wrote rows the reader rejects: {:?}", back.rejected.first());
                assert_eq!(back.events.len() as u64, report.events, "imported and read-back event counts differ");
            }
        }
        _ => {
            let _ = liveprofile_store::read_identity_file(&file);
        }
    }
});
