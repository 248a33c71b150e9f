//! A JSON object read into a map only if its keys are distinct. serde reads a map by keeping the
//! last of two equal keys, while another parser (a proxy, a log pipeline) may keep the first: two
//! readers would then see two different requests. The API refuses such a body, as it refuses a
//! repeated field.

use std::{collections::BTreeMap, fmt, marker::PhantomData};

use serde::{
    Deserialize, Deserializer,
    de::{Error, MapAccess, Visitor},
};

/// For `#[serde(default, deserialize_with = "unique_keys::optional")]` on an
/// `Option<BTreeMap<String, V>>` field: `null` or absent is `None`; an object with a repeated key
/// is an error (which never quotes the key: metadata keys are the merchant's).
pub(crate) fn optional<'de, D, V>(d: D) -> Result<Option<BTreeMap<String, V>>, D::Error>
where
    D: Deserializer<'de>,
    V: Deserialize<'de>,
{
    Ok(Option::<Unique<V>>::deserialize(d)?.map(|u| u.0))
}

/// A map whose keys were distinct in the input.
struct Unique<V>(BTreeMap<String, V>);

impl<'de, V: Deserialize<'de>> Deserialize<'de> for Unique<V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Keys<V>(PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for Keys<V> {
            type Value = Unique<V>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object with distinct keys")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Unique<V>, A::Error> {
                let mut out = BTreeMap::new();
                while let Some((k, v)) = m.next_entry::<String, V>()? {
                    if out.insert(k, v).is_some() {
                        return Err(A::Error::custom("a key is repeated"));
                    }
                }
                Ok(Unique(out))
            }
        }
        d.deserialize_map(Keys(PhantomData))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::BTreeMap;

    use serde::Deserialize;

    #[derive(Deserialize, Debug)]
    struct T {
        #[serde(default, deserialize_with = "super::optional")]
        m: Option<BTreeMap<String, String>>,
    }

    #[test]
    fn a_repeated_key_is_refused_without_naming_it() {
        let ok: T = serde_json::from_str(r#"{"m":{"a":"1","b":"2"}}"#).unwrap();
        assert_eq!(ok.m.unwrap().len(), 2);
        assert!(serde_json::from_str::<T>(r#"{}"#).unwrap().m.is_none());
        assert!(
            serde_json::from_str::<T>(r#"{"m":null}"#)
                .unwrap()
                .m
                .is_none()
        );
        let e = serde_json::from_str::<T>(r#"{"m":{"secret":"1","secret":"2"}}"#).unwrap_err();
        assert!(!e.to_string().contains("secret"), "{e}");
        assert!(serde_json::from_str::<T>(r#"{"m":["a"]}"#).is_err());
    }
}
