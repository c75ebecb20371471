//! The chain walker: checks records one line at a time, with constant memory. Used by
//! `verify` over all segments and by `Journal::open` over the last one.

use std::borrow::Cow;
use std::path::PathBuf;

use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::keys::{checkpoint_message, key_id};
use super::verify::{BadRecord, TamperKind, TornTail, VerifyReport};
use super::GENESIS_PREV;

/// The fields every record has (others are skipped without being built).
#[derive(Deserialize)]
struct Head<'a> {
    seq: u64,
    #[serde(borrow)]
    prev: Cow<'a, str>,
    #[serde(rename = "type", borrow, default)]
    kind: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct CheckpointRec {
    covers_seq: u64,
    head: String,
    sig: String,
    time: String,
    next_by_seq: u64,
    key_id: String,
}

#[derive(Deserialize)]
struct TornRec {
    segment: String,
    offset: u64,
    length: u64,
}

#[derive(Deserialize)]
struct SegmentStartRec {
    prev_segment: Option<String>,
}

#[derive(Deserialize)]
struct RetentionRec {
    removed_through_seq: u64,
    anchor: String,
}

/// Where a line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pos {
    pub file: usize,
    pub line: u64,
    pub offset: u64,
}

/// The last accepted record.
#[derive(Debug, Clone)]
pub(crate) struct Last {
    pub seq: u64,
    pub hash: [u8; 32],
    pub prev: [u8; 32],
    pub pos: Pos,
    /// Offset just past the record's line (and its `\n`, if any).
    pub end: u64,
    pub terminated: bool,
    pub is_checkpoint: bool,
}

struct Suspect {
    pos: Pos,
    reason: String,
}

pub(crate) struct WalkOptions<'k> {
    pub key: Option<&'k VerifyingKey>,
    pub expected_head: Option<(u64, String)>,
    /// The range may start after seq 1 without a retention record (open checks one segment).
    pub allow_anchored_start: bool,
}

pub(crate) struct Walker<'k> {
    opts: WalkOptions<'k>,
    files: Vec<PathBuf>,
    file_names: Vec<String>,
    pub last: Option<Last>,
    start: Option<(u64, [u8; 32], Pos)>,
    anchor_ok: bool,
    suspect: Option<Suspect>,
    /// (seq by which the next checkpoint is due, seq of the checkpoint that promised it)
    promise: Option<(u64, Option<u64>)>,
    file_needs_start: bool,
    file_records: u64,
    file_name_seq: Option<u64>,
    pub records: u64,
    pub checkpoints: u64,
    pub last_checkpoint_seq: Option<u64>,
    pub bytes: u64,
    pub torn: Vec<TornTail>,
    pub unmarked_tail: Option<TornTail>,
    pub error: Option<BadRecord>,
    head_seen: bool,
}

fn hex32(s: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).ok()?;
    Some(out)
}

impl<'k> Walker<'k> {
    pub(crate) fn new(opts: WalkOptions<'k>) -> Self {
        Walker {
            opts,
            files: Vec::new(),
            file_names: Vec::new(),
            last: None,
            start: None,
            anchor_ok: false,
            suspect: None,
            promise: None,
            file_needs_start: false,
            file_records: 0,
            file_name_seq: None,
            records: 0,
            checkpoints: 0,
            last_checkpoint_seq: None,
            bytes: 0,
            torn: Vec::new(),
            unmarked_tail: None,
            error: None,
            head_seen: false,
        }
    }

    pub(crate) fn failed(&self) -> bool {
        self.error.is_some()
    }

    fn fail(&mut self, kind: TamperKind, pos: Pos, seq: Option<u64>, message: String) {
        if self.error.is_none() {
            self.error = Some(BadRecord {
                kind,
                file: self.files.get(pos.file).cloned().unwrap_or_default(),
                line: pos.line,
                offset: pos.offset,
                seq,
                message,
            });
        }
    }

    fn where_(&self, pos: Pos) -> String {
        format!(
            "{} line {}",
            self.file_names
                .get(pos.file)
                .map(String::as_str)
                .unwrap_or("?"),
            pos.line
        )
    }

