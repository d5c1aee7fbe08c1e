//! The buffer between the requests and the writer: offered rows copied into three growing
//! buffers (the rows' numbers, their text, their values), which the writer takes whole and
//! gives back emptied. In steady traffic neither side allocates or frees per row.

use crate::{PredictionRecord, RowOutputs};
use liveprofile_runtime::LoadedModel;
use std::sync::Arc;

/// A buffer gives no room back below this many values (floats or text bytes).
const KEPT_ROOM: usize = 1 << 16;

/// Rows offered and not yet written, in offer order.
#[derive(Debug, Default)]
pub(crate) struct Staged {
    rows: Vec<StagedRow>,
    /// Each row's six texts, one after the other.
    text: String,
    /// Each row's features, then its outputs.
    values: Vec<f32>,
}

/// A row's numbers, and where its texts and values end in the shared buffers (each starts
/// where the one before it ends; a row's first where the previous row's last ends).
#[derive(Debug)]
struct StagedRow {
    time_ms: i64,
    as_of_ms: Option<i64>,
    api: &'static str,
    arm: &'static str,
    model: Arc<LoadedModel>,
    queue_us: u64,
    compute_us: u64,
    /// Request id, user, platform, room, experiment, experiment arm.
    text_ends: [usize; 6],
    /// Features, outputs.
    value_ends: [usize; 2],
}

impl Staged {
    /// Rows held.
    pub(crate) fn len(&self) -> usize {
        self.rows.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Bytes of text and values held (4 a value).
    pub(crate) fn bytes(&self) -> usize {
        self.text.len() + 4 * self.values.len()
    }

    /// What [`Staged::bytes`] grows by when `r` is pushed.
    pub(crate) fn bytes_of(r: &PredictionRecord<'_>) -> usize {
        r.texts().iter().map(|t| t.len()).sum::<usize>() + 4 * (r.features.len() + r.outputs.len())
    }

    /// Copies a record in.
    pub(crate) fn push(&mut self, r: &PredictionRecord<'_>) {
        let text_ends = r.texts().map(|t| {
            self.text.push_str(t);
            self.text.len()
        });
        self.values.extend_from_slice(r.features);
        let features_end = self.values.len();
        for part in r.outputs.parts() {
            self.values.extend_from_slice(part);
        }
        self.rows.push(StagedRow {
            time_ms: r.time_ms,
            as_of_ms: r.as_of_ms,
            api: r.api,
            arm: r.arm,
            model: r.model.clone(),
            queue_us: r.queue_us,
            compute_us: r.compute_us,
            text_ends,
            value_ends: [features_end, self.values.len()],
        });
    }

    /// The rows as records, in offer order.
    pub(crate) fn records(&self) -> impl Iterator<Item = PredictionRecord<'_>> {
        let mut text_at = 0;
        let mut value_at = 0;
        self.rows.iter().map(move |row| {
            let mut next_text = |end: usize| {
                let t = &self.text[text_at..end];
                text_at = end;
                t
            };
            let [request_id, user_id, platform, room_id, experiment, experiment_arm] =
                row.text_ends.map(&mut next_text);
            let [features_end, outputs_end] = row.value_ends;
            let (features, outputs) = (&self.values[value_at..features_end], &self.values[features_end..outputs_end]);
            value_at = outputs_end;
            PredictionRecord {
                request_id,
                time_ms: row.time_ms,
                as_of_ms: row.as_of_ms,
                api: row.api,
                user_id,
                platform,
                room_id,
                model: &row.model,
                arm: row.arm,
                experiment,
                experiment_arm,
                features,
                outputs: RowOutputs::Values(outputs),
                queue_us: row.queue_us,
                compute_us: row.compute_us,
            }
        })
    }

