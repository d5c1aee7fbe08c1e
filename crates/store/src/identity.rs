//! Cross-platform identity: a platform's own account id mapped to the unified user id.

use crate::error::StoreError;
use liveprofile_events::Platform;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

/// One mapping: the account `platform_user_id` on `platform` is the user `user_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityLink {
    /// Platform of the account.
    pub platform: Platform,
    /// The platform's own account id.
    pub platform_user_id: String,
    /// The unified user id.
    pub user_id: String,
}

impl IdentityLink {
    /// Checks that no field is empty.
    pub fn validate(&self) -> Result<(), String> {
        if self.platform_user_id.is_empty() {
            return Err("platform_user_id is empty".to_owned());
        }
        if self.user_id.is_empty() {
            return Err(format!("user_id is empty for {} account {:?}", self.platform, self.platform_user_id));
        }
        Ok(())
    }
}

/// Platform accounts to unified user ids.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct IdentityTable {
    links: HashMap<(Platform, String), String>,
}

impl IdentityTable {
    /// The unified user of an account.
    pub fn resolve(&self, platform: Platform, platform_user_id: &str) -> Option<&str> {
        // The key owns its string; a lookup by borrowed parts would need a custom key type,
        // which is not worth it on a path that runs only for events without a user id.
        self.links.get(&(platform, platform_user_id.to_owned())).map(String::as_str)
    }

    /// Adds or replaces a link.
    pub fn upsert(&mut self, link: IdentityLink) {
        self.links.insert((link.platform, link.platform_user_id), link.user_id);
    }

    /// Adds a link unless the account is already mapped; returns whether it was added.
    pub fn insert_if_absent(&mut self, link: IdentityLink) -> bool {
        use std::collections::hash_map::Entry;
        match self.links.entry((link.platform, link.platform_user_id)) {
            Entry::Occupied(_) => false,
            Entry::Vacant(v) => {
                v.insert(link.user_id);
                true
            }
        }
    }

    /// Links held.
    pub fn len(&self) -> usize {
        self.links.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.links.is_empty()
    }
}

/// Reads an identity file: CSV with the header `platform,platform_user_id,user_id`.
pub fn read_identity_file(path: &Path) -> Result<Vec<IdentityLink>, StoreError> {
    let text = std::fs::read_to_string(path).map_err(|e| StoreError::io(path, e))?;
    let bad = |line: usize, reason: String| StoreError::IdentityFile { path: path.display().to_string(), line, reason };
    let mut lines = text.lines().enumerate();
    match lines.next() {
        Some((_, header)) if header.trim() == "platform,platform_user_id,user_id" => {}
        Some((_, header)) => {
            return Err(bad(1, format!("header is {header:?}, expected \"platform,platform_user_id,user_id\"")));
        }
        None => return Err(bad(1, "the file is empty (expected a header line)".to_owned())),
    }
    let mut out = Vec::new();
    for (i, line) in lines {
        let line_no = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let [platform, account, user] = fields[..] else {
            return Err(bad(line_no, format!("{} fields, expected 3", fields.len())));
        };
        let platform = Platform::parse(platform).map_err(|e| bad(line_no, e.to_string()))?;
        let link = IdentityLink { platform, platform_user_id: account.to_owned(), user_id: user.to_owned() };
        link.validate().map_err(|e| bad(line_no, e))?;
        out.push(link);
    }
    Ok(out)
}
