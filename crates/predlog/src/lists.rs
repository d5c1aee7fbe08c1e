//! The value list columns (features, outputs), encoded by hand as their rows arrive.
//!
//! A list that is never null, of floats that are never null, has levels known from its
//! length alone: definition 1 for each value (0 for an empty list), repetition 0 at the
//! start of a row and 1 after. So a row's levels are two or three runs of Parquet's RLE
//! encoding, written once per row rather than once per value, and its values are PLAIN
//! floats, copied as they are into the page being filled. A page is compressed (Snappy) when
//! it holds [`PAGE_BYTES`] of values, so a row group being gathered holds its lists
//! compressed. Through Parquet's column writer (levels encoded one value at a time, values
//! copied into a list, then into the page) the list columns were more than half of the
//! writer's time in the service.
//!
//! Pages are Parquet data pages of format v1 (repetition levels, then definition levels, each
//! with its 4-byte length, then the values; the whole page compressed), every page starts
//! a row, and the chunk carries its offset index like the writer's other columns.

use bytes::Bytes;
use parquet::basic::{Compression, Encoding};
use parquet::column::page::{CompressedPage, Page, PageWriter};
use parquet::column::writer::ColumnCloseResult;
use parquet::errors::{ParquetError, Result};
use parquet::file::metadata::ColumnChunkMetaData;
use parquet::file::page_index::offset_index::{OffsetIndexMetaData, PageLocation};
use parquet::file::writer::{SerializedPageWriter, SerializedRowGroupWriter, TrackedWrite};
use parquet::schema::types::ColumnDescPtr;

/// Bytes of values a page holds before it is compressed and closed (it closes after the row
/// that reaches it, so a page holds at least one row).
pub(crate) const PAGE_BYTES: usize = 256 << 10;

/// Levels of maximum 1 in Parquet's RLE/bit-packing hybrid encoding, as RLE runs only: a
/// run is its length shifted left once (ULEB128), then its value in one byte.
#[derive(Default)]
struct LevelRuns {
    bytes: Vec<u8>,
    value: u8,
    count: u32,
}

impl LevelRuns {
    /// Adds `count` levels of `value` (0 or 1), joined to the run before when it has the same
    /// value.
    fn add(&mut self, value: u8, count: u32) {
        if count == 0 {
            return;
        }
        if self.count > 0 && self.value == value {
            self.count += count;
        } else {
            self.end_run();
            self.value = value;
            self.count = count;
        }
    }

    fn end_run(&mut self) {
        if self.count == 0 {
            return;
        }
        let mut header = u64::from(self.count) << 1;
        loop {
            let byte = (header & 0x7f) as u8;
            header >>= 7;
            if header == 0 {
                self.bytes.push(byte);
                break;
            }
            self.bytes.push(byte | 0x80);
        }
        self.bytes.push(self.value);
        self.count = 0;
    }

    /// The encoded levels, the last run ended.
    fn finish(&mut self) -> &[u8] {
        self.end_run();
        &self.bytes
    }

    fn clear(&mut self) {
        self.bytes.clear();
        self.count = 0;
    }
}

/// One value list column's chunk of the row group being gathered.
pub(crate) struct ListChunk {
    /// The page being filled: its values (PLAIN, little-endian floats) and levels.
    values: Vec<u8>,
    repetition: LevelRuns,
    definition: LevelRuns,
    /// Levels in the page (a value each, one for an empty list) and the row it starts at.
    page_levels: u32,
    page_first_row: i64,
    /// The chunk's closed pages (headers and compressed data), their places, and its totals.
    pages: Vec<u8>,
    locations: Vec<PageLocation>,
    rows: u64,
    levels: i64,
    uncompressed: i64,
    /// Reused: the page assembled before compression, the room it is compressed into, and
    /// the compressor.
    assembled: Vec<u8>,
    compressed: Vec<u8>,
    snappy: snap::raw::Encoder,
}

impl Default for ListChunk {
    fn default() -> Self {
        ListChunk {
            values: Vec::new(),
            repetition: LevelRuns::default(),
            definition: LevelRuns::default(),
            page_levels: 0,
            page_first_row: 0,
            pages: Vec::new(),
            locations: Vec::new(),
            rows: 0,
            levels: 0,
            uncompressed: 0,
            assembled: Vec::new(),
            compressed: Vec::new(),
            snappy: snap::raw::Encoder::new(),
        }
    }
}

