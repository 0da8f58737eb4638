//! Positions: the `$geo` magic resource and the `geo` attribute of value items. Every accepted
//! input becomes a GeoJSON Point `{"type":"Point","coordinates":[long,lat]}` — longitude first —
//! which is how positions are stored and read back.
//!
//! Accepted inputs:
//! - a GeoJSON Point object; a third coordinate (altitude) is accepted and dropped;
//! - the legacy pair `[long, lat]`;
//! - for `$geo`, `value: null` with a `geo: {"lat": .., "long": ..}` attribute on the item;
//! - in a `geo` attribute, `lng` and `lon` are accepted as aliases of `long`.
//!
//! Coordinates may be JSON numbers or strings holding a number (`"41.39"`, as C clients send);
//! they must be finite with latitude in [-90, 90] and longitude in [-180, 180].

use serde_json::{Value, json};

use crate::{Error, Result, time::json_kind};

/// The GeoJSON Point at longitude `long` and latitude `lat`, after checking both are finite and
/// in range (latitude in [-90, 90], longitude in [-180, 180]).
pub fn point(long: f64, lat: f64) -> Result<Value> {
    if !long.is_finite() || !(-180.0..=180.0).contains(&long) {
        return Err(Error::bad_request(format!("longitude must be a number from -180 to 180, got {long}")));
    }
    if !lat.is_finite() || !(-90.0..=90.0).contains(&lat) {
        return Err(Error::bad_request(format!("latitude must be a number from -90 to 90, got {lat}")));
    }
    Ok(json!({"type": "Point", "coordinates": [long, lat]}))
}

/// The position written to `$geo`: `value` is the item's value (`Value::Null` when the item has
/// none) and `geo_attr` its `geo` attribute, if any.
///
/// A non-null `value` decides alone (a `geo` attribute next to it is ignored); a null `value`
/// needs the `geo` attribute (see [`parse_geo_attr`]).
pub fn parse_geo_value(value: &Value, geo_attr: Option<&Value>) -> Result<Value> {
    match value {
        Value::Object(obj) => {
            match obj.get("type") {
                Some(Value::String(t)) if t == "Point" => {}
                Some(Value::String(t)) => {
                    return Err(Error::bad_request(format!(
                        "$geo accepts only a GeoJSON Point, not {}",
                        crate::time::echo(t)
                    )));
                }
                _ => {
                    return Err(Error::bad_request(
                        "$geo value must be a GeoJSON Point {\"type\":\"Point\",\"coordinates\":[long,lat]}, \
                         a [long,lat] pair, or null with a geo {lat,long} attribute",
                    ));
                }
            }
            match obj.get("coordinates") {
                Some(Value::Array(c)) => parse_pair(c, true),
                _ => Err(Error::bad_request("GeoJSON Point needs \"coordinates\": [long, lat]")),
            }
        }
        Value::Array(c) => parse_pair(c, false),
        Value::Null => match geo_attr {
            Some(attr) => parse_geo_attr(attr),
            None => Err(Error::bad_request("$geo value is null and the item has no geo {lat,long} attribute")),
        },
        other => Err(Error::bad_request(format!(
            "$geo value must be a GeoJSON Point, a [long,lat] pair, or null with a geo {{lat,long}} \
             attribute, not {}",
            json_kind(other)
        ))),
    }
}

/// The position in a `geo` attribute `{"lat": .., "long": ..}` (`lng` or `lon` instead of `long`
/// also accepted; numbers or numeric strings), as a GeoJSON Point.
pub fn parse_geo_attr(attr: &Value) -> Result<Value> {
    let Value::Object(obj) = attr else {
        return Err(Error::bad_request(format!(
            "geo must be an object {{\"lat\":..,\"long\":..}}, not {}",
            json_kind(attr)
        )));
    };
    let lat = obj.get("lat").ok_or_else(|| Error::bad_request("geo needs \"lat\" and \"long\""))?;
    let long = ["long", "lng", "lon"]
        .iter()
        .find_map(|k| obj.get(*k))
        .ok_or_else(|| Error::bad_request("geo needs \"lat\" and \"long\""))?;
    point(coordinate(long, "longitude")?, coordinate(lat, "latitude")?)
}

/// `[long, lat]` (or `[long, lat, altitude]` when `allow_altitude`) as a Point.
fn parse_pair(c: &[Value], allow_altitude: bool) -> Result<Value> {
    match c {
        [long, lat] => point(coordinate(long, "longitude")?, coordinate(lat, "latitude")?),
        [long, lat, alt] if allow_altitude => {
            coordinate(alt, "altitude")?;
            point(coordinate(long, "longitude")?, coordinate(lat, "latitude")?)
        }
        _ => Err(Error::bad_request(format!("coordinates must be [long, lat], got {} elements", c.len()))),
    }
}

