//! Offline verification of segment files: streaming, constant memory.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use ed25519_dalek::VerifyingKey;
use serde::Serialize;

use super::segment::parse_segment_name;
use super::walker::{WalkOptions, Walker};

/// What kind of damage the first bad record shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TamperKind {
    /// Not a JSON record with `seq` and `prev`, and not a torn tail marked by the server.
    Malformed,
    /// Its hash does not match the `prev` of the record after it (a field was edited).
    Modified,
    /// A seq is missing (record deleted) or out of place (records reordered).
    OutOfSequence,
    /// An exact copy of the record before it.
    Duplicate,
    /// Two different records claim the same seq and predecessor.
    Inserted,
    /// A segment is missing, renamed, swapped or does not continue the previous one.
    SegmentMismatch,
    /// A checkpoint whose `covers_seq`/`head` do not match the chain.
    CheckpointInvalid,
    /// A checkpoint whose signature does not verify with the given public key.
    SignatureInvalid,
    /// A signed checkpoint promised another one that is not there.
    CheckpointMissing,
    /// The journal ends before the expected head.
    Truncated,
    /// The record at the expected head's seq has another hash.
    HeadMismatch,
    /// A file could not be read.
    Unreadable,
}

/// The first record that fails verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BadRecord {
    pub kind: TamperKind,
    pub file: PathBuf,
    /// 1-based line number in `file`.
    pub line: u64,
    /// Byte offset of the line in `file`.
    pub offset: u64,
    pub seq: Option<u64>,
    pub message: String,
}

impl std::fmt::Display for BadRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} line {}", self.file.display(), self.line)?;
        if let Some(s) = self.seq {
            write!(f, " (seq {s})")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Bytes skipped after a crash mid-append.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TornTail {
    pub file: PathBuf,
    pub offset: u64,
    pub length: u64,
    /// True when the server marked it with a `torn_tail` record (after a restart).
    pub marked: bool,
}

/// The result of [`verify`].
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    /// True when nothing was found wrong.
    pub ok: bool,
    pub files: u64,
    pub records: u64,
    /// Valid checkpoints (signature checked when a key was given).
    pub checkpoints: u64,
    pub signatures_checked: bool,
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    /// Hash of the last record.
    pub head_hash: Option<String>,
    /// The first record that failed, when `ok` is false.
    pub first_error: Option<BadRecord>,
    /// Torn tails skipped by the server (not a failure).
    pub torn_tails: Vec<TornTail>,
    /// Unparsable final bytes not (yet) marked: the server crashed and has not restarted since.
    /// Not a failure by itself.
    pub unmarked_tail: Option<TornTail>,
    /// Records after the last checkpoint: not covered by a signature (a truncation or an edit
    /// there is only caught against the head kept by the server).
    pub unsigned_tail: u64,
    /// The journal starts at this seq, the segments before it removed by retention.
    pub anchored_start: Option<u64>,
    pub bytes: u64,
}

/// Options of [`verify_with`].
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    pub public_key: Option<VerifyingKey>,
    /// `(seq, hex hash)` of the head kept by the server (`audit/head`).
    pub expected_head: Option<(u64, String)>,
}

/// Verifies segment files in order: the hash chain, the seqs, segment continuity, the
/// checkpoints (and their signatures when `public_key` is given), the retention anchor, and
/// the expected head. Files named like segments are sorted by the seq in their names (others
/// keep the given order, after them). Stops at the first bad record and names it.
pub fn verify(
    paths: &[PathBuf],
    public_key: Option<&VerifyingKey>,
    expected_head: Option<(u64, String)>,
) -> VerifyReport {
    verify_with(
        paths,
        &VerifyOptions {
            public_key: public_key.copied(),
            expected_head,
        },
    )
}

