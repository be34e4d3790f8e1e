//! In-process TTL cache for catalogue reads, with optional single-flight fills.
//!
//! Without single-flight (the planted `--stampede`), every request that misses
//! runs its own fill, so when a hot entry expires under load, all concurrent
//! requests hit the database at once. With single-flight, one request fills
//! and the others wait for it (`cache.wait`, a waiting span) and then read the
//! fresh value.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use opentelemetry::Context;

use crate::telemetry::{Service, Telemetry};
use crate::LabError;

/// What is cached.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Key {
    /// The bestseller list (`GET /products`).
    Bestsellers,
    /// One product (`GET /products/{id}`).
    Product(i64),
}

struct Entry {
    value: Bytes,
    expires: Instant,
}

/// Whether a read was served from the cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Fresh entry found.
    Hit,
    /// Another request's fill was awaited (single-flight).
    Joined,
    /// This request ran the fill.
    Loaded,
}

/// A TTL cache of serialized responses.
pub(crate) struct Cache {
    ttl: Duration,
    single_flight: bool,
    entries: Mutex<HashMap<Key, Entry>>,
    flights: Mutex<HashMap<Key, Arc<tokio::sync::Mutex<()>>>>,
}

impl Cache {
    pub fn new(ttl: Duration, single_flight: bool) -> Cache {
        Cache {
            ttl,
            single_flight,
            entries: Mutex::new(HashMap::new()),
            flights: Mutex::new(HashMap::new()),
        }
    }

    fn fresh(&self, key: Key) -> Option<Bytes> {
        let entries = self.entries.lock().ok()?;
        entries
            .get(&key)
            .filter(|e| e.expires > Instant::now())
            .map(|e| e.value.clone())
    }

    fn store(&self, key: Key, value: Bytes) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.insert(
                key,
                Entry {
                    value,
                    expires: Instant::now() + self.ttl,
                },
            );
        }
    }

    /// Returns the cached value of `key`, filling it with `load` when missing or stale.
    pub async fn get_or_load<F, Fut>(
        &self,
        key: Key,
        telemetry: &Telemetry,
        parent: &Context,
        load: F,
    ) -> Result<(Bytes, Outcome), LabError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Bytes, LabError>>,
    {
        if let Some(v) = self.fresh(key) {
            return Ok((v, Outcome::Hit));
        }
        if !self.single_flight {
            let value = load().await?;
            self.store(key, value.clone());
            return Ok((value, Outcome::Loaded));
        }
        let flight = {
            let mut flights = self
                .flights
                .lock()
                .map_err(|_| LabError::Internal("cache lock poisoned".into()))?;
            flights.entry(key).or_default().clone()
        };
        let wait_start = SystemTime::now();
        let _guard = flight.lock().await;
        if let Some(v) = self.fresh(key) {
            telemetry.record_wait(Service::Checkout, "cache.wait", parent, wait_start);
            return Ok((v, Outcome::Joined));
        }
        let value = load().await?;
        self.store(key, value.clone());
        Ok((value, Outcome::Loaded))
    }
}
