//! Host bindings for the Spin 2.0 interfaces the components import.
//!
//! Generated from `wit/` (copied from spin-sdk 5.2) so the types match the
//! guest side exactly. Everything is async (SQLite runs on the blocking pool)
//! and trappable (a host bug becomes a trap, not a panic).

wasmtime::component::bindgen!({
    path: "wit",
    world: "host",
    imports: { default: async | trappable },
    with: {
        "fermyon:spin/sqlite.connection": crate::sqlite::Connection,
    },
});
