//! The data source a galaxy loads missing keys from.

use std::future::Future;

use galaxycache_universe::BoxFuture;

use crate::{Error, Value};

/// The data source of a galaxy: loads the value of a key this node owns and does not have.
///
/// Return `Ok(Some(value))` with the bytes and, if the value should expire, its expiry
/// ([`Value::expiring`]); `Ok(None)` when the source has no such key; `Err` when the source
/// failed ([`Error::backend`]). A galaxy calls it at most once at a time per key, however
/// many callers ask.
///
/// ```
/// use galaxycache_galaxy::{BackendGetter, Error, Value};
///
/// struct Greeter;
///
/// impl BackendGetter for Greeter {
///     async fn get(&self, key: &str) -> Result<Option<Value>, Error> {
///         Ok(Some(Value::new(format!("hello, {key}"))))
///     }
/// }
/// ```
///
/// A source that answers many keys in one request (one SQL query, one HTTP call) overrides
/// [`get_many`](Self::get_many) and returns true from [`batches`](Self::batches); the galaxy
/// then gathers the loads that arrive while such calls are running into the next call,
/// at most [`MAX_BATCH`](crate::MAX_BATCH) keys each (see [`Galaxy`](crate::Galaxy)'s
/// "Batched loads"). A lone load still goes at once, as a call of one key.
///
/// ```
/// use galaxycache_galaxy::{BackendGetter, Error, Value};
///
/// struct Table;
///
/// impl BackendGetter for Table {
///     async fn get(&self, key: &str) -> Result<Option<Value>, Error> {
///         Ok(self.get_many(&[key]).await.pop().unwrap_or(Ok(None))?)
///     }
///
///     async fn get_many(&self, keys: &[&str]) -> Vec<Result<Option<Value>, Error>> {
///         // One query for every key, e.g. `SELECT key, value FROM t WHERE key IN (...)`.
///         keys.iter().map(|key| Ok(Some(Value::new(key.to_string())))).collect()
///     }
///
///     fn batches(&self) -> bool {
///         true
///     }
/// }
/// ```
///
/// A closure over an owned key works too:
///
/// ```
/// use galaxycache_galaxy::{BackendGetter, Error, Value};
///
/// let backend = |key: String| async move { Ok::<_, Error>(Some(Value::new(key))) };
/// fn takes(_: impl BackendGetter) {}
/// takes(backend);
/// ```
pub trait BackendGetter: Send + Sync + 'static {
    /// Load `key` from the data source.
    fn get(&self, key: &str) -> impl Future<Output = Result<Option<Value>, Error>> + Send;

    /// Load `keys` from the data source: one result per key, in their order (a result
    /// missing at the end is an error for its key). The galaxy calls it only when
    /// [`batches`](Self::batches) says so, never with the same key twice in one call, and
    /// never with more than [`MAX_BATCH`](crate::MAX_BATCH) keys. Default: a loop over
    /// [`get`](Self::get), one key after the other.
    fn get_many(
        &self,
        keys: &[&str],
    ) -> impl Future<Output = Vec<Result<Option<Value>, Error>>> + Send {
        async move {
            let mut values = Vec::with_capacity(keys.len());
            for key in keys {
                values.push(self.get(key).await);
            }
            values
        }
    }

    /// Whether the galaxy should gather concurrent loads into [`get_many`](Self::get_many)
    /// calls. Default: false, every load is a [`get`](Self::get) of its own. A source
    /// that overrides `get_many` returns true; it may decide when it opens (a database
    /// backend without a batch query says false).
    fn batches(&self) -> bool {
        false
    }
}

impl<F, Fut> BackendGetter for F
where
    F: Fn(String) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Option<Value>, Error>> + Send,
{
    fn get(&self, key: &str) -> impl Future<Output = Result<Option<Value>, Error>> + Send {
        self(key.to_owned())
    }
}

/// [`BackendGetter`] made object-safe, so a galaxy is not generic over its backend.
pub(crate) trait DynBackend: Send + Sync {
    fn load<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Value>, Error>>;

    fn load_many<'a>(
        &'a self,
        keys: &'a [&'a str],
    ) -> BoxFuture<'a, Vec<Result<Option<Value>, Error>>>;

    fn batches(&self) -> bool;
}

impl<B: BackendGetter> DynBackend for B {
    fn load<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Value>, Error>> {
        Box::pin(self.get(key))
    }

    fn load_many<'a>(
        &'a self,
        keys: &'a [&'a str],
    ) -> BoxFuture<'a, Vec<Result<Option<Value>, Error>>> {
        Box::pin(self.get_many(keys))
    }

    fn batches(&self) -> bool {
        BackendGetter::batches(self)
    }
}
