//! Billable operations, counted where edgehook makes them, so that the integration suite can
//! measure what one event costs instead of estimating it (see BENCHMARKS.md).
//!
//! Counting exists only in the test build (`--features faults`, which serves the counts at
//! `/__faults/billing`); in a deployed build `count` is an empty inline function. Counts are kept
//! per isolate: under `wrangler dev` the Worker and its Durable Objects share one.

/// One kind of billable operation, in Cloudflare's billing units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// A request to the Worker's fetch handler.
    WorkerRequest,
    /// A queue consumer invocation (one per batch) or a cron run.
    WorkerInvocation,
    /// A request to a Durable Object (fetch) or an alarm run.
    DoRequest,
    /// A SQLite row written by a Durable Object (inserts, updates, deletes, index entries).
    DoRowWritten,
    /// A queue write, read or delete: one per 64 KB of message.
    QueueWrite,
    QueueRead,
    QueueDelete,
    /// R2 put and list.
    R2ClassA,
    /// R2 get and head.
    R2ClassB,
    /// Bytes put into R2 (segments and claim-checked bodies): billed as stored data, per
    /// GB-month, for as long as they are kept.
    R2BytesStored,
}

#[cfg(feature = "faults")]
const OPS: [(Op, &str); 10] = [
    (Op::WorkerRequest, "worker_requests"),
    (Op::WorkerInvocation, "worker_invocations"),
    (Op::DoRequest, "do_requests"),
    (Op::DoRowWritten, "do_rows_written"),
    (Op::QueueWrite, "queue_writes"),
    (Op::QueueRead, "queue_reads"),
    (Op::QueueDelete, "queue_deletes"),
    (Op::R2ClassA, "r2_class_a"),
    (Op::R2ClassB, "r2_class_b"),
    (Op::R2BytesStored, "r2_bytes_stored"),
];

#[cfg(feature = "faults")]
thread_local! {
    static COUNTS: std::cell::RefCell<[u64; 10]> = const { std::cell::RefCell::new([0; 10]) };
}

/// Records `n` operations of kind `op`.
#[inline]
pub fn count(op: Op, n: u64) {
    #[cfg(feature = "faults")]
    COUNTS.with(|c| c.borrow_mut()[OPS.iter().position(|(o, _)| *o == op).unwrap_or(0)] += n);
    #[cfg(not(feature = "faults"))]
    let _ = (op, n);
}

/// Queue operations are billed per 64 KB of message.
pub fn queue_units(bytes: usize) -> u64 {
    bytes.div_ceil(64 * 1024).max(1) as u64
}

/// The counts so far as a JSON object; with `reset`, starts counting again from zero.
#[cfg(feature = "faults")]
pub fn snapshot(reset: bool) -> String {
    COUNTS.with(|c| {
        let mut counts = c.borrow_mut();
        let fields: Vec<String> =
            OPS.iter().zip(counts.iter()).map(|((_, name), n)| format!(r#""{name}":{n}"#)).collect();
        if reset {
            *counts = [0; 10];
        }
        format!("{{{}}}", fields.join(","))
    })
}

/// A Durable Object's SQLite storage that counts the rows its statements write. A statement
/// that changes rows completes within `exec`, so its count is known on return.
pub struct Sql(worker::SqlStorage);

impl Sql {
    pub fn new(sql: worker::SqlStorage) -> Sql {
        Sql(sql)
    }

    pub fn exec(
        &self,
        query: &str,
        bindings: impl Into<Option<Vec<worker::SqlStorageValue>>>,
    ) -> worker::Result<worker::SqlCursor> {
        let cursor = self.0.exec(query, bindings)?;
        #[cfg(feature = "faults")]
        count(Op::DoRowWritten, cursor.rows_written() as u64);
        Ok(cursor)
    }

    /// The database's size in bytes: what Cloudflare bills as stored data, and caps at 10 GB.
    /// Read as the JavaScript number it is: workers-rs's `database_size` casts it to a `usize`,
    /// which on wasm32 saturates at 4 GiB, below any limit that matters here.
    pub fn database_size(&self) -> u64 {
        let size = js_sys::Reflect::get(self.0.as_ref(), &wasm_bindgen::JsValue::from_str("databaseSize"));
        size.ok().and_then(|v| v.as_f64()).map_or(0, |bytes| bytes as u64)
    }
}
