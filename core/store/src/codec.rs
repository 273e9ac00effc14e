//! How values are kept in sled: postcard bytes, and sled's errors as the
//! store's. Every tree uses these; they depend on no tree.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::StoreError;

pub(crate) fn sled_error(e: sled::Error) -> StoreError {
    StoreError::Io(e.to_string())
}

pub(crate) fn encode<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    postcard::to_allocvec(value).expect("records serialize to postcard")
}

pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    postcard::from_bytes(bytes).map_err(|e| StoreError::Corrupt(format!("undecodable value: {e}")))
}
