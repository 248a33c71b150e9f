//! A sled engine with one behaviour changed, for tests that need an engine that misbehaves in a
//! stated way (a fault, a race it always loses): every call goes to sled except the ones the
//! [`Twist`] overrides.

use std::{ops::Bound, path::Path};

use vault_store::{
    Engine, SledEngine, StoreError,
    engine::{EngineStats, Group},
};

/// What a [`Wrapped`] engine does differently from sled; the defaults do what sled does.
pub(crate) trait Twist: std::fmt::Debug + Send + Sync + 'static {
    fn scan(&self, rows: Vec<(Vec<u8>, Vec<u8>)>) -> Vec<(Vec<u8>, Vec<u8>)> {
        rows
    }
    fn commit(&self, sled: &SledEngine, group: Group) -> Result<Vec<Vec<u8>>, StoreError> {
        sled.commit(group)
    }
}

/// `sled` with `twist`.
#[derive(Debug)]
pub(crate) struct Wrapped<T>(pub(crate) SledEngine, pub(crate) T);

impl<T: Twist> Engine for Wrapped<T> {
    fn dir(&self) -> &Path {
        self.0.dir()
    }
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.0.get(key)
    }
    fn point_get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.0.point_get(key)
    }
    fn scan(
        &self,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StoreError> {
        Ok(self.1.scan(self.0.scan(start, end, limit)?))
    }
    fn commit(&self, group: Group) -> Result<Vec<Vec<u8>>, StoreError> {
        self.1.commit(&self.0, group)
    }
    fn read_header(&self) -> Result<Vec<u8>, StoreError> {
        self.0.read_header()
    }
    fn write_header(&self, header: &[u8]) -> Result<(), StoreError> {
        self.0.write_header(header)
    }
    fn checkpoint(&self, idle: bool) -> Result<(), StoreError> {
        self.0.checkpoint(idle)
    }
    fn close(&self, generation: u64) -> Result<(), StoreError> {
        self.0.close(generation)
    }
    fn flush(&self) -> Result<(), StoreError> {
        self.0.flush()
    }
    fn stats(&self) -> EngineStats {
        self.0.stats()
    }
}
