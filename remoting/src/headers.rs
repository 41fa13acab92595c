//! Typed custom headers. A header is a struct whose fields travel as strings in extFields.
//!
//! Java's broker parses headers leniently (fastjson): numbers may arrive as JSON numbers
//! (already stringified by the JSON header decoder), booleans as "true"/"false" or "0"/"1".
//! Parsing here follows the same rules; required fields that are missing or unparsable
//! produce `RemotingError::MissingField` / `InvalidField`, which processors answer with
//! a clear error response.

use std::collections::HashMap;

use crate::error::RemotingError;

/// A typed view of a command's extFields.
pub trait CommandHeader: Sized {
    fn write_to(&self, ext: &mut HashMap<String, String>);
    fn read_from(ext: &HashMap<String, String>) -> Result<Self, RemotingError>;
}

/// A header value type: how one field is parsed from and written to a string.
pub trait HeaderValue: Sized {
    fn parse_value(s: &str) -> Option<Self>;
    fn write_value(&self) -> String;
}

macro_rules! int_header_value {
    ($($t:ty),*) => {$(
        impl HeaderValue for $t {
            fn parse_value(s: &str) -> Option<Self> {
                s.trim().parse().ok()
            }
            fn write_value(&self) -> String {
                self.to_string()
            }
        }
    )*};
}
int_header_value!(i8, i16, i32, i64, u8, u16, u32, u64);

impl HeaderValue for String {
    fn parse_value(s: &str) -> Option<Self> {
        Some(s.to_string())
    }
    fn write_value(&self) -> String {
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
    fn write_value(&self) -> String {
        if *self { "true" } else { "false" }.to_string()
    }
}

/// Read a required field.
pub fn required<T: HeaderValue>(
    ext: &HashMap<String, String>,
    field: &'static str,
) -> Result<T, RemotingError> {
    let raw = ext.get(field).ok_or(RemotingError::MissingField(field))?;
    T::parse_value(raw).ok_or_else(|| RemotingError::InvalidField {
        field,
        value: raw.clone(),
    })
}

/// Read an optional field; present-but-unparsable is an error, absent is `None`.
pub fn optional<T: HeaderValue>(
    ext: &HashMap<String, String>,
    field: &'static str,
) -> Result<Option<T>, RemotingError> {
    match ext.get(field) {
        None => Ok(None),
        Some(raw) => T::parse_value(raw)
            .map(Some)
            .ok_or_else(|| RemotingError::InvalidField {
                field,
                value: raw.clone(),
            }),
    }
}

/// Declare a header struct. Fields are `name: Type => "javaName"` (required) or
/// `name: Option<Type> => "javaName"` (optional).
///
/// ```ignore
/// command_header! {
///     pub struct QueryConsumerOffsetRequestHeader {
///         consumer_group: String => "consumerGroup",
///         topic: String => "topic",
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
            $( $field:ident : $($ty:ident)::+ $(<$inner:ty>)? => $key:literal ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Default, PartialEq)]
        pub struct $name {
            $( pub $field: $($ty)::+ $(<$inner>)?, )*
        }

        impl $crate::headers::CommandHeader for $name {
            fn write_to(&self, ext: &mut ::std::collections::HashMap<String, String>) {
                $( $crate::__header_write!(ext, self.$field, $key, $($ty)::+ $(<$inner>)?); )*
            }
            fn read_from(
                ext: &::std::collections::HashMap<String, String>,
            ) -> Result<Self, $crate::RemotingError> {
                Ok($name {
                    $( $field: $crate::__header_read!(ext, $key, $($ty)::+ $(<$inner>)?), )*
                })
            }
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __header_write {
    ($ext:ident, $value:expr, $key:literal, Option<$inner:ty>) => {
        if let Some(v) = &$value {
            $ext.insert(
                $key.to_string(),
                $crate::headers::HeaderValue::write_value(v),
            );
        }
    };
    ($ext:ident, $value:expr, $key:literal, $ty:ty) => {
        $ext.insert(
            $key.to_string(),
            $crate::headers::HeaderValue::write_value(&$value),
        );
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __header_read {
    ($ext:ident, $key:literal, Option<$inner:ty>) => {
        $crate::headers::optional::<$inner>($ext, $key)?
    };
    ($ext:ident, $key:literal, $ty:ty) => {
        $crate::headers::required::<$ty>($ext, $key)?
    };
}

// Typed headers for every request family live in submodules, one per family.
// (Filled in by the remoting work: send, pull, offset, heartbeat, consumer, lock,
// admin, query, namesrv.)
