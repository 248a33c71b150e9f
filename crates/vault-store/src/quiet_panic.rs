//! Running a dependency's code that may panic on bad input from disk (sled's open), as an error.
//!
//! The panic is caught, and the default hook's message ("thread 'main' panicked at ...") is kept
//! off standard error meanwhile: the caller reports the failure as a store error of its own. The
//! hook is process-wide, so while `f` runs a panic on another thread is not printed either (it
//! still unwinds as usual); calls are serialised, and only short, rare calls (opening a store)
//! come here.

use std::panic::{AssertUnwindSafe, catch_unwind};

use parking_lot::Mutex;

static HOOK: Mutex<()> = Mutex::new(());

/// `f`'s value, or `Err(())` when it panicked.
pub(crate) fn catch<T>(f: impl FnOnce() -> T) -> Result<T, ()> {
    let _one_at_a_time = HOOK.lock();
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let result = catch_unwind(AssertUnwindSafe(f));
    std::panic::set_hook(hook);
    result.map_err(drop)
}

#[cfg(test)]
mod tests {
    use super::catch;

    #[test]
    fn a_panic_is_an_error_and_a_value_passes() {
        assert_eq!(catch(|| 7), Ok(7));
        assert_eq!(catch(|| -> u8 { panic!("bad file") }), Err(()));
        // The hook is back: a later catch still works.
        assert_eq!(catch(|| "x"), Ok("x"));
    }
}
