//! String-valued API enums that keep values this version does not know.
//!
//! Go's CDI types declare these as `type X string` plus constants, so the wire carries any string.
//! A plain Rust enum would refuse to deserialise a whole object because a newer CDI wrote a phase
//! or condition type we have not heard of; `Other(String)` keeps that value and writes it back.

use schemars::Schema;
use serde_json::{Map, Value};

/// The OpenAPI schema of a string-valued enum: `type: string`, plus `enum` when the CRD restricts
/// the values (upstream restricts only a few fields; the rest are checked by webhooks or not at
/// all, so restricting them here would refuse objects upstream accepts).
pub(crate) fn string_schema(allowed: Option<&[&str]>) -> Schema {
    let mut object = Map::new();
    object.insert("type".into(), Value::from("string"));
    if let Some(values) = allowed {
        object.insert(
            "enum".into(),
            values.iter().map(|v| Value::from(*v)).collect(),
        );
    }
    Schema::from(object)
}

/// Declares a string-valued enum.
///
/// `enum Name: open { Variant = "wire", ... }` gives the schema `type: string`;
/// `enum Name: closed { ... }` adds `enum: [...]` to it; `enum Name: custom { ... }` leaves the
/// `JsonSchema` impl to the caller (for extra validation rules).
/// Every enum gets an `Other(String)` variant, `as_str`, `KNOWN`, `From<&str>`, `From<String>`,
/// `Display`, and serde impls that read and write the bare string.
macro_rules! string_enum {
    (@schema open $name:ident [$($value:literal),+]) => {
        impl ::schemars::JsonSchema for $name {
            fn inline_schema() -> bool {
                true
            }
            fn schema_name() -> ::std::borrow::Cow<'static, str> {
                stringify!($name).into()
            }
            fn json_schema(_: &mut ::schemars::SchemaGenerator) -> ::schemars::Schema {
                $crate::string_enum::string_schema(None)
            }
        }
    };
    (@schema closed $name:ident [$($value:literal),+]) => {
        impl ::schemars::JsonSchema for $name {
            fn inline_schema() -> bool {
                true
            }
            fn schema_name() -> ::std::borrow::Cow<'static, str> {
                stringify!($name).into()
            }
            fn json_schema(_: &mut ::schemars::SchemaGenerator) -> ::schemars::Schema {
                $crate::string_enum::string_schema(Some(Self::KNOWN))
            }
        }
    };
    (@schema custom $name:ident [$($value:literal),+]) => {};
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident : $schema:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $value:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash)]
        $vis enum $name {
            $( $(#[$vmeta])* $variant, )+
            /// A value this version does not know, kept verbatim so it is written back unchanged.
            Other(String),
        }

        impl $name {
            /// Every value this version knows, in declaration order.
            pub const KNOWN: &'static [&'static str] = &[$($value),+];

            /// The value as it appears on the wire.
            pub fn as_str(&self) -> &str {
                match self {
                    $( Self::$variant => $value, )+
                    Self::Other(value) => value,
                }
            }

            /// False for [`Self::Other`].
            pub fn is_known(&self) -> bool {
                !matches!(self, Self::Other(_))
            }
        }

        impl From<&str> for $name {
            fn from(value: &str) -> Self {
                match value {
                    $( $value => Self::$variant, )+
                    other => Self::Other(other.to_owned()),
                }
            }
        }

        impl From<String> for $name {
            fn from(value: String) -> Self {
                match value.as_str() {
                    $( $value => Self::$variant, )+
                    _ => Self::Other(value),
                }
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> Self {
                match value {
                    $name::Other(value) => value,
                    known => known.as_str().to_owned(),
                }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $name {
            fn deserialize<D: ::serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                <String as ::serde::Deserialize>::deserialize(deserializer).map(Self::from)
            }
        }

        $crate::string_enum::string_enum!(@schema $schema $name [$($value),+]);
    };
}

pub(crate) use string_enum;

#[cfg(test)]
mod tests {
    string_enum! {
        /// A test enum.
        pub enum Colour: closed {
            /// Red.
            Red = "red",
            /// Empty.
            Unset = "",
        }
    }

    #[test]
    fn known_values_parse_to_their_variant() {
        assert_eq!(Colour::from("red"), Colour::Red);
        assert_eq!(Colour::from(""), Colour::Unset);
    }

    #[test]
    fn unknown_values_round_trip_verbatim() {
        let parsed: Colour = serde_json::from_str("\"Magenta\"").expect("any string parses");
        assert_eq!(parsed, Colour::Other("Magenta".into()));
        assert!(!parsed.is_known());
        assert_eq!(
            serde_json::to_string(&parsed).expect("serialises"),
            "\"Magenta\""
        );
    }

    #[test]
    fn closed_schema_lists_the_known_values() {
        let schema = schemars::schema_for!(Colour);
        assert_eq!(schema.get("enum"), Some(&serde_json::json!(["red", ""])));
    }
}
