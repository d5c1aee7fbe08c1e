//! What an outside probe did to the batch scorer, each kept fixed: outputs onto special
//! files or onto the input, duplicate feature columns, damaged Parquet pages, and
//! temporary files left behind by a failed job.

use super::{feature_batch, golden_rows, model, no_partial_files, options, write_input, write_parquet};
use liveprofile_batch::{BatchError, Format, OnError, ScoreOptions, plan_outputs, score_file};
use std::os::unix::fs::FileTypeExt;
use std::path::Path;

fn overwrite() -> ScoreOptions {
    ScoreOptions { overwrite: true, ..options(Format::Parquet) }
}

fn mkfifo(path: &Path) {
    let status = std::process::Command::new("mkfifo").arg(path).status().expect("mkfifo runs");
    assert!(status.success(), "mkfifo {}", path.display());
}

fn is_fifo(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_fifo())
}

fn assert_refused(result: Result<liveprofile_batch::FileReport, BatchError>, output: &Path, why: &str) {
    match result {
        Err(BatchError::Output { path, reason }) => {
            assert_eq!(path, output);
            assert!(reason.contains(why), "{reason}");
        }
        other => panic!("{} was not refused: {other:?}", output.display()),
    }
}

#[test]
fn an_output_that_is_not_a_regular_file_is_refused_and_left_as_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let m = model("taobao_purchase");
    let input = dir.path().join("in.parquet");
    write_input(&input, &feature_batch(&m, &golden_rows("taobao_purchase", 20)));

    // A FIFO: a rename would replace it (and opening it would block).
    let fifo = dir.path().join("scores.fifo");
    mkfifo(&fifo);
    for opts in [overwrite(), options(Format::Parquet)] {
        assert_refused(score_file(&m, &input, &fifo, &opts, &|_| {}), &fifo, "is a FIFO, not a regular file");
        assert!(is_fifo(&fifo));
    }
    let err = plan_outputs(std::slice::from_ref(&input), &fifo, Format::Parquet).unwrap_err();
    assert!(err.to_string().contains("scores.fifo: refusing to write the output there: it is a FIFO"), "{err}");

    // A FIFO where the rejects file goes.
    let output = dir.path().join("out.parquet");
    mkfifo(&dir.path().join("out.parquet.rejects.csv"));
    let err = score_file(&m, &input, &output, &overwrite(), &|_| {}).unwrap_err();
    assert!(err.to_string().contains("out.parquet.rejects.csv: refusing to write the output there"), "{err}");
    assert!(!output.exists());

    // A folder where one of several outputs goes, and a symbolic link.
    let second = dir.path().join("second.parquet");
    std::fs::copy(&input, &second).unwrap();
    let out_dir = dir.path().join("scores");
    std::fs::create_dir_all(out_dir.join("second.scores.parquet")).unwrap();
    let err = plan_outputs(&[input.clone(), second.clone()], &out_dir, Format::Parquet).unwrap_err();
    assert!(err.to_string().contains("second.scores.parquet: refusing to write the output there: it is a folder"));
    let target = dir.path().join("elsewhere.parquet");
    std::fs::write(&target, b"kept").unwrap();
    let link = dir.path().join("link.parquet");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    assert_refused(score_file(&m, &input, &link, &overwrite(), &|_| {}), &link, "is a symbolic link");
    assert_eq!(std::fs::read(&target).unwrap(), b"kept");

    // `/dev/null --overwrite` replaced the device node. The check runs before anything is
    // opened for writing, so pointing the job at the real device is safe.
    let null = Path::new("/dev/null");
    if std::fs::symlink_metadata(null).is_ok_and(|m| m.file_type().is_char_device()) {
        assert_refused(score_file(&m, &input, null, &overwrite(), &|_| {}), null, "is a character device");
        assert!(std::fs::symlink_metadata(null).unwrap().file_type().is_char_device());
    }
    no_partial_files(dir.path());
}

#[test]
fn the_input_is_never_replaced_by_its_scores() {
    let dir = tempfile::tempdir().unwrap();
    let m = model("taobao_purchase");
    let input = dir.path().join("in.parquet");
    write_input(&input, &feature_batch(&m, &golden_rows("taobao_purchase", 20)));
    let before = std::fs::read(&input).unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    let hard_link = dir.path().join("hard.parquet");
    std::fs::hard_link(&input, &hard_link).unwrap();
    // The same path, the same file by another spelling, and by another name (a hard link:
    // only the device and inode tell).
    for output in [input.clone(), dir.path().join("sub/../in.parquet"), hard_link.clone()] {
        assert_refused(score_file(&m, &input, &output, &overwrite(), &|_| {}), &output, "is the input");
        assert_refused(score_file(&m, &input, &output, &options(Format::Parquet), &|_| {}), &output, "is the input");
        let err = plan_outputs(std::slice::from_ref(&input), &output, Format::Parquet).unwrap_err();
        assert!(err.to_string().contains("the scores would replace their input"), "{err}");
    }
    // Several inputs into a folder where one of them is another's output.
    let out_dir = dir.path().join("scores");
    std::fs::create_dir(&out_dir).unwrap();
    let old_output = out_dir.join("in.scores.parquet");
    std::fs::copy(&input, &old_output).unwrap();
    let err = plan_outputs(&[input.clone(), old_output.clone()], &out_dir, Format::Parquet).unwrap_err();
    assert!(matches!(&err, BatchError::Output { path, .. } if path == &old_output), "{err}");
    assert_eq!(std::fs::read(&input).unwrap(), before);
    no_partial_files(dir.path());
}