impl ListChunk {
    /// Adds a row given in pieces; a page that has reached [`PAGE_BYTES`] is closed after it.
    pub(crate) fn push<'v>(&mut self, parts: impl Iterator<Item = &'v [f32]>) -> Result<()> {
        let start = self.values.len();
        for part in parts {
            // PLAIN floats are little-endian: the values' own bytes on this target.
            #[cfg(target_endian = "little")]
            self.values.extend_from_slice(arrow::datatypes::ToByteSlice::to_byte_slice(part));
            #[cfg(not(target_endian = "little"))]
            for v in part {
                self.values.extend_from_slice(&v.to_le_bytes());
            }
        }
        let n = u32::try_from((self.values.len() - start) / 4)
            .map_err(|_| ParquetError::General("a list of more than 2^32 values".into()))?;
        if n == 0 {
            self.repetition.add(0, 1);
            self.definition.add(0, 1);
            self.page_levels += 1;
        } else {
            self.repetition.add(0, 1);
            self.repetition.add(1, n - 1);
            self.definition.add(1, n);
            self.page_levels += n;
        }
        self.rows += 1;
        if self.values.len() >= PAGE_BYTES {
            self.close_page()?;
        }
        Ok(())
    }

    /// Bytes of memory the chunk holds (its closed pages and the page being filled).
    pub(crate) fn held(&self) -> usize {
        self.pages.len() + self.values.len() + self.repetition.bytes.len() + self.definition.bytes.len()
    }

    /// Compresses the page being filled and adds it to the chunk.
    fn close_page(&mut self) -> Result<()> {
        if self.page_levels == 0 {
            return Ok(());
        }
        self.assembled.clear();
        for levels in [self.repetition.finish(), self.definition.finish()] {
            let length = u32::try_from(levels.len()).map_err(|_| ParquetError::General("levels over 4 GiB".into()))?;
            self.assembled.extend_from_slice(&length.to_le_bytes());
            self.assembled.extend_from_slice(levels);
        }
        self.assembled.extend_from_slice(&self.values);
        let room = snap::raw::max_compress_len(self.assembled.len());
        if self.compressed.len() < room {
            self.compressed.resize(room, 0);
        }
        let size = self
            .snappy
            .compress(&self.assembled, &mut self.compressed)
            .map_err(|e| ParquetError::External(Box::new(e)))?;
        let page = Page::DataPage {
            buf: Bytes::copy_from_slice(&self.compressed[..size]),
            num_values: self.page_levels,
            encoding: Encoding::PLAIN,
            def_level_encoding: Encoding::RLE,
            rep_level_encoding: Encoding::RLE,
            statistics: None,
        };
        let at = self.pages.len();
        let mut sink = TrackedWrite::new(&mut self.pages);
        let spec = SerializedPageWriter::new(&mut sink).write_page(CompressedPage::new(page, self.assembled.len()))?;
        sink.into_inner()?;
        self.locations.push(PageLocation {
            offset: at as i64,
            compressed_page_size: i32::try_from(spec.bytes_written)
                .map_err(|_| ParquetError::General("a page over 2 GiB".into()))?,
            first_row_index: self.page_first_row,
        });
        self.levels += i64::from(self.page_levels);
        self.uncompressed += spec.uncompressed_size as i64;
        self.page_first_row = self.rows as i64;
        self.page_levels = 0;
        self.values.clear();
        self.repetition.clear();
        self.definition.clear();
        Ok(())
    }

    /// Closes the last page and appends the chunk as the row group's next column, whose
    /// descriptor is `column`; the chunk is emptied, keeping its room.
    pub(crate) fn write_to<W: std::io::Write + Send>(
        &mut self,
        column: ColumnDescPtr,
        group: &mut SerializedRowGroupWriter<'_, W>,
    ) -> Result<()> {
        self.close_page()?;
        let bytes = self.pages.len();
        let metadata = ColumnChunkMetaData::builder(column)
            .set_compression(Compression::SNAPPY)
            .set_encodings(vec![Encoding::PLAIN, Encoding::RLE])
            .set_num_values(self.levels)
            .set_total_compressed_size(bytes as i64)
            .set_total_uncompressed_size(self.uncompressed)
            .set_data_page_offset(0)
            .build()?;
        let close = ColumnCloseResult {
            bytes_written: bytes as u64,
            rows_written: self.rows,
            metadata,
            bloom_filter: None,
            column_index: None,
            offset_index: Some(OffsetIndexMetaData {
                page_locations: std::mem::take(&mut self.locations),
                unencoded_byte_array_data_bytes: None,
            }),
        };
        // Appending reads the chunk back from memory: lent as `Bytes`, and taken back.
        let chunk = Bytes::from(std::mem::take(&mut self.pages));
        let appended = group.append_column(&chunk, close);
        self.pages = chunk.try_into_mut().map(Vec::from).unwrap_or_default();
        self.clear();
        appended
    }

    /// Empties the chunk, keeping its room.
    pub(crate) fn clear(&mut self) {
        self.values.clear();
        self.repetition.clear();
        self.definition.clear();
        self.page_levels = 0;
        self.page_first_row = 0;
        self.pages.clear();
        self.locations.clear();
        self.rows = 0;
        self.levels = 0;
        self.uncompressed = 0;
    }
}