/// A finite number from a JSON number or a string holding one.
fn coordinate(v: &Value, what: &str) -> Result<f64> {
    let n = match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    match n {
        Some(f) if f.is_finite() => Ok(f),
        _ => Err(Error::bad_request(format!(
            "{what} must be a number, got {}",
            match v {
                Value::String(s) => crate::time::echo(s),
                other => json_kind(other).to_owned(),
            }
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bad(r: Result<Value>) -> String {
        match r {
            Err(Error::BadRequest(m)) => m,
            other => panic!("expected a 400, got {other:?}"),
        }
    }

    fn bcn() -> Value {
        json!({"type": "Point", "coordinates": [2.154007, 41.390205]})
    }

    #[test]
    fn point_builds_geojson() {
        assert_eq!(point(2.154007, 41.390205).unwrap(), bcn());
        assert_eq!(point(-180.0, -90.0).unwrap(), json!({"type": "Point", "coordinates": [-180.0, -90.0]}));
        assert!(point(180.0, 90.0).is_ok());
        assert!(point(0.0, 0.0).is_ok());
    }

    #[test]
    fn point_rejects_out_of_range() {
        assert!(bad(point(180.1, 0.0)).contains("longitude"));
        assert!(bad(point(-181.0, 0.0)).contains("longitude"));
        assert!(bad(point(0.0, 90.5)).contains("latitude"));
        assert!(bad(point(0.0, -91.0)).contains("latitude"));
        assert!(bad(point(f64::NAN, 0.0)).contains("longitude"));
        assert!(bad(point(0.0, f64::INFINITY)).contains("latitude"));
    }

    #[test]
    fn geojson_point_value() {
        assert_eq!(parse_geo_value(&bcn(), None).unwrap(), bcn());
        assert_eq!(
            parse_geo_value(&json!({"type": "Point", "coordinates": ["2.154007", " 41.390205"]}), None).unwrap(),
            bcn()
        );
        // Altitude dropped.
        assert_eq!(
            parse_geo_value(&json!({"type": "Point", "coordinates": [2.154007, 41.390205, 12]}), None).unwrap(),
            bcn()
        );
        // The value wins over an attribute.
        assert_eq!(parse_geo_value(&bcn(), Some(&json!({"lat": 1, "long": 1}))).unwrap(), bcn());
    }

    #[test]
    fn legacy_pair() {
        assert_eq!(parse_geo_value(&json!([2.154007, 41.390205]), None).unwrap(), bcn());
        assert_eq!(parse_geo_value(&json!(["2.154007", "41.390205"]), None).unwrap(), bcn());
        assert!(bad(parse_geo_value(&json!([1, 2, 3]), None)).contains("[long, lat]"));
        assert!(bad(parse_geo_value(&json!([1]), None)).contains("[long, lat]"));
        assert!(bad(parse_geo_value(&json!([]), None)).contains("[long, lat]"));
        // Latitude out of range reveals a swapped pair.
        assert!(bad(parse_geo_value(&json!([41.39, 120.0]), None)).contains("latitude"));
    }

    #[test]
    fn null_value_with_attribute() {
        let attr = json!({"lat": 41.390205, "long": 2.154007});
        assert_eq!(parse_geo_value(&Value::Null, Some(&attr)).unwrap(), bcn());
        let attr = json!({"lat": "41.390205", "lng": "2.154007"});
        assert_eq!(parse_geo_value(&Value::Null, Some(&attr)).unwrap(), bcn());
        assert!(bad(parse_geo_value(&Value::Null, None)).contains("geo"));
    }

    #[test]
    fn wrong_values() {
        for v in [
            json!(true),
            json!(1),
            json!("41.39,2.15"),
            json!({"lat": 1, "long": 2}),
            json!({"type": "LineString", "coordinates": [[0, 0], [1, 1]]}),
            json!({"type": "point", "coordinates": [0, 0]}),
            json!({"type": "Point"}),
            json!({"type": "Point", "coordinates": {"lat": 1}}),
            json!({"type": "Point", "coordinates": [null, 1]}),
            json!({"type": "Point", "coordinates": [0, 0, "high"]}),
        ] {
            bad(parse_geo_value(&v, None));
        }
        assert!(bad(parse_geo_value(&json!({"type": "LineString"}), None)).contains("LineString"));
        assert!(bad(parse_geo_value(&json!(true), None)).contains("boolean"));
    }

    #[test]
    fn geo_attribute() {
        assert_eq!(parse_geo_attr(&json!({"lat": 41.390205, "long": 2.154007})).unwrap(), bcn());
        assert_eq!(parse_geo_attr(&json!({"lat": "41.390205", "lon": "2.154007", "alt": 3})).unwrap(), bcn());
        assert_eq!(parse_geo_attr(&json!({"lat": 41.390205, "lng": 2.154007})).unwrap(), bcn());
        // `long` takes precedence over the aliases.
        assert_eq!(parse_geo_attr(&json!({"lat": 41.390205, "long": 2.154007, "lng": 99})).unwrap(), bcn());
    }

    #[test]
    fn bad_geo_attributes() {
        assert!(bad(parse_geo_attr(&json!({"long": 2}))).contains("\"lat\""));
        assert!(bad(parse_geo_attr(&json!({"lat": 2}))).contains("\"long\""));
        assert!(bad(parse_geo_attr(&json!([2, 41]))).contains("array"));
        assert!(bad(parse_geo_attr(&json!({"lat": "north", "long": 2}))).contains("\"north\""));
        assert!(bad(parse_geo_attr(&json!({"lat": "NaN", "long": 2}))).contains("latitude"));
        assert!(bad(parse_geo_attr(&json!({"lat": "inf", "long": 2}))).contains("latitude"));
        assert!(bad(parse_geo_attr(&json!({"lat": "", "long": 2}))).contains("latitude"));
        assert!(bad(parse_geo_attr(&json!({"lat": true, "long": 2}))).contains("boolean"));
        assert!(bad(parse_geo_attr(&json!({"lat": 1, "long": "1e999"}))).contains("longitude"));
        assert!(bad(parse_geo_attr(&json!({"lat": 95, "long": 2}))).contains("-90 to 90"));
    }
}