    /// Starts a new file. `name_seq` is the first seq its name announces, if it is named
    /// like a segment.
    pub(crate) fn begin_file(&mut self, path: PathBuf, name_seq: Option<u64>) {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string());
        self.files.push(path);
        self.file_names.push(name);
        self.file_needs_start = true;
        self.file_records = 0;
        self.file_name_seq = name_seq;
    }

    fn cur_file(&self) -> usize {
        self.files.len().saturating_sub(1)
    }

    /// One line, without its `\n`; `terminated` is false for final bytes without one.
    pub(crate) fn line(&mut self, bytes: &[u8], line: u64, offset: u64, terminated: bool) {
        if self.error.is_some() {
            return;
        }
        let end = offset + bytes.len() as u64 + u64::from(terminated);
        self.bytes += end - offset;
        let pos = Pos {
            file: self.cur_file(),
            line,
            offset,
        };
        let parsed: Result<Head<'_>, String> = serde_json::from_slice(bytes)
            .map_err(|e| e.to_string())
            .and_then(|h: Head<'_>| {
                if hex32(&h.prev).is_some() {
                    Ok(h)
                } else {
                    Err("`prev` is not 64 hex digits".to_string())
                }
            });
        if let Some(s) = &self.suspect {
            let (spos, sreason) = (s.pos, s.reason.clone());
            // Another unparsable line is part of the same bad range.
            if let Ok(h) = parsed {
                if h.kind.as_deref() == Some("torn_tail") && self.chains(&h) {
                    let rec: Option<TornRec> = serde_json::from_slice(bytes).ok();
                    let cur_name = self.file_names.last().cloned().unwrap_or_default();
                    match rec {
                        Some(t)
                            if t.offset == spos.offset
                                && t.offset + t.length == offset
                                && t.segment == cur_name =>
                        {
                            self.torn.push(TornTail {
                                file: self.files[spos.file].clone(),
                                offset: t.offset,
                                length: t.length,
                                marked: true,
                            });
                            self.suspect = None;
                            self.accept(bytes, &h, pos, end, terminated);
                        }
                        _ => self.fail(
                            TamperKind::Malformed,
                            pos,
                            Some(h.seq),
                            "torn_tail record does not name the bytes before it".into(),
                        ),
                    }
                } else {
                    self.fail(
                        TamperKind::Malformed,
                        spos,
                        None,
                        format!(
                            "not a valid record ({sreason}), and not a torn tail marked by \
                             the server: inserted or damaged"
                        ),
                    );
                }
            }
            return;
        }
        match parsed {
            Err(reason) => {
                self.suspect = Some(Suspect { pos, reason });
            }
            Ok(h) => {
                if self.check(bytes, &h, pos) {
                    self.accept(bytes, &h, pos, end, terminated);
                }
            }
        }
    }

    fn chains(&self, h: &Head<'_>) -> bool {
        match &self.last {
            Some(l) => h.seq == l.seq + 1 && hex32(&h.prev) == Some(l.hash),
            None => false,
        }
    }

    /// Checks the place of a parsed record in the chain; false (and `error` set) if wrong.
    fn check(&mut self, bytes: &[u8], h: &Head<'_>, pos: Pos) -> bool {
        let kind = h.kind.as_deref().unwrap_or("");
        let first_in_file = self.file_needs_start;
        if first_in_file {
            self.file_needs_start = false;
            if kind != "segment_start" {
                self.fail(
                    TamperKind::SegmentMismatch,
                    pos,
                    Some(h.seq),
                    "the file does not start with a segment_start record (not a whole segment, \
                     or its beginning was removed)"
                        .into(),
                );
                return false;
            }
            if let Some(ns) = self.file_name_seq {
                if ns != h.seq {
                    self.fail(
                        TamperKind::SegmentMismatch,
                        pos,
                        Some(h.seq),
                        format!(
                            "the file name announces seq {ns} but the segment starts at seq {}: \
                             renamed or swapped",
                            h.seq
                        ),
                    );
                    return false;
                }
            }
        }
        let prev = hex32(&h.prev).unwrap_or_default();
        let Some(last) = self.last.clone() else {
            return true;
        };
        let expected = last.seq + 1;
        if h.seq == expected {
            if prev != last.hash {
                if first_in_file {
                    self.fail(
                        TamperKind::SegmentMismatch,
                        pos,
                        Some(h.seq),
                        format!(
                            "this segment does not continue the previous one (its prev is not \
                             the hash of seq {} at {}): segment replaced, or that record changed",
                            last.seq,
                            self.where_(last.pos)
                        ),
                    );
                } else {
                    self.fail(
                        TamperKind::Modified,
                        last.pos,
                        Some(last.seq),
                        format!(
                            "record seq {} was modified: its hash does not match the prev held \
                             by the next record ({}, seq {})",
                            last.seq,
                            self.where_(pos),
                            h.seq
                        ),
                    );
                }
                return false;
            }
            if first_in_file && last.pos.file != pos.file {
                if let Ok(ss) = serde_json::from_slice::<SegmentStartRec>(bytes) {
                    let want = self.file_names.get(last.pos.file).cloned();
                    if ss.prev_segment != want {
                        self.fail(
                            TamperKind::SegmentMismatch,
                            pos,
                            Some(h.seq),
                            format!(
                                "segment_start names the previous segment {:?}, but the one \
                                 before it is {:?}",
                                ss.prev_segment, want
                            ),
                        );
                        return false;
                    }
                }
            }
            return true;
        }
        if h.seq > expected {
            let (kind, msg) = if first_in_file {
                (
                    TamperKind::SegmentMismatch,
                    format!(
                        "segment missing: the previous segment ends at seq {}, this one starts \
                         at seq {}",
                        last.seq, h.seq
                    ),
                )
            } else {
                (
                    TamperKind::OutOfSequence,
                    format!(
                        "expected seq {expected}, found seq {}: records deleted, or reordered",
                        h.seq
                    ),
                )
            };
            self.fail(kind, pos, Some(h.seq), msg);
            return false;
        }
        let hash: [u8; 32] = Sha256::digest(bytes).into();
        if hash == last.hash {
            self.fail(
                TamperKind::Duplicate,
                pos,
                Some(h.seq),
                format!(
                    "duplicate of the record at {} (seq {})",
                    self.where_(last.pos),
                    h.seq
                ),
            );
        } else if h.seq == last.seq && prev == last.prev {
            self.fail(
                TamperKind::Inserted,
                last.pos,
                Some(last.seq),
                format!(
                    "two different records claim seq {} after the same record ({} and {}): one \
                     of them was inserted",
                    h.seq,
                    self.where_(last.pos),
                    self.where_(pos)
                ),
            );
        } else {
            self.fail(
                TamperKind::OutOfSequence,
                pos,
                Some(h.seq),
                format!(
                    "seq {} after seq {}: records duplicated, reordered or inserted",
                    h.seq, last.seq
                ),
            );
        }
        false
    }

    fn accept(&mut self, bytes: &[u8], h: &Head<'_>, pos: Pos, end: u64, terminated: bool) {
        let hash: [u8; 32] = Sha256::digest(bytes).into();
        let prev = hex32(&h.prev).unwrap_or_default();
        let kind = h.kind.as_deref().unwrap_or("");
        if self.start.is_none() {
            self.start = Some((h.seq, prev, pos));
            self.anchor_ok = h.seq == 1 && h.prev == GENESIS_PREV;
            // The writer follows every segment_start with a checkpoint.
            self.promise = Some((h.seq + 1, None));
        }
        if kind == "key_pending" {
            // The writer had no signing key yet (vault sealed): no checkpoint is promised
            // until one arrives; the next checkpoint signs the head over this stretch.
            self.promise = None;
        }
        if let Some((by, cp)) = self.promise {
            if h.seq > by && kind != "checkpoint" {
                let msg = match cp {
                    Some(c) => format!(
                        "checkpoint missing: the checkpoint at seq {c} promised the next one by \
                         seq {by}: checkpoints removed, or the chain rewritten"
                    ),
                    None => format!(
                        "checkpoint missing: the journal must have a checkpoint right after its \
                         start (seq {by})"
                    ),
                };
                self.fail(TamperKind::CheckpointMissing, pos, Some(h.seq), msg);
                return;
            }
        }
        if let Some((hs, hh)) = &self.opts.expected_head {
            if *hs == h.seq {
                self.head_seen = true;
                if !hex::encode(hash).eq_ignore_ascii_case(hh) {
                    self.fail(
                        TamperKind::HeadMismatch,
                        pos,
                        Some(h.seq),
                        format!(
                            "record seq {} does not match the head hash kept by the server: it \
                             was modified (or the chain rewritten)",
                            h.seq
                        ),
                    );
                    return;
                }
            }
        }
        match kind {
            "checkpoint" if !self.check_checkpoint(bytes, h, pos) => return,
            "torn_tail" if self.torn.last().map(|t| t.offset + t.length) != Some(pos.offset) => {
                self.fail(
                    TamperKind::Malformed,
                    pos,
                    Some(h.seq),
                    "torn_tail record without the skipped bytes before it".into(),
                );
                return;
            }
            "retention" => {
                if let (Ok(r), Some((s, p, _))) =
                    (serde_json::from_slice::<RetentionRec>(bytes), &self.start)
                {
                    if r.removed_through_seq + 1 == *s && hex32(&r.anchor) == Some(*p) {
                        self.anchor_ok = true;
                    }
                }
            }
            _ => {}
        }
        self.records += 1;
        self.file_records += 1;
        self.last = Some(Last {
            seq: h.seq,
            hash,
            prev,
            pos,
            end,
            terminated,
            is_checkpoint: kind == "checkpoint",
        });
    }

    fn check_checkpoint(&mut self, bytes: &[u8], h: &Head<'_>, pos: Pos) -> bool {
        let cp: CheckpointRec = match serde_json::from_slice(bytes) {
            Ok(c) => c,
            Err(e) => {
                self.fail(
                    TamperKind::CheckpointInvalid,
                    pos,
                    Some(h.seq),
                    format!("malformed checkpoint: {e}"),
                );
                return false;
            }
        };
        if cp.covers_seq + 1 != h.seq || !cp.head.eq_ignore_ascii_case(&h.prev) {
            self.fail(
                TamperKind::CheckpointInvalid,
                pos,
                Some(h.seq),
                format!(
                    "checkpoint does not match the chain (covers seq {}, head {}...): the records \
                     before it were changed and the chain recomputed",
                    cp.covers_seq,
                    cp.head.get(..12).unwrap_or(&cp.head)
                ),
            );
            return false;
        }
        if let Some(key) = self.opts.key {
            let since = self
                .last_checkpoint_seq
                .map(|s| format!("since the checkpoint at seq {s}"))
                .unwrap_or_else(|| "before it".into());
            let sig_ok = cp.key_id == key_id(key)
                && base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &cp.sig)
                    .ok()
                    .and_then(|b| Signature::from_slice(&b).ok())
                    .map(|sig| {
                        let msg = checkpoint_message(
                            h.seq,
                            cp.covers_seq,
                            &h.prev,
                            &cp.time,
                            cp.next_by_seq,
                            &cp.key_id,
                        );
                        key.verify(&msg, &sig).is_ok()
                    })
                    .unwrap_or(false);
            if !sig_ok {
                let why = if cp.key_id != key_id(key) {
                    format!("signed by another key (key_id {})", cp.key_id)
                } else {
                    "signature does not verify".to_string()
                };
                self.fail(
                    TamperKind::SignatureInvalid,
                    pos,
                    Some(h.seq),
                    format!(
                        "checkpoint {why}: the records {since} were altered or the chain \
                         recomputed without the signing key"
                    ),
                );
                return false;
            }
        }
        self.checkpoints += 1;
        self.last_checkpoint_seq = Some(h.seq);
        self.promise = Some((cp.next_by_seq, Some(h.seq)));
        true
    }

    /// Ends the current file.
    pub(crate) fn end_file(&mut self, is_last: bool, file_len: u64) {
        if self.error.is_some() {
            return;
        }
        if let Some(s) = self.suspect.take() {
            if is_last {
                self.unmarked_tail = Some(TornTail {
                    file: self.files[s.pos.file].clone(),
                    offset: s.pos.offset,
                    length: file_len.saturating_sub(s.pos.offset),
                    marked: false,
                });
            } else {
                self.fail(
                    TamperKind::Malformed,
                    s.pos,
                    None,
                    format!(
                        "not a valid record ({}), and not marked as a torn tail",
                        s.reason
                    ),
                );
                return;
            }
        }
        if self.file_records == 0 && !is_last {
            let pos = Pos {
                file: self.cur_file(),
                line: 1,
                offset: 0,
            };
            self.fail(
                TamperKind::SegmentMismatch,
                pos,
                None,
                "segment holds no record".into(),
            );
        }
    }

    /// The final report.
    pub(crate) fn finish(mut self, signatures_checked: bool) -> VerifyReport {
        if self.error.is_none() {
            if let Some((s, _, pos)) = self.start {
                if !self.anchor_ok && !self.opts.allow_anchored_start {
                    self.fail(
                        TamperKind::SegmentMismatch,
                        pos,
                        Some(s),
                        format!(
                            "the journal starts at seq {s} and no retention record accounts for \
                             the records before it: a segment was removed (or not all segments \
                             were given)"
                        ),
                    );
                }
            }
        }
        if self.error.is_none() {
            if let Some((hs, _)) = self.opts.expected_head.clone() {
                let last_seq = self.last.as_ref().map(|l| l.seq).unwrap_or(0);
                if last_seq < hs {
                    let pos = self.last.as_ref().map(|l| l.pos).unwrap_or(Pos {
                        file: 0,
                        line: 0,
                        offset: 0,
                    });
                    self.fail(
                        TamperKind::Truncated,
                        pos,
                        Some(last_seq),
                        format!(
                            "truncated: the journal ends at seq {last_seq} but the head kept by \
                             the server is seq {hs}"
                        ),
                    );
                }
            }
        }
        let last_seq = self.last.as_ref().map(|l| l.seq);
        let unsigned_tail = match (last_seq, self.last_checkpoint_seq) {
            (Some(l), Some(c)) => l - c,
            (Some(_), None) => self.records,
            _ => 0,
        };
        VerifyReport {
            ok: self.error.is_none(),
            files: self.files.len() as u64,
            records: self.records,
            checkpoints: self.checkpoints,
            signatures_checked,
            first_seq: self.start.map(|s| s.0),
            last_seq,
            head_hash: self.last.as_ref().map(|l| hex::encode(l.hash)),
            anchored_start: self
                .start
                .and_then(|(s, _, _)| if s > 1 { Some(s) } else { None }),
            unsigned_tail,
            torn_tails: self.torn,
            unmarked_tail: self.unmarked_tail,
            bytes: self.bytes,
            first_error: self.error,
        }
    }
}
