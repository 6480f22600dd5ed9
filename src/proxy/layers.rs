//! The proxy's tower layers, one file each. [`super::stack`] puts them in
//! order and says why each sits where it does.
//!
//! Every layer is a `Foo<S>` service with a `FooLayer` that wraps the next
//! one. Between the layers a request is an `axum::extract::Request` and a
//! refusal or failure is an `Err(RequestError)`; only [`rescue::Rescue`],
//! outermost, turns errors into answers.

pub(crate) mod authn;
pub(crate) mod chain;
pub(crate) mod guard;
pub(crate) mod limit;
pub(crate) mod observe;
pub(crate) mod parse;
pub(crate) mod rescue;

/// The service to call now, leaving a clone in its place for the next call
/// (tower's usual way: the instance that was polled ready is the one called).
fn take<S: Clone>(service: &mut S) -> S {
    let clone = service.clone();
    std::mem::replace(service, clone)
}
