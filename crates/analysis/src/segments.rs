//! User segments: k-means (linfa) on the tag-probability vectors. k is chosen over a range
//! by the mean silhouette on a fixed sample of users; each k is fitted on the sample, and
//! the chosen k is then fitted on every user. Each segment is described by its size, the
//! tags most over-represented in it (mean probability in the segment over the mean in the
//! population), its platform mix and its mean conversion score when there is one. A PCA
//! (linfa) gives the 2-D picture.

use crate::AnalysisError;
use crate::table::TagTable;
use linfa::prelude::*;
use linfa_clustering::KMeans;
use linfa_reduction::Pca;
use ndarray::{Array2, ArrayView2};
use serde::Serialize;
use std::collections::BTreeMap;

/// Segmentation settings.
#[derive(Debug, Clone, Copy)]
pub struct SegmentOptions {
    /// Smallest k tried.
    pub k_min: usize,
    /// Largest k tried.
    pub k_max: usize,
    /// k-means initialisations per fit (the best inertia is kept).
    pub n_runs: usize,
    /// Users in the sample that k is chosen on.
    pub sample: usize,
}

impl Default for SegmentOptions {
    fn default() -> Self {
        SegmentOptions { k_min: 2, k_max: 8, n_runs: 10, sample: 3000 }
    }
}

/// The silhouette and inertia of one k on the sample.
#[derive(Debug, Clone, Serialize)]
pub struct KScore {
    /// k.
    pub k: usize,
    /// Mean silhouette on the sample (-1 to 1, higher is better separated).
    pub silhouette: f64,
    /// Sum of squared distances to the nearest centroid, on the sample.
    pub inertia: f64,
}

/// A tag of a segment, with how much more common it is there.
#[derive(Debug, Clone, Serialize)]
pub struct SegmentTag {
    /// Tag.
    pub tag: String,
    /// Mean probability in the segment.
    pub mean: f64,
    /// Over the population's mean probability.
    pub lift: f64,
}

/// One segment.
#[derive(Debug, Clone, Serialize)]
pub struct Segment {
    /// Segment number.
    pub id: usize,
    /// Users.
    pub size: u64,
    /// Share of all users.
    pub share: f64,
    /// Tags by lift, highest first.
    pub tags: Vec<SegmentTag>,
    /// Share of the segment's users per platform (when the input has platforms).
    pub platforms: BTreeMap<String, f64>,
    /// Mean conversion score (when the input has one).
    pub mean_conversion: Option<f64>,
    /// Centroid, in tag order.
    pub centroid: Vec<f64>,
    /// Centroid in the PCA plane.
    pub centroid_2d: [f64; 2],
}

/// The segmentation of every user.
#[derive(Debug, Clone, Serialize)]
pub struct Segmentation {
    /// The k chosen.
    pub k: usize,
    /// Every k tried.
    pub scores: Vec<KScore>,
    /// Sum of squared distances of every user to its centroid.
    pub inertia: f64,
    /// Wall time of the final k-means fit on every user (all initialisations), seconds.
    pub fit_seconds: f64,
    /// Segments, largest first (their `id` is the number users are assigned).
    pub segments: Vec<Segment>,
    /// Share of the variance the two PCA axes explain.
    pub pca_explained: [f64; 2],
    /// Segment of each user, in input order.
    #[serde(skip)]
    pub assignments: Vec<usize>,
    /// PCA coordinates of each user.
    #[serde(skip)]
    pub projection: Vec<[f64; 2]>,
}

fn records(table: &TagTable) -> ArrayView2<'_, f64> {
    ArrayView2::from_shape((table.len(), table.tags.len()), &table.scores).expect("rows x tags")
}

