//! Building blocks of the typed request structs every service decodes its JSON body into, once,
//! at the edge.
//!
//! AWS's clients always send members of the right JSON type; the platform has always read a
//! member of another type as if it were missing (and a few operations care whether a member was
//! sent at all, even as `null`). [`Member`] keeps both facts, so typed requests answer exactly
//! as the platform did when it walked `serde_json::Value`s by hand. Decoding a request body
//! therefore never fails once it is a JSON object: every check, with AWS's wording, stays in the
//! service, in the order AWS makes it.
//!
//! Must not depend on any service, on HTTP or on the platform's state.

use std::collections::BTreeMap;

use serde::{
    Deserialize, Deserializer,
    de::{DeserializeOwned, IgnoredAny},
};
use serde_json::Value;

/// One member of a request object.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) enum Member<T> {
    /// Not sent.
    #[default]
    Missing,
    /// Sent with a value of another JSON type (`null` included).
    Invalid,
    /// Sent with a value of the expected type.
    Valid(T),
}

impl<T> Member<T> {
    /// The value when it has the expected type; `None` when missing or of another type.
    pub(crate) fn get(&self) -> Option<&T> {
        match self {
            Member::Valid(v) => Some(v),
            _ => None,
        }
    }

    /// Like [`Member::get`], by value.
    pub(crate) fn into_option(self) -> Option<T> {
        match self {
            Member::Valid(v) => Some(v),
            _ => None,
        }
    }

    /// Whether the member was sent at all (with any value, `null` included).
    pub(crate) fn is_present(&self) -> bool {
        !matches!(self, Member::Missing)
    }
}

impl Member<String> {
    /// The string value, if it is one.
    pub(crate) fn as_deref(&self) -> Option<&str> {
        self.get().map(String::as_str)
    }
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for Member<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Called only for members that are present. The value is buffered so that one of the
        // wrong type reads as `Invalid` instead of failing the whole request.
        let value = Value::deserialize(d)?;
        Ok(T::deserialize(value).map_or(Member::Invalid, Member::Valid))
    }
}

/// Presence only: a member whose value is never read.
pub(crate) type Flag = Member<IgnoredAny>;

/// A nested request object. Derived structs also accept JSON arrays; a nested member that is not
/// an object is of the wrong type.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Object<T>(pub T);

impl<'de, T: DeserializeOwned> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(d)?;
        if !value.is_object() {
            return Err(serde::de::Error::custom("expected an object"));
        }
        T::deserialize(value)
            .map(Object)
            .map_err(serde::de::Error::custom)
    }
}

impl<T> Member<Object<T>> {
    /// The object, when the member is one.
    pub(crate) fn object(&self) -> Option<&T> {
        self.get().map(|o| &o.0)
    }
}

/// A list member of which only the string elements count (others are skipped).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct StrList(pub Vec<String>);

impl<'de> Deserialize<'de> for StrList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let items = Vec::<Member<String>>::deserialize(d)?;
        Ok(StrList(
            items.into_iter().filter_map(Member::into_option).collect(),
        ))
    }
}

impl Member<StrList> {
    /// The strings of the list; `None` when the member is missing or not a list.
    pub(crate) fn strings(&self) -> Option<&[String]> {
        self.get().map(|l| l.0.as_slice())
    }
}

/// A value of any JSON type, as text: a string as itself, anything else as its JSON.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Text(pub String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Text(match Value::deserialize(d)? {
            Value::String(s) => s,
            other => other.to_string(),
        }))
    }
}

/// A JSON object member read as a map, keys in sorted order (as the platform always iterated
/// them, so the first invalid entry reported is the same).
pub(crate) type Map<V> = Member<BTreeMap<String, V>>;

/// Decodes a request object into its typed request.
///
/// # Errors
/// Only when `value` is not an object: every member of a typed request is a [`Member`].
pub(crate) fn from_object<T: DeserializeOwned>(value: &Value) -> Result<T, serde_json::Error> {
    T::deserialize(value)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::json;

    use super::*;

    #[derive(Deserialize, Default, Debug)]
    #[serde(default)]
    struct Req {
        #[serde(rename = "Name")]
        name: Member<String>,
        #[serde(rename = "Count")]
        count: Member<i64>,
        #[serde(rename = "Flag")]
        flag: Flag,
        #[serde(rename = "List")]
        list: Member<StrList>,
        #[serde(rename = "Nested")]
        nested: Member<Object<Inner>>,
        #[serde(rename = "Vars")]
        vars: Map<Text>,
    }

    #[derive(Deserialize, Default, Debug)]
    #[serde(default)]
    struct Inner {
        #[serde(rename = "X")]
        x: Member<String>,
    }

    #[test]
    fn members_of_the_wrong_type_read_as_missing_but_present() {
        let r: Req = from_object(&json!({
            "Name": 3, "Count": 1.5, "Flag": null, "List": ["a", 1, "b"],
            "Nested": ["no"], "Vars": {"A": "x", "B": 2, "C": {"d": true}}, "Other": 1
        }))
        .unwrap();
        assert_eq!(r.name, Member::Invalid);
        assert!(r.name.is_present() && r.name.get().is_none());
        assert_eq!(r.count, Member::Invalid);
        assert!(r.flag.is_present());
        assert_eq!(
            r.list.strings(),
            Some(&["a".to_owned(), "b".to_owned()][..])
        );
        assert!(matches!(r.nested, Member::Invalid));
        let vars: Vec<(&str, &str)> = r
            .vars
            .get()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.as_str(), v.0.as_str()))
            .collect();
        assert_eq!(vars, [("A", "x"), ("B", "2"), ("C", r#"{"d":true}"#)]);

        let r: Req = from_object(&json!({"Name": "n", "Count": 7, "Nested": {"X": "y"}})).unwrap();
        assert_eq!(r.name.as_deref(), Some("n"));
        assert_eq!(r.count.get(), Some(&7));
        assert!(!r.flag.is_present());
        assert_eq!(r.list.strings(), None);
        assert_eq!(r.nested.object().unwrap().x.as_deref(), Some("y"));

        // Integers too large for i64 and negative unsigned are of the wrong type, as with
        // `Value::as_i64` / `as_u64`.
        #[derive(Deserialize, Default)]
        #[serde(default)]
        struct Nums {
            a: Member<i64>,
            b: Member<u64>,
            c: Member<f64>,
        }
        let n: Nums = from_object(&json!({"a": u64::MAX, "b": -1, "c": 2})).unwrap();
        assert_eq!(
            (n.a, n.b, n.c),
            (Member::Invalid, Member::Invalid, Member::Valid(2.0))
        );
    }
}
