//! One receive buffer per thread. The ports of a switch and the NICs of a
//! monitor all read on their runtime's one thread, and each is done with a
//! frame before the next read, so they share one buffer instead of
//! holding 128 KiB each (a thousand-port switch kept 128 MiB resident).

use std::cell::RefCell;

/// Size of the buffer: a 64 KiB segment with its headers, and room to
/// spare.
pub const SIZE: usize = 128 * 1024;

thread_local! {
    static BUFFER: RefCell<Box<[u8]>> = RefCell::new(vec![0u8; SIZE].into_boxed_slice());
}

/// Runs `f` with this thread's receive buffer ([`SIZE`] bytes; what an
/// earlier user left in it is still there). Called again from within
/// `f`, the inner call gets a buffer of its own.
pub fn with<R>(f: impl FnOnce(&mut [u8]) -> R) -> R {
    BUFFER.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => f(&mut buf),
        Err(_) => f(&mut vec![0u8; SIZE]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_shared_and_reentrant() {
        with(|outer| {
            assert_eq!(outer.len(), SIZE);
            outer[0] = 7;
            with(|inner| {
                assert_eq!(inner.len(), SIZE);
                assert_eq!(inner[0], 0, "a nested call gets its own buffer");
            });
        });
        with(|again| assert_eq!(again[0], 7, "the thread's buffer is reused"));
    }
}
