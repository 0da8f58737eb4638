//! The order of app objects by a field, shared by every backend: how indexed field values
//! compare ([`scalar_cmp`], the order of the stores' field indexes), and the sort of a selective
//! filter's matches in memory ([`sort_in_memory`]) that both backends use instead of walking a
//! sort index.

use std::cmp::Ordering;

use thingline_core::classes::{Scalar, sort_key};
use thingline_core::{Error, Result};

/// The class of a value in the index order: numbers, text, null, false, true.
pub(crate) fn rank(s: &Scalar) -> i16 {
    match s {
        Scalar::Int(_) | Scalar::Float(_) => 0,
        Scalar::Text(_) => 1,
        Scalar::Null => 2,
        Scalar::Bool(false) => 3,
        Scalar::Bool(true) => 4,
    }
}

/// The order of indexed field values in every backend (SQLite's order of its untyped `v`, and
/// PostgreSQL's `(vt, vn, vs)`): numbers exactly (an integer against a float too), then text by
/// bytes, then null < false < true.
pub(crate) fn scalar_cmp(a: &Scalar, b: &Scalar) -> Ordering {
    /// An integer against a float, exactly (no rounding of either).
    fn int_float(i: i64, f: f64) -> Ordering {
        // 2^63: floats at or beyond it exceed every i64, below -2^63 none is smaller.
        const TWO_63: f64 = 9_223_372_036_854_775_808.0;
        if f.is_nan() {
            return Ordering::Equal;
        }
        if f >= TWO_63 {
            return Ordering::Less;
        }
        if f < -TWO_63 {
            return Ordering::Greater;
        }
        let t = f.trunc();
        // Exact: |t| < 2^63 (or t = -2^63) is an integer an i64 holds.
        #[allow(clippy::cast_possible_truncation)]
        let ti = t as i64;
        i.cmp(&ti).then_with(|| 0.0f64.partial_cmp(&(f - t)).unwrap_or(Ordering::Equal))
    }
    let rank = |s: &Scalar| rank(s);
    match (a, b) {
        (Scalar::Int(x), Scalar::Int(y)) => x.cmp(y),
        (Scalar::Float(x), Scalar::Float(y)) => x.partial_cmp(y).unwrap_or(Ordering::Equal),
        (Scalar::Int(x), Scalar::Float(y)) => int_float(*x, *y),
        (Scalar::Float(x), Scalar::Int(y)) => int_float(*y, *x).reverse(),
        (Scalar::Text(x), Scalar::Text(y)) => x.as_bytes().cmp(y.as_bytes()),
        _ => rank(a).cmp(&rank(b)),
    }
}

/// Sorts the matches of a selective filter by `field` (then primary key), like the sort index;
/// objects without a sortable value in it are not listed.
pub(crate) fn sort_in_memory(
    bodies: Vec<String>,
    field: &str,
    desc: bool,
    cursor: Option<(Scalar, String)>,
    skip: u64,
    limit: u32,
) -> Result<Vec<String>> {
    let mut rows = Vec::with_capacity(bodies.len());
    for body in bodies {
        let fields: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&body).map_err(|_| Error::internal("a stored object is not a JSON object"))?;
        let Some(v) = fields.get(field).and_then(Scalar::of) else { continue };
        let Some(id) = fields.get("_id").and_then(|i| i.as_str()) else { continue };
        rows.push((v, sort_key(id), body));
    }
    let cmp = |a: (&Scalar, &str), b: (&Scalar, &str)| scalar_cmp(a.0, b.0).then_with(|| a.1.cmp(b.1));
    rows.sort_by(|a, b| {
        let o = cmp((&a.0, &a.1), (&b.0, &b.1));
        if desc { o.reverse() } else { o }
    });
    let skip = usize::try_from(skip).unwrap_or(usize::MAX);
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    Ok(rows
        .into_iter()
        .filter(|(v, k, _)| match &cursor {
            None => true,
            Some(c) => {
                let o = cmp((v, k), (&c.0, &c.1));
                if desc { o.is_lt() } else { o.is_gt() }
            }
        })
        .skip(skip)
        .take(limit)
        .map(|(_, _, body)| body)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_in_memory_order_is_the_index_order() {
        use Scalar::*;
        let ascending = [
            Float(-1e300),
            Int(i64::MIN),
            Float(-2.5),
            Int(-2),
            Float(-1.5),
            Int(0),
            Float(1e-300),
            Int(9_007_199_254_740_992),
            Int(9_007_199_254_740_993),
            Float(1_152_921_504_606_846_976.0),
            Int(1_152_921_504_606_846_980),
            Int(i64::MAX),
            Float(9_223_372_036_854_775_808.0),
            Text(String::new()),
            Text("B".into()),
            Text("a".into()),
            Text("a\u{0}".into()),
            Text("é".into()),
            Null,
            Bool(false),
            Bool(true),
        ];
        for (i, a) in ascending.iter().enumerate() {
            for (j, b) in ascending.iter().enumerate() {
                assert_eq!(scalar_cmp(a, b), i.cmp(&j), "{a:?} vs {b:?}");
            }
        }
        assert_eq!(scalar_cmp(&Int(90), &Float(90.0)), Ordering::Equal);
        assert_eq!(scalar_cmp(&Float(-0.0), &Int(0)), Ordering::Equal);
    }
}
