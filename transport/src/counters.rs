//! A macro for structs of atomic counters.

/// Declares a struct of `AtomicU64` counters with `inc`, `snapshot` and `get`.
#[macro_export]
macro_rules! counters {
    ($(#[$m:meta])* $name:ident { $($(#[$fm:meta])* $f:ident),* $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Default)]
        pub struct $name {
            $($(#[$fm])* pub $f: std::sync::atomic::AtomicU64,)*
        }
        impl $name {
            /// Adds one to a counter.
            pub fn inc(c: &std::sync::atomic::AtomicU64) {
                c.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            /// All counters as (name, value) pairs.
            pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
                vec![$((stringify!($f), self.$f.load(std::sync::atomic::Ordering::Relaxed)),)*]
            }
            /// One counter's value by name (0 if unknown).
            pub fn get(&self, name: &str) -> u64 {
                self.snapshot().into_iter().find(|(n, _)| *n == name).map(|(_, v)| v).unwrap_or(0)
            }
        }
    };
}
