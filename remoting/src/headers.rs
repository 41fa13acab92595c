//! Typed custom headers. A header is a struct whose fields travel as strings in extFields.
//!
//! Java's broker parses headers leniently (fastjson): numbers may arrive as JSON numbers
//! (already stringified by the JSON header decoder), booleans as "true"/"false" or "0"/"1".
//! Parsing here follows the same rules; required fields that are missing or unparsable
//! produce `RemotingError::MissingField` / `InvalidField`, which processors answer with
//! a clear error response.

use compact_str::{CompactString, ToCompactString};

use crate::command::ExtFieldMap;

use crate::error::RemotingError;

/// A typed view of a command's extFields.
pub trait CommandHeader: Sized {
    fn write_to(&self, ext: &mut ExtFieldMap);
    fn read_from(ext: &ExtFieldMap) -> Result<Self, RemotingError>;
    /// Like [`CommandHeader::read_from`], but moves the fields out of `ext`: string values
    /// change hands without a copy (a send's properties are hundreds of bytes). The fields
    /// read are gone from `ext` afterwards, also when an error is returned.
    fn take_from(ext: &mut ExtFieldMap) -> Result<Self, RemotingError>;
}

/// A header value type: how one field is parsed from and written to a string.
pub trait HeaderValue: Sized {
    fn parse_value(s: &str) -> Option<Self>;
    /// Parse an owned value; string types keep its buffer. On failure the value comes back
    /// for the error message.
    fn from_owned(s: CompactString) -> Result<Self, CompactString> {
        Self::parse_value(&s).ok_or(s)
    }
    /// Short values (all numbers, most names) stay inline: no allocation.
    fn write_value(&self) -> CompactString;
}

macro_rules! int_header_value {
    ($($t:ty),*) => {$(
        impl HeaderValue for $t {
            fn parse_value(s: &str) -> Option<Self> {
                s.trim().parse().ok()
            }
            fn write_value(&self) -> CompactString {
                self.to_compact_string()
            }
        }
    )*};
}
int_header_value!(i8, i16, i32, i64, u8, u16, u32, u64);

impl HeaderValue for f64 {
    fn parse_value(s: &str) -> Option<Self> {
        s.trim().parse().ok()
    }
    fn write_value(&self) -> CompactString {
        self.to_compact_string()
    }
}

impl HeaderValue for String {
    fn parse_value(s: &str) -> Option<Self> {
        Some(s.to_string())
    }
    fn from_owned(s: CompactString) -> Result<Self, CompactString> {
        Ok(s.into_string())
    }
    fn write_value(&self) -> CompactString {
        CompactString::from(self.as_str())
    }
}

/// For names read on every request and only borrowed afterwards (a send's producer group and
/// default topic): up to 24 bytes they are read without an allocation.
impl HeaderValue for CompactString {
    fn parse_value(s: &str) -> Option<Self> {
        Some(CompactString::from(s))
    }
    fn from_owned(s: CompactString) -> Result<Self, CompactString> {
        Ok(s)
    }
    fn write_value(&self) -> CompactString {
        self.clone()
    }
}

impl HeaderValue for bool {
    fn parse_value(s: &str) -> Option<Self> {
        match s.trim() {
            "true" | "TRUE" | "True" | "1" => Some(true),
            "false" | "FALSE" | "False" | "0" | "" => Some(false),
            _ => None,
        }
    }
    fn write_value(&self) -> CompactString {
        CompactString::const_new(if *self { "true" } else { "false" })
    }
}

/// Read a required field.
pub fn required<T: HeaderValue>(
    ext: &ExtFieldMap,
    field: &'static str,
) -> Result<T, RemotingError> {
    optional(ext, field)?.ok_or(RemotingError::MissingField(field))
}

/// Read an optional field; present-but-unparsable is an error, absent is `None`.
pub fn optional<T: HeaderValue>(
    ext: &ExtFieldMap,
    field: &'static str,
) -> Result<Option<T>, RemotingError> {
    match ext.get(field) {
        None => Ok(None),
        Some(raw) => T::parse_value(raw)
            .map(Some)
            .ok_or_else(|| RemotingError::InvalidField {
                field,
                value: raw.to_string(),
            }),
    }
}

/// A required field taken out of extFields by [`CommandHeader::take_from`].
pub fn taken_required<T: HeaderValue>(
    raw: Option<CompactString>,
    field: &'static str,
) -> Result<T, RemotingError> {
    taken_optional(raw, field)?.ok_or(RemotingError::MissingField(field))
}

