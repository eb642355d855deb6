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
//! All of Riffle's `unsafe` that turns bytes into code is in this module;
//! everything that reaches it from outside is an `unsafe fn` whose caller
//! states why its bytes are trusted.
//!
//! 1. Every factory has the single signature [`Factory`], and [`FnRef::new`]
//!    only takes values of that type, so a `FnRef` *made* in a process holds
//!    the offset of a real factory. A `FnRef` can also be *decoded* from
//!    bytes, with any offset: that is why [`FnRef::instantiate_any`] and
//!    [`FnRef::instantiate`] are `unsafe`. Their callers must know the bytes
//!    came from this process or from a driver that proved both who it is
//!    (the shared secret, checked on every call) and what it runs (its build
//!    id equals ours). The executor's two entry points
//!    (`Executor::register_stage` over gRPC, and the embedded backend in the
//!    driver's own process) carry that argument.
//! 2. An offset is only meaningful in a byte-identical binary. The build id
//!    hashes the running executable; a build id that cannot be computed is an
//!    error, never a value two different binaries could share. Given the
//!    same binary and the same anchor, `anchor + offset` is exactly the
//!    address the driver took.
//! 3. Offsets are taken within one image, so every factory must be linked
//!    into the main executable (not a `dylib` loaded at another address);
//!    Riffle's crates are always linked statically.
//! 4. A factory returns `Box<dyn Any>`, and the caller downcasts it to the
//!    role it expects ([`FnRef::instantiate`]), so a role mix-up is an error,
//!    not undefined behaviour.
//! 5. [`conjure_zst`] creates values only of zero-sized `Copy` types (closures
//!    that capture nothing are both) of which the caller has held a value: a
//!    type with no bytes has no invalid bit patterns, a type that was
//!    inhabited is not uninhabited, and a `Copy` type has no `Drop` and no
//!    uniqueness to break by duplicating it. The size is checked at compile
//!    time, as a post-monomorphization error: `cargo build` and `cargo test`
//!    report it, `cargo check` does not.

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
    ///
    /// # Safety
    ///
    /// `self` was made by [`FnRef::new`] in this process, or in a process
    /// whose build id equals ours and that was authenticated as this
    /// process's driver (see the module documentation). Any other offset
    /// makes this jump to an arbitrary address.
    pub unsafe fn instantiate_any(&self) -> Result<Box<dyn Any + Send + Sync>, PipelineError> {
        let address = anchor_address().wrapping_add(self.offset as usize);
        // SAFETY: the caller guarantees the offset was produced by
        // `FnRef::new` from a `Factory` in this binary, so `address` is that
        // factory's entry point in this process.
        let factory: Factory = unsafe { std::mem::transmute::<usize, Factory>(address) };
        factory(&self.state)
    }

    /// Calls the factory and downcasts the operator to the role `R`
    /// (for example `Box<dyn NarrowOp>`).
    ///
    /// # Safety
    ///
    /// As for [`FnRef::instantiate_any`].
    pub unsafe fn instantiate<R: 'static>(&self) -> Result<R, PipelineError> {
        // SAFETY: forwarded to our caller.
        unsafe { self.instantiate_any() }?
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

/// What the Dataset API asks of a closure beyond `Fn`: it can be copied,
/// which every closure that captures nothing can. Named so that a closure
/// that captures a `String` or a `Vec` gets an error saying what to do
/// instead of "`Copy` is not implemented".
#[diagnostic::on_unimplemented(
    message = "a closure given to the Dataset API must capture nothing",
    label = "this closure captures a value",
    note = "Riffle ships closures by code address; pass state explicitly with map_with/filter_with/flat_map_with"
)]
pub trait Shippable: Copy {}

impl<F: Copy> Shippable for F {}

/// Fails to compile (post-monomorphization) unless `F` is zero-sized: a
/// closure passed to the Dataset API must capture nothing, because only its
/// type (its code) travels to the executors.
pub const fn assert_zst<F>() {
    const {
        assert!(
            size_of::<F>() == 0,
            "Riffle ships closures by code address: a closure passed to map/filter/... must \
             capture nothing. Pass state explicitly with map_with/filter_with/flat_map_with."
        )
    };
}

/// Produces the value of a zero-sized `Copy` type, such as a closure that
/// captures nothing, on an executor that received only the type. Fails to
/// compile (post-monomorphization) for a type with a size.
///
/// # Safety
///
/// A value of `F` has existed in this program (the Dataset API received
/// one from the user before shipping its type). That rules out uninhabited
/// zero-sized types, which have no value to conjure.
pub unsafe fn conjure_zst<F: Copy>() -> F {
    assert_zst::<F>();
    // SAFETY: `F` is zero-sized (checked at compile time above), so it has no
    // bytes and every (empty) bit pattern is valid; it is inhabited (the
    // caller held a value) and `Copy`, so it has no `Drop` and duplicating it
    // breaks no uniqueness.
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
        // SAFETY: made by `FnRef::new` in this process.
        let f: Box<dyn Fn(i64) -> i64 + Send + Sync> = unsafe { back.instantiate() }.unwrap();
        assert_eq!(f(5), 30);
    }

    #[test]
    fn wrong_role_is_an_error() {
        let r = FnRef::new(double_factory, vec![], "double");
        // SAFETY: made by `FnRef::new` in this process.
        let err = unsafe { r.instantiate::<String>() }.unwrap_err();
        assert!(err.to_string().contains("expected role"), "{err}");
    }

    #[test]
    fn zero_sized_closures_are_conjured() {
        fn call<F: Fn(u32) -> u32 + Copy>(_: F) -> u32 {
            // SAFETY: a value of `F` was passed in.
            let f = unsafe { conjure_zst::<F>() };
            f(20)
        }
        assert_eq!(call(|x| x + 1), 21);
    }
}