fn squared(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// Fits k-means with `n_runs` initialisations; returns centroids and assignments.
pub fn kmeans(data: ArrayView2<'_, f64>, k: usize, n_runs: usize) -> Result<(Array2<f64>, Vec<usize>), AnalysisError> {
    let dataset = DatasetBase::from(data);
    let model = KMeans::params(k)
        .n_runs(n_runs)
        .max_n_iterations(300)
        .tolerance(1e-4)
        .fit(&dataset)
        .map_err(|e| AnalysisError::Segments(e.to_string()))?;
    let labels = model.predict(&data);
    Ok((model.centroids().clone(), labels.to_vec()))
}

/// Sum of squared distances of rows to their centroids.
pub fn inertia(data: ArrayView2<'_, f64>, centroids: &Array2<f64>, labels: &[usize]) -> f64 {
    data.outer_iter()
        .zip(labels)
        .map(|(row, &c)| squared(row.as_slice().expect("contiguous"), centroids.row(c).as_slice().expect("contiguous")))
        .sum()
}

/// Mean silhouette of labelled rows (Euclidean distances).
pub fn silhouette(data: ArrayView2<'_, f64>, labels: &[usize], k: usize) -> f64 {
    let n = data.nrows();
    let rows: Vec<&[f64]> = data.outer_iter().map(|r| r.to_slice().expect("contiguous")).collect();
    let sizes = labels.iter().fold(vec![0usize; k], |mut s, &l| {
        s[l] += 1;
        s
    });
    let mut total = 0.0;
    for i in 0..n {
        let mut sums = vec![0.0; k];
        for j in 0..n {
            if i != j {
                sums[labels[j]] += squared(rows[i], rows[j]).sqrt();
            }
        }
        let own = labels[i];
        if sizes[own] <= 1 {
            continue; // a singleton's silhouette is 0
        }
        let a = sums[own] / (sizes[own] - 1) as f64;
        let b = (0..k)
            .filter(|&c| c != own && sizes[c] > 0)
            .map(|c| sums[c] / sizes[c] as f64)
            .fold(f64::INFINITY, f64::min);
        if b.is_finite() {
            total += (b - a) / a.max(b);
        }
    }
    total / n as f64
}

/// Segments every user of the table.
pub fn segment(table: &TagTable, options: &SegmentOptions) -> Result<Segmentation, AnalysisError> {
    let n = table.len();
    let needed = (options.k_max * 10).max(50);
    if n < needed {
        return Err(AnalysisError::TooFewUsers { users: n, needed });
    }
    if options.k_min < 2 || options.k_max < options.k_min {
        return Err(AnalysisError::Segments(format!(
            "k range {}..={} is empty or below 2",
            options.k_min, options.k_max
        )));
    }
    let data = records(table);
    // A fixed, evenly spread sample: the same users every run.
    let step = n.div_ceil(options.sample.max(1)).max(1);
    let sample_idx: Vec<usize> = (0..n).step_by(step).collect();
    let sample = data.select(ndarray::Axis(0), &sample_idx);
    let mut scores = Vec::new();
    for k in options.k_min..=options.k_max {
        let (centroids, labels) = kmeans(sample.view(), k, options.n_runs)?;
        scores.push(KScore {
            k,
            silhouette: silhouette(sample.view(), &labels, k),
            inertia: inertia(sample.view(), &centroids, &labels),
        });
    }
    let k = scores.iter().max_by(|a, b| a.silhouette.total_cmp(&b.silhouette)).map_or(options.k_min, |s| s.k);
    let fit_started = std::time::Instant::now();
    let (centroids, labels) = kmeans(data, k, options.n_runs)?;
    let fit_seconds = fit_started.elapsed().as_secs_f64();
    let total_inertia = inertia(data, &centroids, &labels);

    // PCA of every user, for the picture.
    let pca = Pca::params(2).fit(&DatasetBase::from(data)).map_err(|e| AnalysisError::Segments(e.to_string()))?;
    // Explained variance (singular value squared over n - 1) over the total variance of
    // the tag columns: the library's own figures are relative to the kept axes only.
    let explained: Vec<f64> = pca.singular_values().iter().map(|s| s * s / (n as f64 - 1.0)).collect();
    let t = table.tags.len();
    let overall: Vec<f64> = (0..t).map(|j| data.column(j).sum() / n as f64).collect();
    let total_variance: f64 = (0..t)
        .map(|j| data.column(j).iter().map(|x| (x - overall[j]) * (x - overall[j])).sum::<f64>() / (n as f64 - 1.0))
        .sum();
    let ratio: Vec<f64> =
        explained.iter().map(|e| if total_variance > 0.0 { e / total_variance } else { 0.0 }).collect();
    let projected: Array2<f64> = pca.predict(&data);
    let projection: Vec<[f64; 2]> = projected.outer_iter().map(|r| [r[0], r[1]]).collect();

    // Describe each segment.
    let mut segments: Vec<Segment> = (0..k)
        .map(|c| {
            let members: Vec<usize> = (0..n).filter(|&i| labels[i] == c).collect();
            let size = members.len().max(1) as f64;
            let mut tags: Vec<SegmentTag> = (0..t)
                .map(|j| {
                    let mean = members.iter().map(|&i| data[(i, j)]).sum::<f64>() / size;
                    SegmentTag {
                        tag: table.tags[j].clone(),
                        mean,
                        lift: if overall[j] > 0.0 { mean / overall[j] } else { 0.0 },
                    }
                })
                .collect();
            tags.sort_by(|a, b| b.lift.total_cmp(&a.lift));
            let mut platforms = BTreeMap::new();
            if let Some(p) = &table.platforms {
                for &i in &members {
                    *platforms.entry(p[i].clone()).or_insert(0.0) += 1.0 / size;
                }
            }
            let centroid_2d = members
                .iter()
                .fold([0.0, 0.0], |acc, &i| [acc[0] + projection[i][0] / size, acc[1] + projection[i][1] / size]);
            Segment {
                id: c,
                size: members.len() as u64,
                share: members.len() as f64 / n as f64,
                tags,
                platforms,
                mean_conversion: table
                    .conversion
                    .as_ref()
                    .map(|conv| members.iter().map(|&i| conv[i]).sum::<f64>() / size),
                centroid: centroids.row(c).to_vec(),
                centroid_2d,
            }
        })
        .collect();
    // Number segments by size, largest first, and renumber the users to match.
    segments.sort_by(|a, b| b.size.cmp(&a.size).then(a.id.cmp(&b.id)));
    let mut renumber = vec![0; k];
    for (new, s) in segments.iter_mut().enumerate() {
        renumber[s.id] = new;
        s.id = new;
    }
    Ok(Segmentation {
        k,
        scores,
        inertia: total_inertia,
        fit_seconds,
        segments,
        pca_explained: [ratio.first().copied().unwrap_or(0.0), ratio.get(1).copied().unwrap_or(0.0)],
        assignments: labels.iter().map(|&l| renumber[l]).collect(),
        projection,
    })
}
