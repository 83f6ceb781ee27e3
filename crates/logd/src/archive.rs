//! The archive: sealed segments exported to an open format that any tool reads, in a
//! directory or an S3-compatible object store (through the `object_store` crate), and
//! searched back by `flotilla logs query --archive URL`.
//!
//! One object per sealed segment:
//! `<prefix>/<node>/dt=YYYY-MM-DD/hour=HH/<first id>-<end id>.jsonl.zst` — zstd-compressed
//! JSON Lines, one object per record with every field of [`RecordJson`] plus `raw` (the
//! frame as received, when it is UTF-8; `raw_base64` otherwise), so that nothing is lost and
//! `zstdcat | jq` is enough to read it. Segments never span two hours of received-at time
//! (a record arriving a little late may sit in the next hour's object).
//!
//! Several nodes may archive into one bucket: the key starts with the node id, which
//! `flotilla logd` keeps per data directory (`node.id`, created the first time as
//! `<host>-<random>`; see [`crate::server::persistent_node_id`]), so two nodes never write
//! the same key, even two on one host archiving the same hour.
//!
//! Archiving is at-least-once: a segment is marked archived (in `archive.done` in the data
//! directory) only after its object is stored; with an archive configured, retention never
//! drops a segment that is not archived yet.

// An I/O component (files, S3): it backs off between attempts.
#![allow(clippy::disallowed_methods)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use object_store::ObjectStore;
use object_store::path::Path as ObjectPath;

use crate::error::Error;
pub use crate::query::record_from_json;
use crate::query::{Matcher, RecordJson};

use crate::segment::{Segment, hour_parts};
use crate::store::{Store, defaults_for};

/// Where archives go: a directory or an S3-compatible bucket.
#[derive(Debug, Clone)]
pub struct ArchiveTarget {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    url: String,
}

impl ArchiveTarget {
    /// Parses an archive URL:
    /// - `/path` or `file:///path`: a directory (created if missing);
    /// - `s3://BUCKET[/PREFIX][?endpoint=URL&region=R&access_key=K&secret_key=S]`: an
    ///   S3-compatible store; without keys, `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY` are
    ///   used if set, else requests are unsigned. An `http://` endpoint is allowed (for a
    ///   store on loopback).
    pub fn parse(url: &str) -> Result<ArchiveTarget, Error> {
        let bad = |why: &str| Error::Config(format!("archive {url:?}: {why}"));
        if let Some(rest) = url.strip_prefix("s3://") {
            let (location, params) = rest.split_once('?').unwrap_or((rest, ""));
            let (bucket, prefix) = location.split_once('/').unwrap_or((location, ""));
            if bucket.is_empty() {
                return Err(bad("no bucket"));
            }
            let mut builder = object_store::aws::AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .with_region("us-east-1");
            let mut signed = std::env::var_os("AWS_ACCESS_KEY_ID").is_some();
            for (k, v) in form_urlencoded::parse(params.as_bytes()) {
                builder = match k.as_ref() {
                    "endpoint" => {
                        let http = v.starts_with("http://");
                        builder.with_endpoint(v.as_ref()).with_allow_http(http)
                    }
                    "region" => builder.with_region(v.as_ref()),
                    "access_key" => {
                        signed = true;
                        builder.with_access_key_id(v.as_ref())
                    }
                    "secret_key" => builder.with_secret_access_key(v.as_ref()),
                    other => return Err(bad(&format!("unknown parameter {other:?}"))),
                };
            }
            if !signed {
                builder = builder.with_skip_signature(true);
            }
            let store = builder.build().map_err(|e| bad(&e.to_string()))?;
            return Ok(ArchiveTarget {
                store: Arc::new(store),
                prefix: prefix.trim_matches('/').to_string(),
                url: url.to_string(),
            });
        }
        let dir = url.strip_prefix("file://").unwrap_or(url);
        if dir.is_empty() || dir.contains("://") {
            return Err(bad(
                "expected a directory, file:///DIR or s3://BUCKET/PREFIX",
            ));
        }
        std::fs::create_dir_all(dir).map_err(|e| Error::io(format!("creating {dir}"), e))?;
        let store = object_store::local::LocalFileSystem::new_with_prefix(dir)
            .map_err(|e| bad(&e.to_string()))?;
        Ok(ArchiveTarget {
            store: Arc::new(store),
            prefix: String::new(),
            url: url.to_string(),
        })
    }

