//! Short random identifiers with a readable prefix (`item_3f9c...`).

/// A new identifier: `prefix` followed by 12 lowercase hex characters of randomness.
///
/// ```
/// let id = agents_core::ids::short_id("item_");
/// assert!(id.starts_with("item_") && id.len() == 17);
/// ```
pub fn short_id(prefix: &str) -> String {
    let uuid = uuid::Uuid::new_v4().simple().to_string();
    let mut id = String::with_capacity(prefix.len() + 12);
    id.push_str(prefix);
    id.push_str(&uuid[..12]);
    id
}
