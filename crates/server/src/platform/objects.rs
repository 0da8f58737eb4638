//! App objects in `/v2/classes` collections. (Issue #4.)
