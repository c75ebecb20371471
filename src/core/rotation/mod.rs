//! Secret rotation: per-secret rotation policies, due dates, the persisted rotation state
//! machine, and rotators (vault-only, PostgreSQL, MySQL/MariaDB, external command).
//! (Filled in by the rotation work.)
