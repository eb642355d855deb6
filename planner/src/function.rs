//! Shipping user functions: a code offset plus serialized state.
//!
//! Rust closures cannot be serialized. Riffle therefore runs the same program
//! binary on the driver and on every executor (as Spark does with jars) and
//! sends, for each operator, the offset of a monomorphized *factory*
//! function relative to an anchor function in this crate, plus the operator's
//! serialized state. The executor adds the offset to its own anchor address
//! and calls the factory, which rebuilds the operator object.
//!
//! # Safety argument
//!
//! All of Riffle's `unsafe` is in this module.
//!
//! 1. Every factory has the single signature [`Factory`]. A [`FnRef`] can only
//!    be made by [`FnRef::new`] from a value of that type, so the driver only
//!    ever computes offsets of real factories.
//! 2. An offset is only meaningful in a byte-identical binary. Executors prove
//!    this at registration with a build id; in embedded mode driver and
//!    executor are the same process. Given the same binary and the same
//!    anchor, `anchor + offset` is exactly the address the driver took.
//! 3. A factory returns `Box<dyn Any>`, and the caller downcasts it to the role
//!    it expects ([`FnRef::instantiate`]), so a role mix-up is an error, not
//!    undefined behaviour.
//! 4. [`conjure_zst`] creates values only of zero-sized closure types, which
//!    have no bytes and therefore no invalid bit patterns; the size is checked
//!    at compile time.

use crate::error::PipelineError;
use serde::{Deserialize, Serialize};
use std::any::Any;

/// The one signature of every shipped factory: rebuild an operator from its
/// serialized state.
pub type Factory = fn(&[u8]) -> Result<Box<dyn Any + Send + Sync>, PipelineError>;

/// A reference to shipped code: which factory to call, with which state.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FnRef {
    offset: i64,
    state: Vec<u8>,
    name: String,
}

impl std::fmt::Debug for FnRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FnRef({}, {} state bytes)", self.name, self.state.len())
    }
}

/// The anchor every offset is taken against. `#[inline(never)]` and a body
/// with a side effect keep it a distinct, addressable function.
#[inline(never)]
fn anchor() -> usize {
    std::hint::black_box(0x5249_4646) // "RIFF"
}

fn anchor_address() -> usize {
    anchor as fn() -> usize as usize
}

impl FnRef {
    /// Refers to `factory`, which will be called with `state` on the executor.
    /// `name` describes the operator in plans and error messages.
    pub fn new(factory: Factory, state: Vec<u8>, name: impl Into<String>) -> Self {
        let offset = (factory as usize).wrapping_sub(anchor_address()) as i64;
        FnRef {
            offset,
            state,
            name: name.into(),
        }
    }

    /// The operator's descriptive name (`map`, `reduce_by_key`, ...).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The serialized state that travels with the function.
    pub fn state(&self) -> &[u8] {
        &self.state
    }

    /// Calls the factory: the operator, with its role still erased.
    pub fn instantiate_any(&self) -> Result<Box<dyn Any + Send + Sync>, PipelineError> {
        let address = anchor_address().wrapping_add(self.offset as usize);
        // SAFETY: see the module documentation. The offset was produced by
        // `FnRef::new` from a `Factory` in a binary whose build id matches ours,
        // so `address` is that factory's entry point in this process.
        let factory: Factory = unsafe { std::mem::transmute::<usize, Factory>(address) };
        factory(&self.state)
    }

    /// Calls the factory and downcasts the operator to the role `R`
    /// (for example `Box<dyn NarrowOp>`).
    pub fn instantiate<R: 'static>(&self) -> Result<R, PipelineError> {
        self.instantiate_any()?
            .downcast::<R>()
            .map(|boxed| *boxed)
            .map_err(|_| PipelineError::Function {
                name: self.name.clone(),
                message: format!(
                    "operator does not have the expected role {}",
                    std::any::type_name::<R>()
                ),
            })
    }
}

/// Produces the value of a zero-sized type, such as a closure that captures
/// nothing. Fails to compile (post-monomorphization) for any other type.
pub fn conjure_zst<F>() -> F {
    const {
        assert!(
            size_of::<F>() == 0,
            "Riffle ships closures by code address: a closure passed to map/filter/... must \
             capture nothing. Pass state explicitly with map_with/filter_with/flat_map_with."
        )
    };
    // SAFETY: `F` is zero-sized (checked at compile time above), so it has no
    // bytes and every (empty) bit pattern is valid; closure types carry no
    // other invariants.
    unsafe { std::mem::zeroed::<F>() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn double_factory(state: &[u8]) -> Result<Box<dyn Any + Send + Sync>, PipelineError> {
        let k = state.first().copied().unwrap_or(1) as i64;
        let f: Box<dyn Fn(i64) -> i64 + Send + Sync> = Box::new(move |x| x * 2 * k);
        Ok(Box::new(f))
    }

    #[test]
    fn round_trip_through_bytes() {
        let r = FnRef::new(double_factory, vec![3], "double");
        let bytes = crate::task::encode(&r).unwrap();
        let back: FnRef = crate::task::decode(&bytes).unwrap();
        let f: Box<dyn Fn(i64) -> i64 + Send + Sync> = back.instantiate().unwrap();
        assert_eq!(f(5), 30);
    }

    #[test]
    fn wrong_role_is_an_error() {
        let r = FnRef::new(double_factory, vec![], "double");
        let err = r.instantiate::<String>().unwrap_err();
        assert!(err.to_string().contains("expected role"), "{err}");
    }

    #[test]
    fn zero_sized_closures_are_conjured() {
        fn call<F: Fn(u32) -> u32>(_: F) -> u32 {
            conjure_zst::<F>()(20)
        }
        assert_eq!(call(|x| x + 1), 21);
    }
}
