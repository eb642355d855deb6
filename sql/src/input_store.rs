//! The object store DataFusion's listing tables read through: the real
//! store with Hadoop's hidden-file rule applied to listings.
//!
//! CSV, Parquet and JSON tables are DataFusion `ListingTable`s, which list
//! a table's location themselves. Directories other tools wrote hold
//! markers and leftovers (`_SUCCESS`, `_temporary/`, `.part-0.crc`) that
//! are not data; Hadoop's `FileInputFormat` and Spark skip every path
//! component starting with `_` or `.`, and so must these tables. Filtering
//! the listing, below the prefix listed, applies the same rule as
//! [`riffle_shuffle::stores::ObjectStores::list_files`] to every listing
//! table without touching DataFusion.

use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result,
};
use riffle_shuffle::stores::is_hidden;
use std::ops::Range;
use std::sync::Arc;

/// `inner`, with hidden paths left out of listings (reads and writes
/// are passed through unchanged).
#[derive(Debug)]
pub struct InputStore(pub Arc<dyn ObjectStore>);

impl std::fmt::Display for InputStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "InputStore({})", self.0)
    }
}

/// Whether `location` has a hidden component below `prefix`.
fn hidden_below(prefix: Option<&Path>, location: &Path) -> bool {
    let depth = prefix.map_or(0, |p| p.parts().count());
    location.parts().skip(depth).any(|p| is_hidden(p.as_ref()))
}

#[async_trait::async_trait]
impl ObjectStore for InputStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.0.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.0.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.0.get_opts(location, options).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.0.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.0.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        let owned = prefix.cloned();
        self.0
            .list(prefix)
            .filter(move |meta| {
                let keep = meta
                    .as_ref()
                    .map_or(true, |m| !hidden_below(owned.as_ref(), &m.location));
                futures::future::ready(keep)
            })
            .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        let mut listed = self.0.list_with_delimiter(prefix).await?;
        listed.common_prefixes.retain(|p| !hidden_below(prefix, p));
        listed
            .objects
            .retain(|m| !hidden_below(prefix, &m.location));
        Ok(listed)
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.0.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.0.rename_opts(from, to, options).await
    }
}
