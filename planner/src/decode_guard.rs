//! Limits on what a serde decode may do beyond allocating: how deep values
//! nest, and how many elements it visits.
//!
//! bincode's byte limit ([`crate::codec::decode_bounded`]) bounds what a
//! decode allocates, but not two ways hostile bytes can still hurt a user's
//! record type:
//! - a recursive type (`enum Tree { Leaf, Node(Box<Tree>) }`) nests one
//!   level per byte, so a few megabytes of tags overflow the decoding
//!   thread's stack, which aborts the process;
//! - a sequence of zero-sized values (`Vec<()>`) reads no byte per
//!   element, so a length prefix of 2^60 spins for ever.
//!
//! [`Guarded`] wraps any serde `Deserializer` and fails the decode, with an
//! error naming the limit, past [`MAX_DEPTH`] levels of nesting or past an
//! element budget set per decode. serde_json refuses nesting past 128 levels
//! by default for the first reason; this is the same guard for bincode.
//!
//! Levels are serde's: every option, sequence, map, struct, tuple, newtype
//! and enum variant entered is one, so a recursive record type spends two
//! or three per level of its own (`struct List { v: u32, next:
//! Option<Box<List>> }`: the struct and the option). Records of recursive
//! types deeper than about a hundred of their own levels are refused when
//! read back, with the error naming the limit. Elements are every
//! sequence or map element and every struct or tuple field.

use serde::de::{self, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess};
use serde::de::{VariantAccess, Visitor};
use std::cell::Cell;
use std::fmt;

/// Deepest nesting of serde values (options, sequences, maps, structs,
/// enum variants inside one another) a decode accepts: beyond any
/// non-recursive record type's shape, and below what overflows a 2 MiB
/// thread stack even in a debug build (`hostile_input` decodes a value at
/// the limit on one).
pub const MAX_DEPTH: u32 = 256;

/// What one decode may still do.
pub(crate) struct Budget {
    depth: Cell<u32>,
    elements: Cell<u64>,
    max_elements: u64,
}

impl Budget {
    /// A budget of `max_elements` sequence and map elements in all.
    pub(crate) fn new(max_elements: u64) -> Self {
        Budget {
            depth: Cell::new(0),
            elements: Cell::new(0),
            max_elements,
        }
    }

    fn enter<E: de::Error>(&self) -> Result<(), E> {
        let depth = self.depth.get() + 1;
        if depth > MAX_DEPTH {
            return Err(E::custom(format_args!(
                "values nest deeper than {MAX_DEPTH} levels"
            )));
        }
        self.depth.set(depth);
        Ok(())
    }

    fn leave(&self) {
        self.depth.set(self.depth.get().saturating_sub(1));
    }

    fn element<E: de::Error>(&self) -> Result<(), E> {
        let n = self.elements.get() + 1;
        if n > self.max_elements {
            return Err(E::custom(format_args!(
                "more than {} elements or fields for the input's size",
                self.max_elements
            )));
        }
        self.elements.set(n);
        Ok(())
    }

    /// Runs `f` one level deeper.
    fn nested<T, E: de::Error>(&self, f: impl FnOnce() -> Result<T, E>) -> Result<T, E> {
        self.enter()?;
        let result = f();
        self.leave();
        result
    }
}

/// A `Deserializer` whose every nested value is checked against a
/// [`Budget`].
pub(crate) struct Guarded<'b, D> {
    /// The deserializer that reads the bytes.
    pub(crate) inner: D,
    /// The decode's budget.
    pub(crate) budget: &'b Budget,
}

/// A visitor that hands nested deserializers and accesses on guarded.
struct Wrap<'b, V> {
    inner: V,
    budget: &'b Budget,
}

struct Seq<'b, A> {
    inner: A,
    budget: &'b Budget,
}

struct Map<'b, A> {
    inner: A,
    budget: &'b Budget,
}

struct Enum<'b, A> {
    inner: A,
    budget: &'b Budget,
}

struct Variant<'b, A> {
    inner: A,
    budget: &'b Budget,
}

struct Seed<'b, S> {
    inner: S,
    budget: &'b Budget,
}