/// [`verify`] with an options struct.
pub fn verify_with(paths: &[PathBuf], opts: &VerifyOptions) -> VerifyReport {
    let mut ordered: Vec<(Option<u64>, PathBuf)> = paths
        .iter()
        .map(|p| {
            let seq = p
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(parse_segment_name);
            (seq, p.clone())
        })
        .collect();
    // Stable: segment-named files by seq first, then the others as given.
    ordered.sort_by_key(|(s, _)| (s.is_none(), s.unwrap_or(0)));
    let mut w = Walker::new(WalkOptions {
        key: opts.public_key.as_ref(),
        expected_head: opts.expected_head.clone(),
        allow_anchored_start: false,
    });
    let n = ordered.len();
    for (i, (seq, path)) in ordered.into_iter().enumerate() {
        if let Err(e) = walk_file(&mut w, &path, seq, i + 1 == n) {
            w.error_unreadable(&path, e);
        }
        if w.failed() {
            break;
        }
    }
    w.finish(opts.public_key.is_some())
}

/// Feeds one file to the walker.
pub(crate) fn walk_file(
    w: &mut Walker<'_>,
    path: &Path,
    name_seq: Option<u64>,
    is_last: bool,
) -> std::io::Result<()> {
    let f = File::open(path)?;
    w.begin_file(path.to_path_buf(), name_seq);
    let len = walk_reader(w, BufReader::with_capacity(1 << 20, f))?;
    w.end_file(is_last, len);
    Ok(())
}

/// Feeds every line of `r`; returns the number of bytes read.
pub(crate) fn walk_reader(w: &mut Walker<'_>, mut r: impl BufRead) -> std::io::Result<u64> {
    let mut buf = Vec::with_capacity(4096);
    let mut offset = 0u64;
    let mut line = 0u64;
    loop {
        buf.clear();
        let n = r.by_ref().read_until(b'\n', &mut buf)?;
        if n == 0 {
            return Ok(offset);
        }
        line += 1;
        let terminated = buf.last() == Some(&b'\n');
        let body = if terminated { &buf[..n - 1] } else { &buf[..] };
        w.line(body, line, offset, terminated);
        offset += n as u64;
        if w.failed() {
            // Count the rest of the file for the caller's length without keeping it.
            offset += std::io::copy(&mut r, &mut std::io::sink())?;
            return Ok(offset);
        }
    }
}

impl Walker<'_> {
    pub(crate) fn error_unreadable(&mut self, path: &Path, e: std::io::Error) {
        if self.error.is_none() {
            self.error = Some(BadRecord {
                kind: TamperKind::Unreadable,
                file: path.to_path_buf(),
                line: 0,
                offset: 0,
                seq: None,
                message: format!("cannot read: {e}"),
            });
        }
    }
}

impl VerifyReport {
    /// A readable multi-line summary.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let range = match (self.first_seq, self.last_seq) {
            (Some(a), Some(b)) => format!("seq {a}..={b}"),
            _ => "no record".into(),
        };
        s.push_str(&format!(
            "{} files, {} records ({range}), {} bytes, {} checkpoints ({})\n",
            self.files,
            self.records,
            self.bytes,
            self.checkpoints,
            if self.signatures_checked {
                "signatures verified"
            } else {
                "signatures NOT checked: no public key given"
            }
        ));
        if let Some(h) = &self.head_hash {
            s.push_str(&format!("head: {}:{h}\n", self.last_seq.unwrap_or(0)));
        }
        if let Some(a) = self.anchored_start {
            s.push_str(&format!(
                "starts at seq {a}: earlier segments removed by retention\n"
            ));
        }
        for t in &self.torn_tails {
            s.push_str(&format!(
                "torn tail skipped (marked by the server after a crash): {} bytes {}..{}\n",
                t.file.display(),
                t.offset,
                t.offset + t.length
            ));
        }
        if let Some(t) = &self.unmarked_tail {
            s.push_str(&format!(
                "warning: unparsable final bytes not yet marked (crash without restart?): {} \
                 bytes {}..{}\n",
                t.file.display(),
                t.offset,
                t.offset + t.length
            ));
        }
        if self.unsigned_tail > 0 {
            s.push_str(&format!(
                "warning: unsigned tail of {} records after the last checkpoint (checked against \
                 the head only if --head is given)\n",
                self.unsigned_tail
            ));
        }
        match &self.first_error {
            None => s.push_str("OK: the journal is intact\n"),
            Some(e) => s.push_str(&format!(
                "TAMPERING DETECTED ({:?}): first bad record at {e}\n",
                e.kind
            )),
        }
        s
    }
}
