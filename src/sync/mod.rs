//! Single-executor async primitives shared by the broker and the client library:
//! nothing here knows about shards, partitions or protocols.
//!
//! - [`signal`]: `Signal` (wake every waiter, each wait owning a slot it gives back
//!   when dropped) and `Latch`;
//! - [`join`]: `join_all` in linear time.

pub mod join;
pub mod signal;

/// Runs `f` to completion on a fresh glommio executor: the unit tests' way to
/// drive `!Send` async code.
#[cfg(test)]
pub(crate) fn run_on_executor<F: std::future::Future<Output = ()> + 'static>(
    f: impl FnOnce() -> F + Send + 'static,
) {
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .spawn(f)
        .expect("a test executor starts")
        .join()
        .expect("the test's executor ends without panicking");
}