    /// The URL it was parsed from.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn path(&self, key: &str) -> ObjectPath {
        if self.prefix.is_empty() {
            ObjectPath::from(key)
        } else {
            ObjectPath::from(format!("{}/{key}", self.prefix))
        }
    }

    /// Stores one object.
    pub async fn put(&self, key: &str, data: Vec<u8>) -> Result<(), Error> {
        self.store
            .put(&self.path(key), data.into())
            .await
            .map_err(|e| Error::Archive(format!("storing {key} in {}: {e}", self.url)))?;
        Ok(())
    }

    /// Reads one object.
    pub async fn get(&self, key: &str) -> Result<Bytes, Error> {
        let result = self
            .store
            .get(&self.path(key))
            .await
            .map_err(|e| Error::Archive(format!("reading {key} from {}: {e}", self.url)))?;
        result
            .bytes()
            .await
            .map_err(|e| Error::Archive(format!("reading {key} from {}: {e}", self.url)))
    }

    /// Keys (relative to the prefix) of every archived object.
    pub async fn list(&self) -> Result<Vec<String>, Error> {
        let prefix = (!self.prefix.is_empty()).then(|| ObjectPath::from(self.prefix.as_str()));
        let mut stream = self.store.list(prefix.as_ref());
        let mut keys = Vec::new();
        while let Some(meta) = stream.next().await {
            let meta = meta.map_err(|e| Error::Archive(format!("listing {}: {e}", self.url)))?;
            let full = meta.location.to_string();
            let key = if self.prefix.is_empty() {
                full
            } else {
                full.strip_prefix(&format!("{}/", self.prefix))
                    .unwrap_or(&full)
                    .to_string()
            };
            if key.ends_with(".jsonl.zst") {
                keys.push(key);
            }
        }
        keys.sort();
        Ok(keys)
    }
}

/// The object key of a segment.
pub fn object_key(node: &str, seg: &Segment) -> String {
    let (y, m, d, h) = hour_parts(seg.hour());
    format!(
        "{node}/dt={y:04}-{m:02}-{d:02}/hour={h:02}/{:020}-{:020}.jsonl.zst",
        seg.first_id().unwrap_or(0),
        seg.end_id().unwrap_or(0)
    )
}

/// The hour (Unix seconds) an object key names, if it names one.
pub fn key_hour(key: &str) -> Option<i64> {
    let dt = key.split('/').find_map(|p| p.strip_prefix("dt="))?;
    let hour: i64 = key
        .split('/')
        .find_map(|p| p.strip_prefix("hour="))?
        .parse()
        .ok()?;
    let mut parts = dt.split('-');
    let y: i32 = parts.next()?.parse().ok()?;
    let m: u8 = parts.next()?.parse().ok()?;
    let d: u8 = parts.next()?.parse().ok()?;
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || !(0..24).contains(&hour) {
        return None;
    }
    Some(flotilla_syslog::days_from_civil(y, m, d) * 86_400 + hour * 3600)
}

/// The archive form of a segment: zstd JSON Lines with `raw` (or `raw_base64`).
pub fn export_segment(seg: &Segment, node: &str) -> Result<Vec<u8>, Error> {
    let mut lines = Vec::with_capacity(
        seg.blocks
            .iter()
            .map(|b| b.meta.raw_bytes as usize * 3)
            .sum(),
    );
    for entry in &seg.blocks {
        let block = seg.read_block(entry)?;
        for i in 0..block.len() {
            let (id, record) = block.record(i);
            let mut json = RecordJson::from_record(id, &record, &defaults_for(record.received_at));
            json.node = Some(node.to_string());
            if json.raw_base64.is_none() {
                json.raw = Some(String::from_utf8_lossy(&record.raw).into_owned());
            }
            serde_json::to_writer(&mut lines, &json)
                .map_err(|e| Error::Archive(format!("encoding a record: {e}")))?;
            lines.push(b'\n');
        }
    }
    zstd::bulk::compress(&lines, 3).map_err(|e| Error::io("compressing an archive object", e))
}

/// Counters of an archive query.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ArchiveQueryStats {
    /// Objects in the archive.
    pub objects_total: u64,
    /// Objects whose hour could hold a match, and were read.
    pub objects_read: u64,
    /// Records looked at.
    pub records_scanned: u64,
    /// Records that matched.
    pub matched: u64,
}

/// Searches the archive: every object whose hour overlaps the query's time range (with an
/// hour of slack for late arrivals), every record matched like a stored one. Matches are
/// passed to `emit` in key order (node, then time); it returns false to stop.
pub async fn query_archive(
    target: &ArchiveTarget,
    matcher: &Matcher,
    emit: &mut (dyn FnMut(RecordJson) -> bool + Send),
) -> Result<ArchiveQueryStats, Error> {
    let mut stats = ArchiveQueryStats::default();
    let keys = target.list().await?;
    stats.objects_total = keys.len() as u64;
    for key in keys {
        if let Some(hour) = key_hour(&key) {
            let min = (hour - 3600) * 1_000_000_000;
            let max = (hour + 7200) * 1_000_000_000;
            if !matcher.time_overlaps(min, max) {
                continue;
            }
        }
        stats.objects_read += 1;
        let data = target.get(&key).await?;
        let plain = zstd::stream::decode_all(&data[..])
            .map_err(|e| Error::Archive(format!("{key}: not zstd: {e}")))?;
        for line in plain.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            stats.records_scanned += 1;
            let json: RecordJson = serde_json::from_slice(line)
                .map_err(|e| Error::Archive(format!("{key}: bad line: {e}")))?;
            let record = record_from_json(&json)?;
            if matcher.matches(record.received_at, &record.raw) {
                stats.matched += 1;
                if !emit(json) {
                    return Ok(stats);
                }
            }
        }
    }
    Ok(stats)
}

