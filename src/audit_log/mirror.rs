//! Mirrors: asynchronous, lossy copies of durable lines to stdout or syslog. A full channel
//! drops the batch (and counts the lines); a mirror can never block or fail an append.

use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::Arc;

use super::MirrorKind;

const CAPACITY: usize = 1024;

pub(crate) struct Mirror {
    tx: SyncSender<Arc<Vec<u8>>>,
    dropped: Arc<AtomicU64>,
}

impl Mirror {
    pub(crate) fn start(kind: MirrorKind, dropped: Arc<AtomicU64>) -> Option<Mirror> {
        if kind == MirrorKind::None {
            return None;
        }
        let (tx, rx) = sync_channel::<Arc<Vec<u8>>>(CAPACITY);
        let spawned = std::thread::Builder::new()
            .name("audit-mirror".into())
            .spawn(move || match kind {
                MirrorKind::Stdout => {
                    for batch in rx {
                        let mut out = std::io::stdout().lock();
                        let _ = out.write_all(&batch).and_then(|()| out.flush());
                    }
                }
                MirrorKind::Syslog => {
                    let sock = UnixDatagram::unbound().ok();
                    for batch in rx {
                        let Some(sock) = &sock else { continue };
                        for line in batch.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                            // <86>: facility authpriv (10), severity info (6).
                            let mut msg = b"<86>arca-audit: ".to_vec();
                            msg.extend_from_slice(line);
                            let _ = sock.send_to(&msg, "/dev/log");
                        }
                    }
                }
                MirrorKind::None => {}
            });
        match spawned {
            Ok(_) => Some(Mirror { tx, dropped }),
            Err(e) => {
                tracing::warn!(error = %e, "audit mirror thread could not start; mirror disabled");
                None
            }
        }
    }

    /// Queues a batch of lines; drops it when the mirror is behind.
    pub(crate) fn send(&self, batch: Arc<Vec<u8>>) {
        let lines = batch.iter().filter(|b| **b == b'\n').count() as u64;
        match self.tx.try_send(batch) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(lines, Ordering::Relaxed);
            }
        }
    }
}