#[test]
fn a_duplicate_feature_or_kept_column_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let m = model("taobao_purchase");
    let batch = feature_batch(&m, &golden_rows("taobao_purchase", 20));
    let input = dir.path().join("in.csv");
    write_input(&input, &batch);
    let feature = m.schema().features[1].name.clone();
    for column in [feature.as_str(), "user_id"] {
        // The column again at the end, with other values: which one is scored is ambiguous.
        let text = std::fs::read_to_string(&input).unwrap();
        let dup: String = text
            .lines()
            .enumerate()
            .map(|(i, l)| if i == 0 { format!("{l},{column}\n") } else { format!("{l},7\n") })
            .collect();
        let path = dir.path().join(format!("dup_{column}.csv"));
        std::fs::write(&path, dup).unwrap();
        let output = dir.path().join("out.parquet");
        let err = score_file(&m, &path, &output, &options(Format::Parquet), &|_| {}).unwrap_err();
        match &err {
            BatchError::DuplicateColumn { column: c, count, .. } => assert_eq!((c.as_str(), *count), (column, 2)),
            other => panic!("{other}"),
        }
        assert!(err.to_string().contains(&format!("column {column:?} appears 2 times")), "{err}");
        assert!(!output.exists());
    }
    no_partial_files(dir.path());
}

/// The byte range of column `name` in row group `group` of a Parquet file.
fn column_chunk(path: &Path, group: usize, name: &str) -> (usize, usize) {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let reader = SerializedFileReader::new(std::fs::File::open(path).unwrap()).unwrap();
    let rg = reader.metadata().row_group(group);
    let c = (0..rg.num_columns()).find(|&c| rg.column(c).column_path().string() == name).unwrap();
    let (start, len) = rg.column(c).byte_range();
    (start as usize, len as usize)
}

#[test]
fn a_damaged_parquet_page_stops_the_job_naming_the_row_group_and_publishes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let m = model("user_tags");
    let input = dir.path().join("in.parquet");
    // Two row groups of 1,000 rows; the second one's `visits_1h` column is damaged.
    write_parquet(&input, &feature_batch(&m, &golden_rows("user_tags", 2000)), 1000);
    let clean = std::fs::read(&input).unwrap();
    let (start, len) = column_chunk(&input, 1, "visits_1h");
    let output = dir.path().join("out.parquet");
    std::fs::write(&output, b"the previous run's scores").unwrap();
    // In the middle of the data (the decoder panicked on it, which read as the end of the
    // input: 1,000 rows scored, exit 0), and at a page header (a decode error).
    for at in [start + len / 2, start] {
        let mut bytes = clean.clone();
        bytes[at..at + 8].iter_mut().for_each(|b| *b ^= 0xa5);
        std::fs::write(&input, &bytes).unwrap();
        let err = score_file(&m, &input, &output, &overwrite(), &|_| {}).unwrap_err();
        match &err {
            BatchError::RowGroup { row_group, first_row, .. } => assert_eq!((*row_group, *first_row), (1, 1000)),
            other => panic!("byte {at}: {other}"),
        }
        assert!(err.to_string().contains("in.parquet: row group 1 (from row 1000) cannot be read: "), "{err}");
        // The earlier output stays, and the temporary file holding the first row group's
        // scores is gone.
        assert_eq!(std::fs::read(&output).unwrap(), b"the previous run's scores");
        no_partial_files(dir.path());
    }
}

#[test]
fn a_job_that_fails_while_publishing_leaves_no_temporary_file() {
    let dir = tempfile::tempdir().unwrap();
    let m = model("user_tags");
    let input = dir.path().join("in.parquet");
    write_input(&input, &feature_batch(&m, &golden_rows("user_tags", 900)));
    let output = dir.path().join("out.parquet");
    // A folder appears under the output's name while the job runs: the final rename fails
    // after every row was written, as a full disk fails the last write or the sync.
    let blocker = |_: u64| {
        let _ = std::fs::create_dir_all(output.join("occupied"));
    };
    let opts = ScoreOptions { on_error: OnError::Skip, ..overwrite() };
    let err = score_file(&m, &input, &output, &opts, &blocker).unwrap_err();
    assert!(matches!(&err, BatchError::Io { path, .. } if path == &output), "{err}");
    assert!(output.join("occupied").is_dir());
    no_partial_files(dir.path());
}