/// An optional field taken out of extFields; present-but-unparsable is an error.
pub fn taken_optional<T: HeaderValue>(
    raw: Option<CompactString>,
    field: &'static str,
) -> Result<Option<T>, RemotingError> {
    match raw {
        None => Ok(None),
        Some(raw) => T::from_owned(raw)
            .map(Some)
            .map_err(|raw| RemotingError::InvalidField {
                field,
                value: raw.into_string(),
            }),
    }
}

/// How one header field (a value type or `Option` of it) is read from / written to extFields.
/// Implemented for every [`HeaderValue`] type `T` (required) and `Option<T>` (optional).
pub trait HeaderField: Sized {
    fn read_field(ext: &ExtFieldMap, key: &'static str) -> Result<Self, RemotingError>;
    /// The field from its value moved out of extFields (`None`: absent).
    fn from_taken(raw: Option<CompactString>, key: &'static str) -> Result<Self, RemotingError>;
    fn write_field(&self, ext: &mut ExtFieldMap, key: &'static str);
}

macro_rules! header_field {
    ($($t:ty),*) => {$(
        impl HeaderField for $t {
            fn read_field(
                ext: &ExtFieldMap,
                key: &'static str,
            ) -> Result<Self, RemotingError> {
                required(ext, key)
            }
            fn from_taken(
                raw: Option<CompactString>,
                key: &'static str,
            ) -> Result<Self, RemotingError> {
                taken_required(raw, key)
            }
            fn write_field(&self, ext: &mut ExtFieldMap, key: &'static str) {
                ext.insert(key, self.write_value());
            }
        }
        impl HeaderField for Option<$t> {
            fn read_field(
                ext: &ExtFieldMap,
                key: &'static str,
            ) -> Result<Self, RemotingError> {
                optional(ext, key)
            }
            fn from_taken(
                raw: Option<CompactString>,
                key: &'static str,
            ) -> Result<Self, RemotingError> {
                taken_optional(raw, key)
            }
            fn write_field(&self, ext: &mut ExtFieldMap, key: &'static str) {
                if let Some(v) = self {
                    ext.insert(key, v.write_value());
                }
            }
        }
    )*};
}
header_field!(
    i8,
    i16,
    i32,
    i64,
    u8,
    u16,
    u32,
    u64,
    f64,
    bool,
    String,
    CompactString
);

/// Declare a header struct. Fields are `name: Type => "javaName"`; `Option<Type>` fields
/// are optional (absent → `None`), others required (absent → `MissingField`).
/// Doc comments/attributes on the struct and on fields are allowed.
///
/// ```
/// remoting::command_header! {
///     /// QUERY_CONSUMER_OFFSET request.
///     pub struct QueryConsumerOffsetRequestHeader {
///         consumer_group: String => "consumerGroup",
///         topic: String => "topic",
///         /// Queue index.
///         queue_id: i32 => "queueId",
///         set_zero_if_not_found: Option<bool> => "setZeroIfNotFound",
///     }
/// }
/// ```
#[macro_export]
macro_rules! command_header {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $( $(#[$fmeta:meta])* $field:ident : $ty:ty => $key:literal ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Default, PartialEq)]
        pub struct $name {
            $( $(#[$fmeta])* pub $field: $ty, )*
        }

        impl $crate::headers::CommandHeader for $name {
            #[allow(unused_variables)]
            fn write_to(&self, ext: &mut $crate::command::ExtFieldMap) {
                $( <$ty as $crate::headers::HeaderField>::write_field(&self.$field, ext, $key); )*
            }
            #[allow(unused_variables)]
            fn read_from(
                ext: &$crate::command::ExtFieldMap,
            ) -> ::std::result::Result<Self, $crate::RemotingError> {
                ::std::result::Result::Ok($name {
                    $( $field: <$ty as $crate::headers::HeaderField>::read_field(ext, $key)?, )*
                })
            }
            #[allow(unused_variables)]
            #[allow(unused_variables, unused_mut)]
            fn take_from(
                ext: &mut $crate::command::ExtFieldMap,
            ) -> ::std::result::Result<Self, $crate::RemotingError> {
                // One pass over extFields moves every known value out: no lookup per field,
                // and removing them does not shift the rest once per field.
                $( let mut $field: ::std::option::Option<$crate::CompactString> = None; )*
                ext.retain_mut(|key, value| match key {
                    $( $key => {
                        $field = ::std::option::Option::Some(::std::mem::take(value));
                        false
                    } )*
                    _ => true,
                });
                ::std::result::Result::Ok($name {
                    $( $field: <$ty as $crate::headers::HeaderField>::from_taken($field, $key)?, )*
                })
            }
        }
    };
}

// Typed headers for every request family live in submodules, one per family.
pub mod admin;
pub mod consumer;
pub mod lock;
pub mod namesrv;
pub mod offset;
pub mod pull;
pub mod query;
pub mod send;
pub mod transaction;