macro_rules! forward_deserialize {
    ($($name:ident($($arg:ident: $ty:ty),*);)*) => {$(
        fn $name<V: Visitor<'de>>(self, $($arg: $ty,)* visitor: V) -> Result<V::Value, Self::Error> {
            let budget = self.budget;
            self.inner.$name($($arg,)* Wrap { inner: visitor, budget })
        }
    )*};
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Guarded<'_, D> {
    type Error = D::Error;

    forward_deserialize! {
        deserialize_any();
        deserialize_bool();
        deserialize_i8();
        deserialize_i16();
        deserialize_i32();
        deserialize_i64();
        deserialize_i128();
        deserialize_u8();
        deserialize_u16();
        deserialize_u32();
        deserialize_u64();
        deserialize_u128();
        deserialize_f32();
        deserialize_f64();
        deserialize_char();
        deserialize_str();
        deserialize_string();
        deserialize_bytes();
        deserialize_byte_buf();
        deserialize_option();
        deserialize_unit();
        deserialize_unit_struct(name: &'static str);
        deserialize_newtype_struct(name: &'static str);
        deserialize_seq();
        deserialize_tuple(len: usize);
        deserialize_tuple_struct(name: &'static str, len: usize);
        deserialize_map();
        deserialize_struct(name: &'static str, fields: &'static [&'static str]);
        deserialize_enum(name: &'static str, variants: &'static [&'static str]);
        deserialize_identifier();
        deserialize_ignored_any();
    }

    fn is_human_readable(&self) -> bool {
        self.inner.is_human_readable()
    }
}

macro_rules! forward_visit {
    ($($name:ident($ty:ty);)*) => {$(
        fn $name<E: de::Error>(self, v: $ty) -> Result<Self::Value, E> {
            self.inner.$name(v)
        }
    )*};
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Wrap<'_, V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.expecting(f)
    }

    forward_visit! {
        visit_bool(bool);
        visit_i8(i8);
        visit_i16(i16);
        visit_i32(i32);
        visit_i64(i64);
        visit_i128(i128);
        visit_u8(u8);
        visit_u16(u16);
        visit_u32(u32);
        visit_u64(u64);
        visit_u128(u128);
        visit_f32(f32);
        visit_f64(f64);
        visit_char(char);
        visit_str(&str);
        visit_borrowed_str(&'de str);
        visit_string(String);
        visit_bytes(&[u8]);
        visit_borrowed_bytes(&'de [u8]);
        visit_byte_buf(Vec<u8>);
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        self.inner.visit_none()
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        self.inner.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        let budget = self.budget;
        budget.nested(|| self.inner.visit_some(Guarded { inner: d, budget }))
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        let budget = self.budget;
        budget.nested(|| {
            self.inner
                .visit_newtype_struct(Guarded { inner: d, budget })
        })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        let budget = self.budget;
        budget.nested(|| self.inner.visit_seq(Seq { inner: seq, budget }))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        let budget = self.budget;
        budget.nested(|| self.inner.visit_map(Map { inner: map, budget }))
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<Self::Value, A::Error> {
        let budget = self.budget;
        budget.nested(|| {
            self.inner.visit_enum(Enum {
                inner: data,
                budget,
            })
        })
    }
}

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for Seq<'_, A> {
    type Error = A::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, A::Error> {
        self.budget.element()?;
        let budget = self.budget;
        self.inner.next_element_seed(Seed {
            inner: seed,
            budget,
        })
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Map<'_, A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        self.budget.element()?;
        let budget = self.budget;
        self.inner.next_key_seed(Seed {
            inner: seed,
            budget,
        })
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, A::Error> {
        let budget = self.budget;
        self.inner.next_value_seed(Seed {
            inner: seed,
            budget,
        })
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

impl<'de, 'b, A: EnumAccess<'de>> EnumAccess<'de> for Enum<'b, A> {
    type Error = A::Error;
    type Variant = Variant<'b, A::Variant>;

    fn variant_seed<T: DeserializeSeed<'de>>(
        self,
        seed: T,
    ) -> Result<(T::Value, Self::Variant), A::Error> {
        let budget = self.budget;
        let (value, variant) = self.inner.variant_seed(Seed {
            inner: seed,
            budget,
        })?;
        Ok((
            value,
            Variant {
                inner: variant,
                budget,
            },
        ))
    }
}

impl<'de, A: VariantAccess<'de>> VariantAccess<'de> for Variant<'_, A> {
    type Error = A::Error;

    fn unit_variant(self) -> Result<(), A::Error> {
        self.inner.unit_variant()
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, A::Error> {
        let budget = self.budget;
        self.inner.newtype_variant_seed(Seed {
            inner: seed,
            budget,
        })
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, A::Error> {
        let budget = self.budget;
        self.inner.tuple_variant(
            len,
            Wrap {
                inner: visitor,
                budget,
            },
        )
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        let budget = self.budget;
        self.inner.struct_variant(
            fields,
            Wrap {
                inner: visitor,
                budget,
            },
        )
    }
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Seed<'_, S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<S::Value, D::Error> {
        let budget = self.budget;
        self.inner.deserialize(Guarded { inner: d, budget })
    }
}