/// Archives every sealed segment not archived yet, now and then every `every`, until the
/// task is dropped. Failures are logged, counted in the store's stats and retried.
pub async fn run_archiver(store: Store, target: ArchiveTarget, every: Duration) {
    loop {
        for seg in store.sealed_segments() {
            if store.is_archived(&seg.path) {
                continue;
            }
            let node = store.config().node_id.clone();
            let key = object_key(&node, &seg);
            let seg2 = seg.clone();
            let exported = tokio::task::spawn_blocking(move || export_segment(&seg2, &node)).await;
            let result = match exported {
                Ok(Ok(data)) => target.put(&key, data).await,
                Ok(Err(e)) => Err(e),
                Err(e) => Err(Error::Archive(format!("export task failed: {e}"))),
            };
            match result.and_then(|()| store.mark_archived(&seg.path)) {
                Ok(()) => tracing::info!(key = %key, archive = %target.url(), "segment archived"),
                Err(e) => {
                    store.count_archive_failure(&e);
                    tracing::error!(key = %key, error = %e, "archiving failed; retrying later");
                    break;
                }
            }
        }
        tokio::time::sleep(every).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_hours() {
        assert_eq!(
            key_hour(
                "node-1/dt=2024-01-01/hour=05/00000000000000000001-00000000000000000100.jsonl.zst"
            ),
            Some(1_704_067_200 + 5 * 3600)
        );
        assert_eq!(key_hour("x/dt=2024-13-01/hour=05/a.jsonl.zst"), None);
        assert_eq!(key_hour("nothing"), None);
    }

    /// Two nodes (two data directories on one host, default node ids) archive the same
    /// hour, with the same record ids, into one target: two distinct objects, both found.
    #[test]
    fn two_nodes_archiving_one_hour_into_one_target_never_collide() {
        let root = tempfile::tempdir().unwrap();
        let target_dir = root.path().join("bucket");
        let target = ArchiveTarget::parse(target_dir.to_str().unwrap()).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let now = crate::record::now_nanos();
        let mut keys = Vec::new();
        let mut nodes = Vec::new();
        for n in 0..2 {
            let data = root.path().join(format!("node{n}"));
            let node = crate::server::persistent_node_id(&data).unwrap();
            // Kept across restarts.
            assert_eq!(crate::server::persistent_node_id(&data).unwrap(), node);
            let mut config = crate::store::StoreConfig::new(&data);
            config.node_id = node.clone();
            let store = Store::open(config).unwrap();
            let records = (0..10)
                .map(|i| crate::record::Record {
                    received_at: now + i,
                    source: crate::record::Source::LOCAL,
                    flags: 0,
                    raw: Bytes::from(format!("<14>1 - host app - - - node {n} line {i}")),
                })
                .collect();
            store.ingest().submit_blocking(records, true).unwrap();
            store.seal_now().unwrap();
            let segs = store.sealed_segments();
            assert_eq!(segs.len(), 1);
            let key = object_key(&node, &segs[0]);
            let data = export_segment(&segs[0], &node).unwrap();
            rt.block_on(target.put(&key, data)).unwrap();
            keys.push(key);
            nodes.push(node);
            store.shutdown();
        }
        assert_ne!(
            nodes[0], nodes[1],
            "two data directories, one host: two ids"
        );
        assert_ne!(keys[0], keys[1]);
        // Same hour, same ids: only the node tells them apart.
        let strip = |k: &str| k.split_once('/').unwrap().1.to_string();
        assert_eq!(strip(&keys[0]), strip(&keys[1]));
        let mut listed = rt.block_on(target.list()).unwrap();
        listed.sort();
        let mut expected = keys.clone();
        expected.sort();
        assert_eq!(listed, expected);
        let matcher = Matcher::new(
            crate::query::QuerySpec::default()
                .to_query(crate::record::now_nanos())
                .unwrap(),
        )
        .unwrap();
        let mut found = 0;
        rt.block_on(query_archive(&target, &matcher, &mut |_| {
            found += 1;
            true
        }))
        .unwrap();
        assert_eq!(found, 20);
    }
}
