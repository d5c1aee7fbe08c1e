//! Feature schemas: ordered, named features with dtype, meaning and window, and a stable
//! hash. Written as JSON for the training notebooks and copied into model packages.
//!
//! Hash: lowercase hex SHA-256 over, for each feature in order, the line
//! `name \t dtype \t window \t vocabulary joined by '|' \n` (meanings and labels are not
//! part of it: rewording a description does not invalidate a model).

use crate::aggregates::user_features;
use crate::conversion::VISIT_FEATURES;
use crate::tags::Tag;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Type of a feature value. Every feature reaches a model as `float32`; a category is
/// passed as the index of its value in the vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dtype {
    /// A number.
    Float32,
    /// A category; the value is its index in `vocabulary`.
    Category,
    /// 0 or 1.
    Bool,
}

impl Dtype {
    fn as_str(self) -> &'static str {
        match self {
            Dtype::Float32 => "float32",
            Dtype::Category => "category",
            Dtype::Bool => "bool",
        }
    }
}

/// One feature of a schema.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureSpec {
    /// Column name.
    pub name: String,
    /// Value type.
    pub dtype: Dtype,
    /// What it measures.
    pub meaning: String,
    /// Window name, when windowed.
    pub window: Option<String>,
    /// Category values, for `category` features.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vocabulary: Option<Vec<String>>,
}

/// One label column of a feature table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelSpec {
    /// Label name; the column is `label_<name>`.
    pub name: String,
    /// One-sentence definition.
    pub definition: String,
}

/// An ordered feature schema with its hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureSchema {
    /// Schema name (`user_features`, `conversion_features`, ...).
    pub name: String,
    /// Schema version.
    pub version: u32,
    /// Features in model input order.
    pub features: Vec<FeatureSpec>,
    /// Labels of tables built with this schema.
    pub labels: Vec<LabelSpec>,
    /// Hash of the feature list (see the module docs).
    pub hash: String,
}

/// Computes the schema hash of a feature list.
pub fn schema_hash(features: &[FeatureSpec]) -> String {
    let mut h = Sha256::new();
    for f in features {
        h.update(f.name.as_bytes());
        h.update(b"\t");
        h.update(f.dtype.as_str().as_bytes());
        h.update(b"\t");
        h.update(f.window.as_deref().unwrap_or("").as_bytes());
        h.update(b"\t");
        h.update(f.vocabulary.as_ref().map(|v| v.join("|")).unwrap_or_default().as_bytes());
        h.update(b"\n");
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

impl FeatureSchema {
    /// Builds a schema and computes its hash.
    pub fn new(name: &str, version: u32, features: Vec<FeatureSpec>, labels: Vec<LabelSpec>) -> Self {
        let hash = schema_hash(&features);
        FeatureSchema { name: name.into(), version, features, labels, hash }
    }

    /// Feature names in order.
    pub fn names(&self) -> Vec<&str> {
        self.features.iter().map(|f| f.name.as_str()).collect()
    }

    /// Pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("schema serialises")
    }
}

fn user_specs() -> Vec<FeatureSpec> {
    user_features()
        .iter()
        .map(|f| FeatureSpec {
            name: f.name.clone(),
            dtype: Dtype::Float32,
            meaning: format!("{} (as of the cut-off)", f.meaning),
            window: f.window.map(str::to_owned),
            vocabulary: None,
        })
        .collect()
}

/// Label of "buys anything" in the label window (used with real data sets).
pub const BUYS_ANY: &str = "buys_any";

/// The user feature schema: activity per platform and category over several windows,
/// recency, time-of-day mix, cross-platform activity. Labels: the user tags.
pub fn user_schema() -> FeatureSchema {
    let mut labels: Vec<LabelSpec> =
        Tag::ALL.iter().map(|t| LabelSpec { name: t.name().into(), definition: t.definition().into() }).collect();
    labels.push(LabelSpec {
        name: BUYS_ANY.into(),
        definition: "The user places at least one order in the label window after the cut-off.".into(),
    });
    FeatureSchema::new("user_features", 1, user_specs(), labels)
}

/// The conversion schema: the room visit so far at a decision point, then the user's
/// features as of entering. Label: the visit ends in an order.
pub fn conversion_schema() -> FeatureSchema {
    let mut features: Vec<FeatureSpec> = VISIT_FEATURES
        .iter()
        .map(|v| FeatureSpec {
            name: v.name.into(),
            dtype: v.dtype,
            meaning: v.meaning.into(),
            window: v.window.map(str::to_owned),
            vocabulary: v.vocabulary.map(|voc| voc.iter().map(|s| (*s).to_owned()).collect()),
        })
        .collect();
    features.extend(user_specs().into_iter().map(|mut f| {
        f.name = format!("user_{}", f.name);
        f.meaning = f.meaning.replace("(as of the cut-off)", "(as of entering the room)");
        f
    }));
    let labels = vec![LabelSpec {
        name: "order".into(),
        definition: "The room visit ends in an order after the decision point.".into(),
    }];
    FeatureSchema::new("conversion_features", 1, features, labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_follows_the_documented_lines() {
        let features = vec![
            FeatureSpec {
                name: "a".into(),
                dtype: Dtype::Float32,
                meaning: "x".into(),
                window: Some("7d".into()),
                vocabulary: None,
            },
            FeatureSpec {
                name: "b".into(),
                dtype: Dtype::Category,
                meaning: "y".into(),
                window: None,
                vocabulary: Some(vec!["p".into(), "q".into()]),
            },
        ];
        // sha256 of "a\tfloat32\t7d\t\nb\tcategory\t\tp|q\n"
        let expected: String =
            Sha256::digest(b"a\tfloat32\t7d\t\nb\tcategory\t\tp|q\n").iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(schema_hash(&features), expected);
        let mut reworded = features.clone();
        reworded[0].meaning = "other words".into();
        assert_eq!(schema_hash(&reworded), expected);
    }

    #[test]
    fn schemas_round_trip_through_json() {
        for s in [user_schema(), conversion_schema()] {
            let back: FeatureSchema = serde_json::from_str(&s.to_json()).unwrap();
            assert_eq!(back, s);
            assert_eq!(schema_hash(&back.features), s.hash);
        }
    }
}
