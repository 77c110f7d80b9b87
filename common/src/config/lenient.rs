//! Scalar deserializers as forgiving as Go's yaml.v2, which kuiperbelt configs were written for:
//! `port: 9180` fills a string field, `strict_broadcast: "yes"` a bool, and values that arrive as
//! strings from environment variables or CLI flags fill numeric fields.

use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;

use serde::Deserializer;
use serde::de::{self, Visitor};

/// A string field that also accepts numbers and booleans, written as their text.
pub(crate) fn string<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    struct StringVisitor;
    impl Visitor<'_> for StringVisitor {
        type Value = String;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string")
        }
        fn visit_str<E: de::Error>(self, value: &str) -> Result<String, E> {
            Ok(value.to_owned())
        }
        fn visit_u64<E: de::Error>(self, value: u64) -> Result<String, E> {
            Ok(value.to_string())
        }
        fn visit_i64<E: de::Error>(self, value: i64) -> Result<String, E> {
            Ok(value.to_string())
        }
        fn visit_f64<E: de::Error>(self, value: f64) -> Result<String, E> {
            Ok(value.to_string())
        }
        fn visit_bool<E: de::Error>(self, value: bool) -> Result<String, E> {
            Ok(value.to_string())
        }
        fn visit_unit<E: de::Error>(self) -> Result<String, E> {
            Ok(String::new())
        }
    }
    deserializer.deserialize_any(StringVisitor)
}

/// A bool that also accepts YAML 1.1 spellings (`yes`, `on`, ...) and strings.
pub(crate) fn bool<'de, D: Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    struct BoolVisitor;
    impl Visitor<'_> for BoolVisitor {
        type Value = bool;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("true or false")
        }
        fn visit_bool<E: de::Error>(self, value: bool) -> Result<bool, E> {
            Ok(value)
        }
        fn visit_str<E: de::Error>(self, value: &str) -> Result<bool, E> {
            match value.trim().to_ascii_lowercase().as_str() {
                "true" | "yes" | "y" | "on" | "1" => Ok(true),
                "false" | "no" | "n" | "off" | "0" | "" => Ok(false),
                _ => Err(E::custom(format!(
                    "expected true or false, found {value:?}"
                ))),
            }
        }
        fn visit_u64<E: de::Error>(self, value: u64) -> Result<bool, E> {
            match value {
                0 => Ok(false),
                1 => Ok(true),
                _ => Err(E::custom(format!("expected true or false, found {value}"))),
            }
        }
        fn visit_i64<E: de::Error>(self, value: i64) -> Result<bool, E> {
            u64::try_from(value)
                .map_err(|_| E::custom(format!("expected true or false, found {value}")))
                .and_then(|v| self.visit_u64(v))
        }
        fn visit_unit<E: de::Error>(self) -> Result<bool, E> {
            Ok(false)
        }
    }
    deserializer.deserialize_any(BoolVisitor)
}

/// An unsigned integer that also accepts its decimal text.
pub(crate) fn number<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<u64> + FromStr,
{
    struct NumberVisitor<T>(PhantomData<T>);
    impl<T: TryFrom<u64> + FromStr> Visitor<'_> for NumberVisitor<T> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a non-negative integer")
        }
        fn visit_u64<E: de::Error>(self, value: u64) -> Result<T, E> {
            T::try_from(value).map_err(|_| E::custom(format!("{value} is out of range")))
        }
        fn visit_i64<E: de::Error>(self, value: i64) -> Result<T, E> {
            u64::try_from(value)
                .map_err(|_| E::custom(format!("expected a non-negative integer, found {value}")))
                .and_then(|v| self.visit_u64(v))
        }
        fn visit_str<E: de::Error>(self, value: &str) -> Result<T, E> {
            value
                .trim()
                .parse()
                .map_err(|_| E::custom(format!("expected a non-negative integer, found {value:?}")))
        }
        fn visit_unit<E: de::Error>(self) -> Result<T, E> {
            self.visit_u64(0)
        }
    }
    deserializer.deserialize_any(NumberVisitor(PhantomData))
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    #[derive(Deserialize)]
    struct Probe {
        #[serde(deserialize_with = "super::string")]
        s: String,
        #[serde(deserialize_with = "super::bool")]
        b: bool,
        #[serde(deserialize_with = "super::number")]
        n: u32,
    }

    #[test]
    fn accepts_yaml_v2_style_scalars() {
        let probe: Probe = serde_json::from_str(r#"{"s": 9180, "b": "yes", "n": "12"}"#).unwrap();
        assert_eq!((probe.s.as_str(), probe.b, probe.n), ("9180", true, 12));
        let probe: Probe = serde_json::from_str(r#"{"s": "x", "b": false, "n": 0}"#).unwrap();
        assert_eq!((probe.s.as_str(), probe.b, probe.n), ("x", false, 0));
    }

    #[test]
    fn rejects_nonsense_with_the_value() {
        let err = serde_json::from_str::<Probe>(r#"{"s": "x", "b": "maybe", "n": 1}"#)
            .err()
            .unwrap();
        assert!(err.to_string().contains("maybe"), "{err}");
        let err = serde_json::from_str::<Probe>(r#"{"s": "x", "b": true, "n": -1}"#)
            .err()
            .unwrap();
        assert!(err.to_string().contains("-1"), "{err}");
        let err = serde_json::from_str::<Probe>(r#"{"s": "x", "b": true, "n": 5000000000}"#)
            .err()
            .unwrap();
        assert!(err.to_string().contains("out of range"), "{err}");
    }
}
