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
}

impl<B: BackendGetter> DynBackend for B {
    fn load<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Value>, Error>> {
        Box::pin(self.get(key))
    }
}
