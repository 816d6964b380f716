//! The data source a galaxy loads missing keys from.

use std::future::Future;

use galaxycache_universe::BoxFuture;
use tokio::time::Instant;

use crate::{Error, Value};

/// The data source of a galaxy: loads the value of a key this node owns and does not have.
///
/// Return `Ok(Some(value))` with the bytes and, if the value should expire, its expiry
/// ([`Value::expiring`]); `Ok(None)` when the source has no such key; `Err` when the source
/// failed ([`Error::backend`]). A galaxy calls it at most once at a time per key, however
/// many callers ask.
///
/// ```
/// use galaxycache::{BackendGetter, Error, Value};
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
/// use galaxycache::{BackendGetter, Error, Value};
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
/// A source that wants to know more of a load than its key (by when its caller needs it,
/// why it runs, the span to log under) overrides [`load`](Self::load), which receives a
/// [`LoadContext`]; the galaxy always calls `load`, whose default is `get`:
///
/// ```
/// use galaxycache::{BackendGetter, Error, LoadContext, LoadReason, Value};
///
/// struct Db;
///
/// impl BackendGetter for Db {
///     async fn get(&self, key: &str) -> Result<Option<Value>, Error> {
///         self.load(key, &LoadContext::new(LoadReason::Client)).await
///     }
///
///     async fn load(&self, key: &str, cx: &LoadContext) -> Result<Option<Value>, Error> {
///         // A query timeout from the caller's deadline, a log line in the load's span.
///         let _budget = cx.deadline().map(|d| d.saturating_duration_since(tokio::time::Instant::now()));
///         cx.span().in_scope(|| tracing::debug!(reason = ?cx.reason(), "querying"));
///         Ok(Some(Value::new(key.to_string())))
///     }
/// }
/// ```
///
/// A closure over an owned key works too:
///
/// ```
/// use galaxycache::{BackendGetter, Error, Value};
///
/// let backend = |key: String| async move { Ok::<_, Error>(Some(Value::new(key))) };
/// fn takes(_: impl BackendGetter) {}
/// takes(backend);
/// ```
pub trait BackendGetter: Send + Sync + 'static {
    /// Load `key` from the data source.
    fn get(&self, key: &str) -> impl Future<Output = Result<Option<Value>, Error>> + Send;

    /// Load `key` from the data source, told why and by when ([`LoadContext`]). The
    /// galaxy calls this; the default calls [`get`](Self::get).
    fn load(
        &self,
        key: &str,
        cx: &LoadContext,
    ) -> impl Future<Output = Result<Option<Value>, Error>> + Send {
        let _ = cx;
        self.get(key)
    }

    /// [`get_many`](Self::get_many), told why and by when: for a batch, the latest
    /// deadline of its loads (none if one has none) and the first load's reason. The
    /// galaxy calls this; the default calls `get_many`.
    fn load_many(
        &self,
        keys: &[&str],
        cx: &LoadContext,
    ) -> impl Future<Output = Vec<Result<Option<Value>, Error>>> + Send {
        let _ = cx;
        self.get_many(keys)
    }

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

/// Why a galaxy loads a key from its backend.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LoadReason {
    /// A caller of this node asked ([`Galaxy::get`](crate::Galaxy::get)), or its owner
    /// failed and this node loads it in the owner's stead.
    #[default]
    Client,
    /// A peer asked this node, the key's owner.
    Peer,
    /// A value past its refresh point is reloaded in the background.
    Refresh,
    /// A caller warming the cache said so ([`GetOptions::reason`](crate::GetOptions::reason)).
    Preload,
}

/// What a backend is told of a load besides its key.
#[derive(Clone, Debug)]
pub struct LoadContext {
    deadline: Option<Instant>,
    reason: LoadReason,
    span: tracing::Span,
}

impl LoadContext {
    /// A load for `reason`, without a deadline, in no span: for calling a backend
    /// directly (tests, tools).
    pub fn new(reason: LoadReason) -> Self {
        LoadContext {
            deadline: None,
            reason,
            span: tracing::Span::none(),
        }
    }

    /// The same load, due by `deadline`.
    pub fn with_deadline(mut self, deadline: Option<Instant>) -> Self {
        self.deadline = deadline;
        self
    }

    /// The same load, in `span`.
    pub fn with_span(mut self, span: tracing::Span) -> Self {
        self.span = span;
        self
    }

    /// When the get that started the load stops waiting (its
    /// [`GetOptions::deadline`](crate::GetOptions::deadline)), or the asking peer does;
    /// `None` when nobody said. A load is shared by every caller of its key, so it may be
    /// worth finishing past this for the others; a backend that cannot use a late answer
    /// may give up then.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Why the load runs.
    pub fn reason(&self) -> LoadReason {
        self.reason
    }

    /// The load's span (`galaxycache.load`, with the galaxy and the key's length), so the
    /// backend's own events and spans nest under it. Disabled when nothing collects it.
    pub fn span(&self) -> &tracing::Span {
        &self.span
    }
}

/// [`BackendGetter`] made object-safe, so a galaxy is not generic over its backend.
pub(crate) trait DynBackend: Send + Sync {
    fn load<'a>(
        &'a self,
        key: &'a str,
        cx: &'a LoadContext,
    ) -> BoxFuture<'a, Result<Option<Value>, Error>>;

    fn load_many<'a>(
        &'a self,
        keys: &'a [&'a str],
        cx: &'a LoadContext,
    ) -> BoxFuture<'a, Vec<Result<Option<Value>, Error>>>;

    fn batches(&self) -> bool;
}

impl<B: BackendGetter> DynBackend for B {
    fn load<'a>(
        &'a self,
        key: &'a str,
        cx: &'a LoadContext,
    ) -> BoxFuture<'a, Result<Option<Value>, Error>> {
        Box::pin(BackendGetter::load(self, key, cx))
    }

    fn load_many<'a>(
        &'a self,
        keys: &'a [&'a str],
        cx: &'a LoadContext,
    ) -> BoxFuture<'a, Vec<Result<Option<Value>, Error>>> {
        Box::pin(BackendGetter::load_many(self, keys, cx))
    }

    fn batches(&self) -> bool {
        BackendGetter::batches(self)
    }
}
