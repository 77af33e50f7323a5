//! The co-located atproto labeler (signed labels, queryLabels, subscribeLabels). Not built yet;
//! the crate exists so the workspace has its final shape.