    /// Empties the buffers. Each keeps its room for the next rows, but gives half of it back
    /// when it held less than a quarter of it: after a burst (the queue full while the disk
    /// was slow) the memory goes back within a few drains, and steady traffic reallocates
    /// nothing.
    pub(crate) fn clear(&mut self) {
        /// The room to keep of `capacity` after a drain that used `used` of it.
        fn kept(capacity: usize, used: usize, floor: usize) -> usize {
            if capacity > floor && used < capacity / 4 { (capacity / 2).max(floor) } else { capacity }
        }
        let rows = kept(self.rows.capacity(), self.rows.len(), KEPT_ROOM / 64);
        let text = kept(self.text.capacity(), self.text.len(), KEPT_ROOM);
        let values = kept(self.values.capacity(), self.values.len(), KEPT_ROOM);
        self.rows.clear();
        self.text.clear();
        self.values.clear();
        // No-ops when the room is kept whole.
        self.rows.shrink_to(rows);
        self.text.shrink_to(text);
        self.values.shrink_to(values);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use liveprofile_runtime::{OutputScores, Scores};

    fn model() -> Arc<LoadedModel> {
        let dir = liveprofile_testkit::bundled_models().join("conversion/1");
        Arc::new(liveprofile_runtime::load_package(&dir).expect("bundled conversion package"))
    }

    #[test]
    fn records_come_back_as_offered_and_the_room_shrinks_after_a_burst() {
        let model = model();
        let scores = Scores {
            rows: 2,
            outputs: vec![
                OutputScores { width: 1, values: vec![0.25, 0.5] },
                OutputScores { width: 2, values: vec![1.0, 2.0, 3.0, 4.0] },
            ],
        };
        let features = [1.5f32, -0.0, f32::NAN];
        let record = |k: usize, outputs| record(&model, &features, k, outputs);
        let mut staged = Staged::default();
        for round in 0..2 {
            let offered: Vec<PredictionRecord<'_>> = (0..6)
                .map(|k| match k % 3 {
                    0 => record(k, RowOutputs::Values(&[])),
                    n => record(k, RowOutputs::Scored { scores: &scores, row: n - 1 }),
                })
                .collect();
            for r in &offered {
                staged.push(r);
            }
            assert_eq!(staged.len(), 6);
            assert_eq!(staged.bytes(), offered.iter().map(Staged::bytes_of).sum::<usize>());
            let back: Vec<PredictionRecord<'_>> = staged.records().collect();
            for (k, (a, b)) in offered.iter().zip(&back).enumerate() {
                assert_eq!(a.texts(), b.texts(), "round {round} row {k}");
                let bits = |v: &mut dyn Iterator<Item = f32>| v.map(f32::to_bits).collect::<Vec<u32>>();
                assert_eq!(bits(&mut a.features.iter().copied()), bits(&mut b.features.iter().copied()));
                assert_eq!(
                    bits(&mut a.outputs.parts().flatten().copied()),
                    bits(&mut b.outputs.parts().flatten().copied())
                );
                assert_eq!(
                    (a.time_ms, a.as_of_ms, a.api, a.arm, a.queue_us, a.compute_us),
                    (b.time_ms, b.as_of_ms, b.api, b.arm, b.queue_us, b.compute_us)
                );
                assert!(Arc::ptr_eq(a.model, b.model));
            }
            assert_eq!(
                back.iter().map(|r| r.outputs.parts().flatten().copied().collect::<Vec<f32>>()).collect::<Vec<_>>(),
                vec![
                    vec![],
                    vec![0.25, 1.0, 2.0],
                    vec![0.5, 3.0, 4.0],
                    vec![],
                    vec![0.25, 1.0, 2.0],
                    vec![0.5, 3.0, 4.0]
                ]
            );
            drop(back);
            staged.clear();
            assert!(staged.is_empty());
        }
        // A burst leaves room behind; drains of little give it back, half at a time.
        let wide = vec![0.0f32; 1 << 20];
        staged.push(&PredictionRecord { features: &wide, ..record(0, RowOutputs::Values(&[])) });
        staged.clear();
        let burst = staged.values.capacity();
        assert!(burst >= 1 << 20);
        staged.clear();
        assert!(staged.values.capacity() <= burst / 2 + burst / 8, "{} of {burst}", staged.values.capacity());
        for _ in 0..20 {
            staged.push(&record(1, RowOutputs::Values(&[1.0])));
            staged.clear();
        }
        assert!(staged.values.capacity() < 2 * KEPT_ROOM, "{}", staged.values.capacity());
    }

    fn record<'a>(
        model: &'a Arc<LoadedModel>,
        features: &'a [f32],
        k: usize,
        outputs: RowOutputs<'a>,
    ) -> PredictionRecord<'a> {
        PredictionRecord {
            request_id: ["", "req-1", "请求"][k % 3],
            time_ms: k as i64,
            as_of_ms: k.is_multiple_of(2).then_some(-(k as i64)),
            api: "v1.ScoreTags",
            user_id: ["u", ""][k % 2],
            platform: "douyin",
            room_id: "",
            model,
            arm: "stable",
            experiment: "exp",
            experiment_arm: ["a", "b"][k % 2],
            features: &features[..k % 4],
            outputs,
            queue_us: k as u64,
            compute_us: 2 * k as u64,
        }
    }
}
