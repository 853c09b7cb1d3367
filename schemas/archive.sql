-- The archive's schema: the one source of truth.
--
-- It is applied by numbered migrations: each block starts with a line `-- migration NNNN: title` and is
-- applied once, in order, inside one transaction; PRAGMA user_version holds the last applied number and
-- every application is also appended to `schema_migrations`. Never edit a block that has shipped: add a new
-- one.
--
-- Every archive table is append-only: the triggers named <table>_append_only_update / _delete refuse UPDATE
-- and DELETE. Times are ISO 8601 UTC strings ("2026-11-23T05:21:50.123456Z").

-- migration 0001: core archive tables
CREATE TABLE schema_migrations (
    version INTEGER PRIMARY KEY,
    title TEXT NOT NULL,
    applied_at TEXT NOT NULL,
    software_version TEXT NOT NULL
);

-- One row when a run starts; its outcome is appended to run_results (rows are never completed in place).
CREATE TABLE runs (
    id TEXT PRIMARY KEY,                 -- e.g. 20261123T052150Z-3f9a1c
    started_at TEXT NOT NULL,
    host TEXT NOT NULL,
    software_version TEXT NOT NULL,
    config_sha256 TEXT NOT NULL,         -- digest of the config file as read (it holds no secrets)
    accounts_selected TEXT NOT NULL      -- JSON list of account names
);

CREATE TABLE run_results (
    run_id TEXT PRIMARY KEY REFERENCES runs(id),
    finished_at TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('ok', 'failed')),
    summary TEXT NOT NULL                -- JSON: per-account counts and errors
);

-- The outcome of one account in one run.
CREATE TABLE account_runs (
    id INTEGER PRIMARY KEY,
    run_id TEXT NOT NULL REFERENCES runs(id),
    account TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('ok', 'failed')),
    requests INTEGER NOT NULL,
    new_items INTEGER NOT NULL,
    new_versions INTEGER NOT NULL,
    deletions INTEGER NOT NULL,
    restorations INTEGER NOT NULL,
    media INTEGER NOT NULL,
    error TEXT,                          -- one line, secrets removed
    finished_at TEXT NOT NULL
);
CREATE INDEX account_runs_account ON account_runs(account, id);

-- A configured account as it was when first seen (and again whenever its identity changes).
CREATE TABLE accounts (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    platform TEXT NOT NULL,
    api_base TEXT NOT NULL,
    platform_account_id TEXT NOT NULL,   -- the id the platform gave; resolved from a handle when needed
    handle TEXT,
    display_name TEXT,
    first_seen_run TEXT NOT NULL REFERENCES runs(id),
    recorded_at TEXT NOT NULL,
    UNIQUE (name, platform, api_base, platform_account_id)
);

-- Closed WARC files with their digest (a file is appended here when it is closed).
CREATE TABLE warc_files (
    name TEXT PRIMARY KEY,               -- file name inside the archive's WARC directory
    run_id TEXT NOT NULL REFERENCES runs(id),
    sha256 TEXT NOT NULL,                -- hex digest of the whole file
    size INTEGER NOT NULL,
    records INTEGER NOT NULL,
    closed_at TEXT NOT NULL
);

-- One row per observed version of an item (post, comment, message). A row is appended only when the
-- content digest differs from the item's latest version.
CREATE TABLE item_versions (
    id INTEGER PRIMARY KEY,
    item_key TEXT NOT NULL,              -- platform:host:native_id, stable across runs
    platform TEXT NOT NULL,
    account TEXT NOT NULL,               -- configured account name that captured it
    kind TEXT NOT NULL CHECK (kind IN ('post', 'comment', 'message')),
    native_id TEXT NOT NULL,
    parent_key TEXT,                     -- the item this one replies to
    thread_key TEXT,                     -- the root post of its thread
    conversation_key TEXT,               -- direct-message conversation
    author_id TEXT,
    author_handle TEXT,
    author_name TEXT,
    created_at TEXT,                     -- when the platform says it was posted
    edited_at TEXT,                      -- when this version was made (null for the original)
    text TEXT,                           -- plain text (markup removed); the raw JSON keeps the original
    url TEXT,
    visibility TEXT,
    media TEXT NOT NULL,                 -- JSON list of attachments (id, type, url, description, sha256)
    raw_json TEXT NOT NULL,              -- the object exactly as found in the captured response
    content_sha256 TEXT NOT NULL,        -- digest of the canonical content (see archiver/items.py)
    run_id TEXT NOT NULL REFERENCES runs(id),
    captured_at TEXT NOT NULL,
    warc_file TEXT NOT NULL,
    warc_offset INTEGER NOT NULL,
    warc_length INTEGER NOT NULL,
    warc_record_id TEXT NOT NULL         -- WARC-Record-ID of the response record holding raw_json
);
CREATE INDEX item_versions_item ON item_versions(item_key, id);
CREATE INDEX item_versions_account_kind ON item_versions(account, kind);
CREATE INDEX item_versions_thread ON item_versions(thread_key);
CREATE INDEX item_versions_conversation ON item_versions(conversation_key);
CREATE INDEX item_versions_author ON item_versions(author_handle);
CREATE INDEX item_versions_created ON item_versions(created_at);
CREATE INDEX item_versions_run ON item_versions(run_id);

-- What happened to an item, with the evidence (JSON naming the captured records that prove it).
CREATE TABLE events (
    id INTEGER PRIMARY KEY,
    item_key TEXT NOT NULL,
    event TEXT NOT NULL CHECK (event IN ('created', 'edited', 'deleted', 'restored')),
    version_id INTEGER REFERENCES item_versions(id),
    run_id TEXT NOT NULL REFERENCES runs(id),
    observed_at TEXT NOT NULL,
    evidence TEXT NOT NULL
);
CREATE INDEX events_item ON events(item_key, id);
CREATE INDEX events_event ON events(event);

-- Media files fetched into the WARC (one row per distinct URL).
CREATE TABLE media_files (
    url TEXT PRIMARY KEY,
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    content_type TEXT,
    run_id TEXT NOT NULL REFERENCES runs(id),
    captured_at TEXT NOT NULL,
    warc_file TEXT NOT NULL,
    warc_offset INTEGER NOT NULL,
    warc_length INTEGER NOT NULL,
    warc_record_id TEXT NOT NULL
);
CREATE INDEX media_files_sha256 ON media_files(sha256);

-- Incremental position of each account (newest id seen and the like); the latest row per name wins.
CREATE TABLE cursors (
    id INTEGER PRIMARY KEY,
    account TEXT NOT NULL,
    name TEXT NOT NULL,
    value TEXT NOT NULL,
    run_id TEXT NOT NULL REFERENCES runs(id),
    recorded_at TEXT NOT NULL
);
CREATE INDEX cursors_account ON cursors(account, name, id);

-- Full-text index over every version's text and author; derived from item_versions, kept by a trigger.
CREATE VIRTUAL TABLE item_versions_fts USING fts5(
    text, author_handle, author_name,
    content='item_versions', content_rowid='id', tokenize='porter unicode61'
);
CREATE TRIGGER item_versions_fts_insert AFTER INSERT ON item_versions BEGIN
    INSERT INTO item_versions_fts (rowid, text, author_handle, author_name)
    VALUES (new.id, new.text, new.author_handle, new.author_name);
END;

-- The latest version of every item, with its status.
CREATE VIEW items AS
SELECT
    v.item_key,
    v.platform,
    v.account,
    v.kind,
    v.created_at,
    v.author_handle,
    v.text,
    CASE
        WHEN (SELECT e.event FROM events e
              WHERE e.item_key = v.item_key AND e.event IN ('deleted', 'restored')
              ORDER BY e.id DESC LIMIT 1) = 'deleted' THEN 'deleted'
        WHEN (SELECT count(*) FROM item_versions c WHERE c.item_key = v.item_key) > 1 THEN 'edited'
        ELSE 'live'
    END AS status,
    (SELECT count(*) FROM item_versions c WHERE c.item_key = v.item_key) AS versions,
    v.author_name,
    v.parent_key,
    v.thread_key,
    v.conversation_key,
    v.url,
    v.visibility,
    v.edited_at,
    v.captured_at,
    v.id AS version_id
FROM item_versions v
WHERE v.id = (SELECT max(l.id) FROM item_versions l WHERE l.item_key = v.item_key);

CREATE TRIGGER schema_migrations_append_only_update BEFORE UPDATE ON schema_migrations
BEGIN SELECT RAISE(ABORT, 'schema_migrations is append-only: UPDATE refused'); END;
CREATE TRIGGER schema_migrations_append_only_delete BEFORE DELETE ON schema_migrations
BEGIN SELECT RAISE(ABORT, 'schema_migrations is append-only: DELETE refused'); END;
CREATE TRIGGER runs_append_only_update BEFORE UPDATE ON runs
BEGIN SELECT RAISE(ABORT, 'runs is append-only: UPDATE refused'); END;
CREATE TRIGGER runs_append_only_delete BEFORE DELETE ON runs
BEGIN SELECT RAISE(ABORT, 'runs is append-only: DELETE refused'); END;
CREATE TRIGGER run_results_append_only_update BEFORE UPDATE ON run_results
BEGIN SELECT RAISE(ABORT, 'run_results is append-only: UPDATE refused'); END;
CREATE TRIGGER run_results_append_only_delete BEFORE DELETE ON run_results
BEGIN SELECT RAISE(ABORT, 'run_results is append-only: DELETE refused'); END;
CREATE TRIGGER account_runs_append_only_update BEFORE UPDATE ON account_runs
BEGIN SELECT RAISE(ABORT, 'account_runs is append-only: UPDATE refused'); END;
CREATE TRIGGER account_runs_append_only_delete BEFORE DELETE ON account_runs
BEGIN SELECT RAISE(ABORT, 'account_runs is append-only: DELETE refused'); END;
CREATE TRIGGER accounts_append_only_update BEFORE UPDATE ON accounts
BEGIN SELECT RAISE(ABORT, 'accounts is append-only: UPDATE refused'); END;
CREATE TRIGGER accounts_append_only_delete BEFORE DELETE ON accounts
BEGIN SELECT RAISE(ABORT, 'accounts is append-only: DELETE refused'); END;
CREATE TRIGGER warc_files_append_only_update BEFORE UPDATE ON warc_files
BEGIN SELECT RAISE(ABORT, 'warc_files is append-only: UPDATE refused'); END;
CREATE TRIGGER warc_files_append_only_delete BEFORE DELETE ON warc_files
BEGIN SELECT RAISE(ABORT, 'warc_files is append-only: DELETE refused'); END;
CREATE TRIGGER item_versions_append_only_update BEFORE UPDATE ON item_versions
BEGIN SELECT RAISE(ABORT, 'item_versions is append-only: UPDATE refused'); END;
CREATE TRIGGER item_versions_append_only_delete BEFORE DELETE ON item_versions
BEGIN SELECT RAISE(ABORT, 'item_versions is append-only: DELETE refused'); END;
CREATE TRIGGER events_append_only_update BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'events is append-only: UPDATE refused'); END;
CREATE TRIGGER events_append_only_delete BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'events is append-only: DELETE refused'); END;
CREATE TRIGGER media_files_append_only_update BEFORE UPDATE ON media_files
BEGIN SELECT RAISE(ABORT, 'media_files is append-only: UPDATE refused'); END;
CREATE TRIGGER media_files_append_only_delete BEFORE DELETE ON media_files
BEGIN SELECT RAISE(ABORT, 'media_files is append-only: DELETE refused'); END;
CREATE TRIGGER cursors_append_only_update BEFORE UPDATE ON cursors
BEGIN SELECT RAISE(ABORT, 'cursors is append-only: UPDATE refused'); END;
CREATE TRIGGER cursors_append_only_delete BEFORE DELETE ON cursors
BEGIN SELECT RAISE(ABORT, 'cursors is append-only: DELETE refused'); END;

-- migration 0002: hash-chained ledger over every appended row
-- Every row appended to an archive table (this one aside) appends one ledger entry in the same transaction:
--   row_sha256 = sha256(canonical bytes of the row)
--   hash       = sha256(bytes of prev_hash (32 raw bytes) || canonical bytes of the row), hex
-- The first entry's prev_hash is 64 zeros. Canonical bytes are defined in schemas/ledger.md and never change.
-- Rows that existed before this migration are entered in table order, then key order, when it is applied.
CREATE TABLE ledger (
    seq INTEGER PRIMARY KEY,             -- 1, 2, 3 ... without gaps
    table_name TEXT NOT NULL,
    row_key TEXT NOT NULL,               -- the row's primary key value, as text
    row_sha256 TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL,
    UNIQUE (table_name, row_key)
);
CREATE TRIGGER ledger_append_only_update BEFORE UPDATE ON ledger
BEGIN SELECT RAISE(ABORT, 'ledger is append-only: UPDATE refused'); END;
CREATE TRIGGER ledger_append_only_delete BEFORE DELETE ON ledger
BEGIN SELECT RAISE(ABORT, 'ledger is append-only: DELETE refused'); END;

-- migration 0003: signed checkpoints of the ledger head and the closed WARC files
-- `statement` is the exact byte string signed (canonical JSON, see schemas/ledger.md); the same statement,
-- signature and public key are also written as a JSON file in <warc_dir>/checkpoints/ to be copied elsewhere.
CREATE TABLE checkpoints (
    id INTEGER PRIMARY KEY,
    created_at TEXT NOT NULL,
    run_id TEXT REFERENCES runs(id),     -- null for a checkpoint made on demand
    ledger_seq INTEGER NOT NULL,
    ledger_hash TEXT NOT NULL,
    statement TEXT NOT NULL,
    public_key TEXT NOT NULL,            -- base64 of the raw 32-byte Ed25519 public key
    signature TEXT NOT NULL,             -- base64 of the Ed25519 signature of `statement`
    file_name TEXT NOT NULL              -- the JSON copy in <warc_dir>/checkpoints/
);
CREATE TRIGGER checkpoints_append_only_update BEFORE UPDATE ON checkpoints
BEGIN SELECT RAISE(ABORT, 'checkpoints is append-only: UPDATE refused'); END;
CREATE TRIGGER checkpoints_append_only_delete BEFORE DELETE ON checkpoints
BEGIN SELECT RAISE(ABORT, 'checkpoints is append-only: DELETE refused'); END;

-- migration 0004: rows by the WARC record they point at (verify reads each WARC once, in order)
CREATE INDEX item_versions_warc ON item_versions(warc_file, warc_offset);
CREATE INDEX media_files_warc ON media_files(warc_file, warc_offset);

-- migration 0005: PHI / policy flags, their reviews, and the scans that made them
-- A scan reads item versions from_version_id..to_version_id with one rules version and appends a flag per
-- hit; `archiver scan --all` appends only hits not already flagged under the same rules version, so a rule
-- change gives new flags and an unchanged one none. Spans are character offsets into item_versions.text.
CREATE TABLE scan_runs (
    id INTEGER PRIMARY KEY,
    run_id TEXT REFERENCES runs(id),     -- the archive run it ended; null for `archiver scan`
    rules_version TEXT NOT NULL,         -- rule files' version labels + digest of their bytes
    mode TEXT NOT NULL CHECK (mode IN ('new', 'all')),
    from_version_id INTEGER NOT NULL,
    to_version_id INTEGER NOT NULL,      -- from > to when there was nothing to scan
    versions_scanned INTEGER NOT NULL,
    flags_added INTEGER NOT NULL,
    started_at TEXT NOT NULL,
    finished_at TEXT NOT NULL
);
CREATE TABLE flags (
    id INTEGER PRIMARY KEY,
    version_id INTEGER NOT NULL REFERENCES item_versions(id),
    item_key TEXT NOT NULL,
    rule_id TEXT NOT NULL,
    rules_version TEXT NOT NULL,
    category TEXT NOT NULL,              -- phone, email, ssn, mrn, dob, ..., health-self, health-relative, ...
    severity TEXT NOT NULL CHECK (severity IN ('low', 'medium', 'high')),
    span_start INTEGER,
    span_end INTEGER,
    matched TEXT,                        -- the text of the span (PHI: shown only inside the archive)
    reason TEXT NOT NULL,                -- why, in words; never quotes the matched text
    run_id TEXT REFERENCES runs(id),
    scan_id INTEGER NOT NULL,            -- the scan_runs row appended when that scan finished
    created_at TEXT NOT NULL
);
CREATE INDEX flags_version ON flags(version_id, rule_id, rules_version);
CREATE INDEX flags_item ON flags(item_key);
CREATE TABLE flag_reviews (
    id INTEGER PRIMARY KEY,
    flag_id INTEGER NOT NULL REFERENCES flags(id),
    decision TEXT NOT NULL CHECK (decision IN ('violation', 'false-positive', 'escalated')),
    reviewer TEXT NOT NULL,
    note TEXT,
    created_at TEXT NOT NULL
);
CREATE INDEX flag_reviews_flag ON flag_reviews(flag_id, id);

-- Each flag with its latest review over the same hit (same version, rule and span, under any rules
-- version: a decision carries over to a rescan's copy of the hit), and whether the latest scan of its
-- version still finds it (current = 1).
CREATE VIEW flag_status AS
SELECT
    f.id AS flag_id,
    f.severity,
    f.category,
    f.rule_id,
    f.reason,
    f.matched,
    f.item_key,
    f.version_id,
    f.rules_version,
    f.created_at AS flagged_at,
    (SELECT r.decision FROM flag_reviews r JOIN flags g ON g.id = r.flag_id
     WHERE g.version_id = f.version_id AND g.rule_id = f.rule_id
       AND g.span_start IS f.span_start AND g.span_end IS f.span_end
     ORDER BY r.id DESC LIMIT 1) AS decision,
    (SELECT r.id FROM flag_reviews r JOIN flags g ON g.id = r.flag_id
     WHERE g.version_id = f.version_id AND g.rule_id = f.rule_id
       AND g.span_start IS f.span_start AND g.span_end IS f.span_end
     ORDER BY r.id DESC LIMIT 1) AS review_id,
    f.rules_version = (SELECT s.rules_version FROM scan_runs s
                       WHERE f.version_id BETWEEN s.from_version_id AND s.to_version_id
                       ORDER BY s.id DESC LIMIT 1) AS current
FROM flags f;

-- The review queue: current flags nobody has decided yet (escalated ones stay, marked), worst first.
CREATE VIEW flag_queue AS
SELECT
    s.flag_id,
    s.severity,
    s.category,
    s.reason,
    s.matched,
    coalesce(s.decision, 'open') AS status,
    v.platform,
    v.account,
    v.kind,
    v.author_handle,
    v.created_at,
    v.text,
    v.url,
    s.item_key,
    s.version_id,
    s.rule_id,
    s.rules_version,
    s.flagged_at
FROM flag_status s JOIN item_versions v ON v.id = s.version_id
WHERE s.current = 1 AND (s.decision IS NULL OR s.decision = 'escalated')
ORDER BY CASE s.severity WHEN 'high' THEN 0 WHEN 'medium' THEN 1 ELSE 2 END, s.flag_id DESC;

-- Every review with the flag and item it judged, newest first.
CREATE VIEW reviewed_flags AS
SELECT
    r.id AS review_id,
    r.decision,
    r.reviewer,
    r.note,
    r.created_at AS reviewed_at,
    f.id AS flag_id,
    f.severity,
    f.category,
    f.rule_id,
    f.reason,
    f.matched,
    f.item_key,
    f.version_id,
    v.platform,
    v.account,
    v.kind,
    v.author_handle,
    v.text
FROM flag_reviews r
JOIN flags f ON f.id = r.flag_id
JOIN item_versions v ON v.id = f.version_id
ORDER BY r.id DESC;

CREATE TRIGGER scan_runs_append_only_update BEFORE UPDATE ON scan_runs
BEGIN SELECT RAISE(ABORT, 'scan_runs is append-only: UPDATE refused'); END;
CREATE TRIGGER scan_runs_append_only_delete BEFORE DELETE ON scan_runs
BEGIN SELECT RAISE(ABORT, 'scan_runs is append-only: DELETE refused'); END;
CREATE TRIGGER flags_append_only_update BEFORE UPDATE ON flags
BEGIN SELECT RAISE(ABORT, 'flags is append-only: UPDATE refused'); END;
CREATE TRIGGER flags_append_only_delete BEFORE DELETE ON flags
BEGIN SELECT RAISE(ABORT, 'flags is append-only: DELETE refused'); END;
CREATE TRIGGER flag_reviews_append_only_update BEFORE UPDATE ON flag_reviews
BEGIN SELECT RAISE(ABORT, 'flag_reviews is append-only: UPDATE refused'); END;
CREATE TRIGGER flag_reviews_append_only_delete BEFORE DELETE ON flag_reviews
BEGIN SELECT RAISE(ABORT, 'flag_reviews is append-only: DELETE refused'); END;

-- migration 0006: consent register (patients' written consents and the posts they cover)
-- The signed forms stay in the organisation's records system; the archive holds each consent's facts and
-- the form's SHA-256. A consent's current state is its latest row (highest id) in consent_register: a
-- revocation, a new expiry or a renewal arrives as a new row, never an UPDATE. Dates are YYYY-MM-DD: a
-- consent covers granted_on through expires_on inclusive, and nothing from revoked_on on.
CREATE TABLE consent_imports (
    id INTEGER PRIMARY KEY,
    file_name TEXT NOT NULL,             -- the CSV file as named on the command line
    file_sha256 TEXT NOT NULL,
    rows_read INTEGER NOT NULL,
    rows_appended INTEGER NOT NULL,      -- register rows this import appended (unchanged consents are skipped)
    links_appended INTEGER NOT NULL,
    imported_at TEXT NOT NULL
);

CREATE TABLE consent_register (
    id INTEGER PRIMARY KEY,
    consent_id TEXT NOT NULL,            -- the organisation's id of the consent (its form)
    patient_ref TEXT NOT NULL,           -- an opaque patient reference from the records system, never a name
    platform TEXT,                       -- what it covers: a platform, a configured account, or both
    account TEXT,
    scope TEXT NOT NULL,                 -- free text from the form (e.g. "story and photo, 2026 campaign")
    granted_on TEXT NOT NULL,
    expires_on TEXT,                     -- last day covered; null = no expiry
    revoked_on TEXT,                     -- first day no longer covered; null = not revoked
    document_sha256 TEXT NOT NULL,       -- SHA-256 of the signed form kept in the records system
    import_id INTEGER NOT NULL REFERENCES consent_imports(id),
    source_row INTEGER NOT NULL,         -- row of the CSV file (the header is row 1)
    recorded_at TEXT NOT NULL,
    CHECK (platform IS NOT NULL OR account IS NOT NULL),
    CHECK (expires_on IS NULL OR expires_on >= granted_on),
    CHECK (revoked_on IS NULL OR revoked_on >= granted_on)
);
CREATE INDEX consent_register_consent ON consent_register(consent_id, id);

-- Which archived item (a post, or a media file of it) a consent covers once it is posted.
CREATE TABLE consent_links (
    id INTEGER PRIMARY KEY,
    consent_id TEXT NOT NULL,
    item_key TEXT NOT NULL,
    media_url TEXT,                      -- the attachment it covers, when the consent is for one photo
    import_id INTEGER REFERENCES consent_imports(id),  -- null when made with `archiver consent link`
    linked_by TEXT NOT NULL,             -- the operating-system user who linked it, or the import
    linked_at TEXT NOT NULL
);
CREATE INDEX consent_links_consent ON consent_links(consent_id);
CREATE INDEX consent_links_item ON consent_links(item_key);

-- The current state of every consent (its latest row), its status today and how many items it covers.
CREATE VIEW consents AS
SELECT
    r.consent_id,
    r.patient_ref,
    r.platform,
    r.account,
    r.scope,
    r.granted_on,
    r.expires_on,
    r.revoked_on,
    CASE
        WHEN r.revoked_on IS NOT NULL AND r.revoked_on <= date('now') THEN 'revoked'
        WHEN r.expires_on IS NOT NULL AND r.expires_on < date('now') THEN 'expired'
        WHEN r.granted_on > date('now') THEN 'pending'
        ELSE 'live'
    END AS status,
    (SELECT count(DISTINCT l.item_key) FROM consent_links l WHERE l.consent_id = r.consent_id) AS linked_items,
    r.document_sha256,
    (SELECT count(*) FROM consent_register c WHERE c.consent_id = r.consent_id) AS register_rows,
    r.recorded_at,
    r.id AS register_id
FROM consent_register r
WHERE r.id = (SELECT max(l.id) FROM consent_register l WHERE l.consent_id = r.consent_id);

-- Each consent check (after every run, and each `archiver consent check`): the day it judged, the rules
-- version of the patient-content signals, and the flags it appended. A consent flag's flags.scan_id is the
-- id of its consent_checks row (a PHI flag's is a scan_runs id; the category tells which).
CREATE TABLE consent_checks (
    id INTEGER PRIMARY KEY,
    run_id TEXT REFERENCES runs(id),     -- the archive run it ended; null for `archiver consent check`
    rules_version TEXT NOT NULL,
    checked_on TEXT NOT NULL,            -- the day consents were judged on (YYYY-MM-DD, UTC)
    posts_checked INTEGER NOT NULL,      -- own posts still published
    patient_posts INTEGER NOT NULL,      -- of which look like patient content
    flags_added INTEGER NOT NULL,
    started_at TEXT NOT NULL,
    finished_at TEXT NOT NULL
);

-- Every link with its consent's state today and the item's latest version and status.
CREATE VIEW consent_items AS
SELECT
    l.consent_id,
    c.status AS consent_status,
    c.patient_ref,
    c.granted_on,
    c.expires_on,
    c.revoked_on,
    l.item_key,
    CASE
        WHEN v.id IS NULL THEN 'not archived'
        WHEN coalesce((SELECT e.event FROM events e WHERE e.item_key = l.item_key
                       AND e.event IN ('deleted', 'restored') ORDER BY e.id DESC LIMIT 1), '') = 'deleted'
            THEN 'deleted'
        ELSE 'published'
    END AS item_status,
    v.platform,
    v.account,
    v.created_at AS published_at,
    v.url,
    v.text,
    l.media_url,
    l.linked_at,
    l.linked_by,
    l.id AS link_id
FROM consent_links l
JOIN consents c ON c.consent_id = l.consent_id
LEFT JOIN item_versions v ON v.id = (SELECT max(x.id) FROM item_versions x WHERE x.item_key = l.item_key);

-- Consents that expired or were revoked while an item they cover is still published, with no other live
-- consent covering it: what `archiver consent check` flags "consent lapsed, content still published".
CREATE VIEW lapsed_consents AS
SELECT
    i.consent_id,
    i.consent_status,
    -- the first day not covered
    CASE WHEN i.consent_status = 'revoked' THEN i.revoked_on ELSE date(i.expires_on, '+1 day') END AS lapsed_on,
    i.granted_on,
    i.patient_ref,
    i.item_key,
    i.platform,
    i.account,
    i.published_at,
    i.url,
    i.text
FROM consent_items i
WHERE i.consent_status IN ('expired', 'revoked')
  AND i.item_status = 'published'
  AND NOT EXISTS (SELECT 1 FROM consent_items o
                  WHERE o.item_key = i.item_key AND o.consent_status = 'live');

-- flag_status and flag_queue (migration 0005) again, with consent flags: a consent flag is current while
-- its condition holds today: the post is published and no live consent covers it (consent.lapsed), or the
-- flagged version is the latest and no consent but a pending one is linked (consent.missing). So it leaves
-- the queue once the post is taken down or edited, or a consent is linked or renewed. A decision on a
-- consent flag is its own (several lapses may share a version). The PHI branch is unchanged.
DROP VIEW flag_queue;
DROP VIEW flag_status;
CREATE VIEW flag_status AS
SELECT
    f.id AS flag_id,
    f.severity,
    f.category,
    f.rule_id,
    f.reason,
    f.matched,
    f.item_key,
    f.version_id,
    f.rules_version,
    f.created_at AS flagged_at,
    (SELECT r.decision FROM flag_reviews r JOIN flags g ON g.id = r.flag_id
     WHERE g.version_id = f.version_id AND g.rule_id = f.rule_id
       AND g.span_start IS f.span_start AND g.span_end IS f.span_end
       AND (f.category != 'consent' OR g.id = f.id)
     ORDER BY r.id DESC LIMIT 1) AS decision,
    (SELECT r.id FROM flag_reviews r JOIN flags g ON g.id = r.flag_id
     WHERE g.version_id = f.version_id AND g.rule_id = f.rule_id
       AND g.span_start IS f.span_start AND g.span_end IS f.span_end
       AND (f.category != 'consent' OR g.id = f.id)
     ORDER BY r.id DESC LIMIT 1) AS review_id,
    CASE WHEN f.category = 'consent' THEN
        coalesce((SELECT e.event FROM events e WHERE e.item_key = f.item_key
                  AND e.event IN ('deleted', 'restored') ORDER BY e.id DESC LIMIT 1), '') != 'deleted'
        AND CASE WHEN f.rule_id = 'consent.missing' THEN
            -- a linked consent that lapsed is the lapse flag's matter
            f.version_id = (SELECT max(x.id) FROM item_versions x WHERE x.item_key = f.item_key)
            AND NOT EXISTS (SELECT 1 FROM consent_items o
                            WHERE o.item_key = f.item_key AND o.consent_status != 'pending')
        ELSE
            NOT EXISTS (SELECT 1 FROM consent_items o WHERE o.item_key = f.item_key AND o.consent_status = 'live')
        END
    ELSE
        f.rules_version = (SELECT s.rules_version FROM scan_runs s
                           WHERE f.version_id BETWEEN s.from_version_id AND s.to_version_id
                           ORDER BY s.id DESC LIMIT 1)
    END AS current
FROM flags f;

CREATE VIEW flag_queue AS
SELECT
    s.flag_id,
    s.severity,
    s.category,
    s.reason,
    s.matched,
    coalesce(s.decision, 'open') AS status,
    v.platform,
    v.account,
    v.kind,
    v.author_handle,
    v.created_at,
    v.text,
    v.url,
    s.item_key,
    s.version_id,
    s.rule_id,
    s.rules_version,
    s.flagged_at
FROM flag_status s JOIN item_versions v ON v.id = s.version_id
WHERE s.current = 1 AND (s.decision IS NULL OR s.decision = 'escalated')
ORDER BY CASE s.severity WHEN 'high' THEN 0 WHEN 'medium' THEN 1 ELSE 2 END, s.flag_id DESC;

CREATE TRIGGER consent_checks_append_only_update BEFORE UPDATE ON consent_checks
BEGIN SELECT RAISE(ABORT, 'consent_checks is append-only: UPDATE refused'); END;
CREATE TRIGGER consent_checks_append_only_delete BEFORE DELETE ON consent_checks
BEGIN SELECT RAISE(ABORT, 'consent_checks is append-only: DELETE refused'); END;
CREATE TRIGGER consent_imports_append_only_update BEFORE UPDATE ON consent_imports
BEGIN SELECT RAISE(ABORT, 'consent_imports is append-only: UPDATE refused'); END;
CREATE TRIGGER consent_imports_append_only_delete BEFORE DELETE ON consent_imports
BEGIN SELECT RAISE(ABORT, 'consent_imports is append-only: DELETE refused'); END;
CREATE TRIGGER consent_register_append_only_update BEFORE UPDATE ON consent_register
BEGIN SELECT RAISE(ABORT, 'consent_register is append-only: UPDATE refused'); END;
CREATE TRIGGER consent_register_append_only_delete BEFORE DELETE ON consent_register
BEGIN SELECT RAISE(ABORT, 'consent_register is append-only: DELETE refused'); END;
CREATE TRIGGER consent_links_append_only_update BEFORE UPDATE ON consent_links
BEGIN SELECT RAISE(ABORT, 'consent_links is append-only: UPDATE refused'); END;
CREATE TRIGGER consent_links_append_only_delete BEFORE DELETE ON consent_links
BEGIN SELECT RAISE(ABORT, 'consent_links is append-only: DELETE refused'); END;

-- migration 0007: exports register (evidence bundles made from the archive)
-- One row per evidence bundle written by `archiver export`: the chain of custody goes on from capture to
-- export. `manifest_sha256` is the digest of the bag's manifest-sha256.txt as signed; `checkpoint_id` the
-- checkpoint signed for the export, whose ledger head covers every row the bundle holds.
CREATE TABLE exports (
    id INTEGER PRIMARY KEY,
    case_id TEXT NOT NULL,
    exported_at TEXT NOT NULL,
    exported_by TEXT NOT NULL,           -- the operating-system user who ran the export
    host TEXT NOT NULL,
    software_version TEXT NOT NULL,
    selectors TEXT NOT NULL,             -- JSON: the selectors exactly as given
    counts TEXT NOT NULL,                -- JSON: rows and records per kind in the bundle
    checkpoint_id INTEGER NOT NULL REFERENCES checkpoints(id),
    bundle_path TEXT NOT NULL,
    manifest_sha256 TEXT NOT NULL,       -- sha256 (hex) of the bag's manifest-sha256.txt
    tagmanifest_sha256 TEXT NOT NULL,    -- sha256 (hex) of the bag's tagmanifest-sha256.txt
    signature TEXT NOT NULL              -- base64 Ed25519 signature of manifest-sha256.txt
);
CREATE TRIGGER exports_append_only_update BEFORE UPDATE ON exports
BEGIN SELECT RAISE(ABORT, 'exports is append-only: UPDATE refused'); END;
CREATE TRIGGER exports_append_only_delete BEFORE DELETE ON exports
BEGIN SELECT RAISE(ABORT, 'exports is append-only: DELETE refused'); END;

-- migration 0008: the full-text index is filled per transaction, not per row
-- FTS5 rewrites its totals for every statement that adds to it: one INSERT per version made the index about
-- two thirds of a capture's database time. The archiver now adds a transaction's new versions to the index
-- with one INSERT ... SELECT just before it commits (Store.commit), so the index still changes atomically
-- with the rows it covers. A program that appends versions by other means must do the same.
DROP TRIGGER item_versions_fts_insert;

-- migration 0009: item versions by capture time (the workspace's captured-date search)
-- A search for what was captured in a week, without words, read every version of the archive (about 1 s at
-- 1,000,000 items) for its page and counts: nothing else orders versions by captured_at. The archiver writes
-- captured_at as it appends, so new entries go at the index's right edge: 32 MB a million versions, built in
-- under 2 s when this migration runs on such an archive, no cost measurable in Store.append_item.
CREATE INDEX item_versions_captured ON item_versions(captured_at);

-- migration 0010: a lapsed consent is covered only by the same patient's live consent for the same thing
-- Before, any live consent linked to a post covered every lapse on it: one patient's consent hid another
-- patient's revocation of their photo in the same post. Now a lapse (a consent's link to a post, or to one
-- attachment of it) is covered only by a live consent of the same patient_ref linked to the whole post or to
-- that attachment. lapsed_consents lists each uncovered link (media_url says which attachment); a
-- consent.lapsed flag (its `matched` is the consent id) is current while its consent has such a link.
DROP VIEW flag_queue;
DROP VIEW flag_status;
DROP VIEW lapsed_consents;
CREATE VIEW lapsed_consents AS
SELECT
    i.consent_id,
    i.consent_status,
    -- the first day not covered
    CASE WHEN i.consent_status = 'revoked' THEN i.revoked_on ELSE date(i.expires_on, '+1 day') END AS lapsed_on,
    i.granted_on,
    i.patient_ref,
    i.item_key,
    i.media_url,
    i.platform,
    i.account,
    i.published_at,
    i.url,
    i.text
FROM consent_items i
WHERE i.consent_status IN ('expired', 'revoked')
  AND i.item_status = 'published'
  AND NOT EXISTS (SELECT 1 FROM consent_items o
                  WHERE o.item_key = i.item_key AND o.consent_status = 'live' AND o.patient_ref = i.patient_ref
                    AND (o.media_url IS NULL OR o.media_url = i.media_url));

CREATE VIEW flag_status AS
SELECT
    f.id AS flag_id,
    f.severity,
    f.category,
    f.rule_id,
    f.reason,
    f.matched,
    f.item_key,
    f.version_id,
    f.rules_version,
    f.created_at AS flagged_at,
    (SELECT r.decision FROM flag_reviews r JOIN flags g ON g.id = r.flag_id
     WHERE g.version_id = f.version_id AND g.rule_id = f.rule_id
       AND g.span_start IS f.span_start AND g.span_end IS f.span_end
       AND (f.category != 'consent' OR g.id = f.id)
     ORDER BY r.id DESC LIMIT 1) AS decision,
    (SELECT r.id FROM flag_reviews r JOIN flags g ON g.id = r.flag_id
     WHERE g.version_id = f.version_id AND g.rule_id = f.rule_id
       AND g.span_start IS f.span_start AND g.span_end IS f.span_end
       AND (f.category != 'consent' OR g.id = f.id)
     ORDER BY r.id DESC LIMIT 1) AS review_id,
    CASE WHEN f.category = 'consent' THEN
        coalesce((SELECT e.event FROM events e WHERE e.item_key = f.item_key
                  AND e.event IN ('deleted', 'restored') ORDER BY e.id DESC LIMIT 1), '') != 'deleted'
        AND CASE WHEN f.rule_id = 'consent.missing' THEN
            -- a linked consent that lapsed is the lapse flag's matter
            f.version_id = (SELECT max(x.id) FROM item_versions x WHERE x.item_key = f.item_key)
            AND NOT EXISTS (SELECT 1 FROM consent_items o
                            WHERE o.item_key = f.item_key AND o.consent_status != 'pending')
        ELSE
            EXISTS (SELECT 1 FROM lapsed_consents x WHERE x.consent_id = f.matched AND x.item_key = f.item_key)
        END
    ELSE
        f.rules_version = (SELECT s.rules_version FROM scan_runs s
                           WHERE f.version_id BETWEEN s.from_version_id AND s.to_version_id
                           ORDER BY s.id DESC LIMIT 1)
    END AS current
FROM flags f;

CREATE VIEW flag_queue AS
SELECT
    s.flag_id,
    s.severity,
    s.category,
    s.reason,
    s.matched,
    coalesce(s.decision, 'open') AS status,
    v.platform,
    v.account,
    v.kind,
    v.author_handle,
    v.created_at,
    v.text,
    v.url,
    s.item_key,
    s.version_id,
    s.rule_id,
    s.rules_version,
    s.flagged_at
FROM flag_status s JOIN item_versions v ON v.id = s.version_id
WHERE s.current = 1 AND (s.decision IS NULL OR s.decision = 'escalated')
ORDER BY CASE s.severity WHEN 'high' THEN 0 WHEN 'medium' THEN 1 ELSE 2 END, s.flag_id DESC;

-- migration 0011: alert deliveries; one hit across an item's versions
-- New flags were announced once, at the end of the run that made them, and nothing recorded whether the
-- message got through: an SMTP or webhook outage, a scan that failed, or a stop while sending left flags
-- never announced. Each attempt is now recorded, one row per flag per message per channel, once the channel
-- has answered: a stop in between leaves no row, so the flag is sent again (at least once, never silently
-- dropped). A flag is owed on a channel while it is in the review queue at an alerted severity, with no 'sent'
-- row there for it or for an earlier flag of the same hit (archiver/scan/delivery.py); flags made before
-- this migration was applied are not owed, so an upgrade does not announce the archive's history.
-- A moderator hiding a comment makes a new version with the same text, and the scan flags the same hit
-- again. A PHI flag's hit is its item, rule, span and matched text: flag_status now carries the latest
-- decision on the same hit on any earlier or equal version of the item, and a PHI flag is current only
-- while no later version of its item has a flag of the same hit by the same rules, so the queue shows each
-- hit once, on its latest version. A consent flag's decision stays its own (0010). flags_hit answers both look-ups from the
-- index alone: count(*) of flag_queue over 30,000 flags (5,000 comments, three versions of two hits each) took
-- 180 ms with 0010's views, 210 ms with these without the index, 100 ms with it.
CREATE TABLE alert_deliveries (
    id INTEGER PRIMARY KEY,
    message INTEGER NOT NULL,            -- one number per message sent on a channel, shared by its flags' rows
    flag_id INTEGER NOT NULL REFERENCES flags(id),
    channel TEXT NOT NULL CHECK (channel IN ('email', 'webhook')),
    destination TEXT NOT NULL,           -- the e-mail's recipients, or the webhook's scheme and host only
    outcome TEXT NOT NULL CHECK (outcome IN ('sent', 'failed')),
    error TEXT,                          -- failed: the one-line error, without secrets; sent: null
    run_id TEXT REFERENCES runs(id),     -- the run that sent it; null for `archiver scan` and `archiver alerts send`
    created_at TEXT NOT NULL,            -- when the channel answered
    CHECK ((outcome = 'sent') = (error IS NULL))
);
CREATE INDEX alert_deliveries_flag ON alert_deliveries(flag_id, channel, outcome);
CREATE INDEX flags_hit ON flags(item_key, rule_id, span_start, span_end, version_id, matched);
CREATE TRIGGER alert_deliveries_append_only_update BEFORE UPDATE ON alert_deliveries
BEGIN SELECT RAISE(ABORT, 'alert_deliveries is append-only: UPDATE refused'); END;
CREATE TRIGGER alert_deliveries_append_only_delete BEFORE DELETE ON alert_deliveries
BEGIN SELECT RAISE(ABORT, 'alert_deliveries is append-only: DELETE refused'); END;

DROP VIEW flag_queue;
DROP VIEW flag_status;
CREATE VIEW flag_status AS
SELECT
    f.id AS flag_id,
    f.severity,
    f.category,
    f.rule_id,
    f.reason,
    f.matched,
    f.item_key,
    f.version_id,
    f.rules_version,
    f.created_at AS flagged_at,
    (SELECT r.decision FROM flags g JOIN flag_reviews r ON r.flag_id = g.id
     WHERE g.item_key = f.item_key AND g.rule_id = f.rule_id
       AND g.span_start IS f.span_start AND g.span_end IS f.span_end AND g.version_id <= f.version_id
       AND (g.version_id = f.version_id OR g.matched IS f.matched)
       AND (f.category != 'consent' OR g.id = f.id)
     ORDER BY r.id DESC LIMIT 1) AS decision,
    (SELECT r.id FROM flags g JOIN flag_reviews r ON r.flag_id = g.id
     WHERE g.item_key = f.item_key AND g.rule_id = f.rule_id
       AND g.span_start IS f.span_start AND g.span_end IS f.span_end AND g.version_id <= f.version_id
       AND (g.version_id = f.version_id OR g.matched IS f.matched)
       AND (f.category != 'consent' OR g.id = f.id)
     ORDER BY r.id DESC LIMIT 1) AS review_id,
    CASE WHEN f.category = 'consent' THEN
        coalesce((SELECT e.event FROM events e WHERE e.item_key = f.item_key
                  AND e.event IN ('deleted', 'restored') ORDER BY e.id DESC LIMIT 1), '') != 'deleted'
        AND CASE WHEN f.rule_id = 'consent.missing' THEN
            -- a linked consent that lapsed is the lapse flag's matter
            f.version_id = (SELECT max(x.id) FROM item_versions x WHERE x.item_key = f.item_key)
            AND NOT EXISTS (SELECT 1 FROM consent_items o
                            WHERE o.item_key = f.item_key AND o.consent_status != 'pending')
        ELSE
            EXISTS (SELECT 1 FROM lapsed_consents x WHERE x.consent_id = f.matched AND x.item_key = f.item_key)
        END
    ELSE
        f.rules_version = (SELECT s.rules_version FROM scan_runs s
                           WHERE f.version_id BETWEEN s.from_version_id AND s.to_version_id
                           ORDER BY s.id DESC LIMIT 1)
        -- the same hit on a later version of the item is the one the queue shows
        AND NOT EXISTS (SELECT 1 FROM flags g
                        WHERE g.item_key = f.item_key AND g.rule_id = f.rule_id
                          AND g.span_start IS f.span_start AND g.span_end IS f.span_end
                          AND g.version_id > f.version_id AND g.matched IS f.matched
                          AND g.rules_version = f.rules_version)
    END AS current
FROM flags f;

CREATE VIEW flag_queue AS
SELECT
    s.flag_id,
    s.severity,
    s.category,
    s.reason,
    s.matched,
    coalesce(s.decision, 'open') AS status,
    v.platform,
    v.account,
    v.kind,
    v.author_handle,
    v.created_at,
    v.text,
    v.url,
    s.item_key,
    s.version_id,
    s.rule_id,
    s.rules_version,
    s.flagged_at
FROM flag_status s JOIN item_versions v ON v.id = s.version_id
WHERE s.current = 1 AND (s.decision IS NULL OR s.decision = 'escalated')
ORDER BY CASE s.severity WHEN 'high' THEN 0 WHEN 'medium' THEN 1 ELSE 2 END, s.flag_id DESC;

-- migration 0012: who recorded each review, as the system knows them
-- flag_reviews.reviewer is the name given with --reviewer (or $ARCHIVER_REVIEWER): whatever was typed. The
-- operating-system account that ran `archiver review` (the effective uid's name and uid, and SUDO_USER as
-- the environment claims it) is now appended beside each review, in its own table since a new column would
-- change the ledger's canonical bytes of the reviews already entered. Reviews made before have no row.
CREATE TABLE review_operators (
    review_id INTEGER PRIMARY KEY REFERENCES flag_reviews(id),
    operator TEXT NOT NULL               -- e.g. "archiver (uid 998), SUDO_USER dana (claimed by the environment, ...)"
);
CREATE TRIGGER review_operators_append_only_update BEFORE UPDATE ON review_operators
BEGIN SELECT RAISE(ABORT, 'review_operators is append-only: UPDATE refused'); END;
CREATE TRIGGER review_operators_append_only_delete BEFORE DELETE ON review_operators
BEGIN SELECT RAISE(ABORT, 'review_operators is append-only: DELETE refused'); END;

DROP VIEW reviewed_flags;
CREATE VIEW reviewed_flags AS
SELECT
    r.id AS review_id,
    r.decision,
    r.reviewer,
    o.operator AS recorded_by,
    r.note,
    r.created_at AS reviewed_at,
    f.id AS flag_id,
    f.severity,
    f.category,
    f.rule_id,
    f.reason,
    f.matched,
    f.item_key,
    f.version_id,
    v.platform,
    v.account,
    v.kind,
    v.author_handle,
    v.text
FROM flag_reviews r
LEFT JOIN review_operators o ON o.review_id = r.id
JOIN flags f ON f.id = r.flag_id
JOIN item_versions v ON v.id = f.version_id
ORDER BY r.id DESC;

-- migration 0013: what the consent check reads; a lapse is dated by what ended the consent first
-- The consent check now reads the organisation's own replies and comments as well as its posts (a patient's
-- story goes on in a reply to the clinic's own post): an item written by the account's own platform identity,
-- or a top-level post that names no author or whose account's identity was never recorded
-- (archiver/consent/own.py says the same in Python). lapsed_consents lists only such items: a link to a member of the public's comment or to a direct
-- message was never checked, and `archiver consent link` now refuses one.
-- A consent that expired and was revoked later showed as 'revoked', lapsed on the revocation day, though it
-- had stopped covering the day after its expiry: its status now names what ended it first, so lapsed_on is the
-- earlier of the two days (a revocation on the day after the expiry counts as the revocation).
-- A consent.lapsed flag was current while its consent had any uncovered lapse on the item: renewed and lapsed
-- again, the consent brought the first lapse's flag back beside the second's. A lapse flag is now current only
-- while the lapse its reason names ("consent C expired on D " or "revoked on D ") is the consent's lapse; flags
-- made before keep their reasons, which the check wrote in that form.
DROP VIEW flag_queue;
DROP VIEW flag_status;
DROP VIEW lapsed_consents;
DROP VIEW consents;
CREATE VIEW consents AS
SELECT
    r.consent_id,
    r.patient_ref,
    r.platform,
    r.account,
    r.scope,
    r.granted_on,
    r.expires_on,
    r.revoked_on,
    CASE
        WHEN r.revoked_on IS NOT NULL AND r.revoked_on <= date('now')
             AND (r.expires_on IS NULL OR r.revoked_on <= date(r.expires_on, '+1 day')) THEN 'revoked'
        WHEN r.expires_on IS NOT NULL AND r.expires_on < date('now') THEN 'expired'
        WHEN r.granted_on > date('now') THEN 'pending'
        ELSE 'live'
    END AS status,
    (SELECT count(DISTINCT l.item_key) FROM consent_links l WHERE l.consent_id = r.consent_id) AS linked_items,
    r.document_sha256,
    (SELECT count(*) FROM consent_register c WHERE c.consent_id = r.consent_id) AS register_rows,
    r.recorded_at,
    r.id AS register_id
FROM consent_register r
WHERE r.id = (SELECT max(l.id) FROM consent_register l WHERE l.consent_id = r.consent_id);

CREATE VIEW lapsed_consents AS
SELECT
    i.consent_id,
    i.consent_status,
    -- the first day not covered (the status names what ended the consent first)
    CASE WHEN i.consent_status = 'revoked' THEN i.revoked_on ELSE date(i.expires_on, '+1 day') END AS lapsed_on,
    i.granted_on,
    i.patient_ref,
    i.item_key,
    i.media_url,
    i.platform,
    i.account,
    i.published_at,
    i.url,
    i.text
FROM consent_items i
WHERE i.consent_status IN ('expired', 'revoked')
  AND i.item_status = 'published'
  AND EXISTS (SELECT 1 FROM item_versions v
              WHERE v.id = (SELECT max(x.id) FROM item_versions x WHERE x.item_key = i.item_key)
                AND v.kind IN ('post', 'comment')
                AND (v.author_id IN (SELECT a.platform_account_id FROM accounts a WHERE a.name = v.account)
                     OR (v.kind = 'post' AND (v.author_id IS NULL
                                              OR NOT EXISTS (SELECT 1 FROM accounts a WHERE a.name = v.account)))))
  AND NOT EXISTS (SELECT 1 FROM consent_items o
                  WHERE o.item_key = i.item_key AND o.consent_status = 'live' AND o.patient_ref = i.patient_ref
                    AND (o.media_url IS NULL OR o.media_url = i.media_url));

CREATE VIEW flag_status AS
SELECT
    f.id AS flag_id,
    f.severity,
    f.category,
    f.rule_id,
    f.reason,
    f.matched,
    f.item_key,
    f.version_id,
    f.rules_version,
    f.created_at AS flagged_at,
    (SELECT r.decision FROM flags g JOIN flag_reviews r ON r.flag_id = g.id
     WHERE g.item_key = f.item_key AND g.rule_id = f.rule_id
       AND g.span_start IS f.span_start AND g.span_end IS f.span_end AND g.version_id <= f.version_id
       AND (g.version_id = f.version_id OR g.matched IS f.matched)
       AND (f.category != 'consent' OR g.id = f.id)
     ORDER BY r.id DESC LIMIT 1) AS decision,
    (SELECT r.id FROM flags g JOIN flag_reviews r ON r.flag_id = g.id
     WHERE g.item_key = f.item_key AND g.rule_id = f.rule_id
       AND g.span_start IS f.span_start AND g.span_end IS f.span_end AND g.version_id <= f.version_id
       AND (g.version_id = f.version_id OR g.matched IS f.matched)
       AND (f.category != 'consent' OR g.id = f.id)
     ORDER BY r.id DESC LIMIT 1) AS review_id,
    CASE WHEN f.category = 'consent' THEN
        coalesce((SELECT e.event FROM events e WHERE e.item_key = f.item_key
                  AND e.event IN ('deleted', 'restored') ORDER BY e.id DESC LIMIT 1), '') != 'deleted'
        AND CASE WHEN f.rule_id = 'consent.missing' THEN
            -- a linked consent that lapsed is the lapse flag's matter
            f.version_id = (SELECT max(x.id) FROM item_versions x WHERE x.item_key = f.item_key)
            AND NOT EXISTS (SELECT 1 FROM consent_items o
                            WHERE o.item_key = f.item_key AND o.consent_status != 'pending')
        ELSE
            -- the lapse the flag was raised for, as its reason names it (archiver/consent/check.py lapse_prefix)
            EXISTS (SELECT 1 FROM lapsed_consents x
                    WHERE x.consent_id = f.matched AND x.item_key = f.item_key
                      AND instr(f.reason, 'consent lapsed, content still published: consent ' || x.consent_id || ' '
                                || CASE x.consent_status WHEN 'revoked' THEN 'revoked on ' || x.lapsed_on
                                   ELSE 'expired on ' || date(x.lapsed_on, '-1 day') END || ' ') = 1)
        END
    ELSE
        f.rules_version = (SELECT s.rules_version FROM scan_runs s
                           WHERE f.version_id BETWEEN s.from_version_id AND s.to_version_id
                           ORDER BY s.id DESC LIMIT 1)
        -- the same hit on a later version of the item is the one the queue shows
        AND NOT EXISTS (SELECT 1 FROM flags g
                        WHERE g.item_key = f.item_key AND g.rule_id = f.rule_id
                          AND g.span_start IS f.span_start AND g.span_end IS f.span_end
                          AND g.version_id > f.version_id AND g.matched IS f.matched
                          AND g.rules_version = f.rules_version)
    END AS current
FROM flags f;

CREATE VIEW flag_queue AS
SELECT
    s.flag_id,
    s.severity,
    s.category,
    s.reason,
    s.matched,
    coalesce(s.decision, 'open') AS status,
    v.platform,
    v.account,
    v.kind,
    v.author_handle,
    v.created_at,
    v.text,
    v.url,
    s.item_key,
    s.version_id,
    s.rule_id,
    s.rules_version,
    s.flagged_at
FROM flag_status s JOIN item_versions v ON v.id = s.version_id
WHERE s.current = 1 AND (s.decision IS NULL OR s.decision = 'escalated')
ORDER BY CASE s.severity WHEN 'high' THEN 0 WHEN 'medium' THEN 1 ELSE 2 END, s.flag_id DESC;

-- migration 0014: consent flags for a post published before its consent was granted, and for an edit after
-- its consent was linked
-- flag_status and flag_queue again, with two consent rules (archiver/consent/check.py says when each is raised):
-- consent.late is current while no consent linked to the item was granted (in any of its register rows) on or
-- before the day the flagged version says it was published; a past disclosure, it stays current if the post
-- is taken down. consent.edited is current while its version is the item's latest real edit (an 'edited'
-- event without not_an_edit), no consent link was made after that version was captured, and the item is not
-- proven deleted. Every other flag is judged as in migration 0013.
DROP VIEW flag_queue;
DROP VIEW flag_status;
CREATE VIEW flag_status AS
SELECT
    f.id AS flag_id,
    f.severity,
    f.category,
    f.rule_id,
    f.reason,
    f.matched,
    f.item_key,
    f.version_id,
    f.rules_version,
    f.created_at AS flagged_at,
    (SELECT r.decision FROM flags g JOIN flag_reviews r ON r.flag_id = g.id
     WHERE g.item_key = f.item_key AND g.rule_id = f.rule_id
       AND g.span_start IS f.span_start AND g.span_end IS f.span_end AND g.version_id <= f.version_id
       AND (g.version_id = f.version_id OR g.matched IS f.matched)
       AND (f.category != 'consent' OR g.id = f.id)
     ORDER BY r.id DESC LIMIT 1) AS decision,
    (SELECT r.id FROM flags g JOIN flag_reviews r ON r.flag_id = g.id
     WHERE g.item_key = f.item_key AND g.rule_id = f.rule_id
       AND g.span_start IS f.span_start AND g.span_end IS f.span_end AND g.version_id <= f.version_id
       AND (g.version_id = f.version_id OR g.matched IS f.matched)
       AND (f.category != 'consent' OR g.id = f.id)
     ORDER BY r.id DESC LIMIT 1) AS review_id,
    CASE WHEN f.category = 'consent' AND f.rule_id = 'consent.late' THEN
        -- a past disclosure: current, taken down or not, until no longer true (a consent linked since was
        -- granted by the day the post was published)
        NOT EXISTS (SELECT 1 FROM consent_links l JOIN consent_register r ON r.consent_id = l.consent_id
                    WHERE l.item_key = f.item_key
                      AND r.granted_on <= (SELECT substr(x.created_at, 1, 10) FROM item_versions x
                                           WHERE x.id = f.version_id))
    WHEN f.category = 'consent' THEN
        coalesce((SELECT e.event FROM events e WHERE e.item_key = f.item_key
                  AND e.event IN ('deleted', 'restored') ORDER BY e.id DESC LIMIT 1), '') != 'deleted'
        AND CASE WHEN f.rule_id = 'consent.missing' THEN
            -- a linked consent that lapsed is the lapse flag's matter
            f.version_id = (SELECT max(x.id) FROM item_versions x WHERE x.item_key = f.item_key)
            AND NOT EXISTS (SELECT 1 FROM consent_items o
                            WHERE o.item_key = f.item_key AND o.consent_status != 'pending')
        WHEN f.rule_id = 'consent.edited' THEN
            -- the item's latest real edit (archiver/consent/check.py REAL_EDIT), with no consent linked since
            NOT EXISTS (SELECT 1 FROM events e
                        WHERE e.item_key = f.item_key AND e.version_id > f.version_id
                          AND e.event = 'edited' AND json_extract(e.evidence, '$.not_an_edit') IS NULL)
            AND NOT EXISTS (SELECT 1 FROM consent_links l
                            WHERE l.item_key = f.item_key
                              AND l.linked_at >= (SELECT x.captured_at FROM item_versions x WHERE x.id = f.version_id))
        ELSE
            -- the lapse the flag was raised for, as its reason names it (archiver/consent/check.py lapse_prefix)
            EXISTS (SELECT 1 FROM lapsed_consents x
                    WHERE x.consent_id = f.matched AND x.item_key = f.item_key
                      AND instr(f.reason, 'consent lapsed, content still published: consent ' || x.consent_id || ' '
                                || CASE x.consent_status WHEN 'revoked' THEN 'revoked on ' || x.lapsed_on
                                   ELSE 'expired on ' || date(x.lapsed_on, '-1 day') END || ' ') = 1)
        END
    ELSE
        f.rules_version = (SELECT s.rules_version FROM scan_runs s
                           WHERE f.version_id BETWEEN s.from_version_id AND s.to_version_id
                           ORDER BY s.id DESC LIMIT 1)
        -- the same hit on a later version of the item is the one the queue shows
        AND NOT EXISTS (SELECT 1 FROM flags g
                        WHERE g.item_key = f.item_key AND g.rule_id = f.rule_id
                          AND g.span_start IS f.span_start AND g.span_end IS f.span_end
                          AND g.version_id > f.version_id AND g.matched IS f.matched
                          AND g.rules_version = f.rules_version)
    END AS current
FROM flags f;

CREATE VIEW flag_queue AS
SELECT
    s.flag_id,
    s.severity,
    s.category,
    s.reason,
    s.matched,
    coalesce(s.decision, 'open') AS status,
    v.platform,
    v.account,
    v.kind,
    v.author_handle,
    v.created_at,
    v.text,
    v.url,
    s.item_key,
    s.version_id,
    s.rule_id,
    s.rules_version,
    s.flagged_at
FROM flag_status s JOIN item_versions v ON v.id = s.version_id
WHERE s.current = 1 AND (s.decision IS NULL OR s.decision = 'escalated')
ORDER BY CASE s.severity WHEN 'high' THEN 0 WHEN 'medium' THEN 1 ELSE 2 END, s.flag_id DESC;

-- migration 0015: consent.late and consent.edited judged patient by patient
-- flag_status and flag_queue again. A consent.late flag was cleared by any consent linked to the post and
-- granted in time, another patient's included; it is now cleared only by one of the same patient as the
-- consent it names (`matched`). A consent.edited flag was cleared by any link made after the edited version
-- was captured, another patient's or one attachment's included; it is now cleared only by a link of the same
-- patient's consent to the whole post. Every other flag is judged as in migration 0014.
DROP VIEW flag_queue;
DROP VIEW flag_status;
CREATE VIEW flag_status AS
SELECT
    f.id AS flag_id,
    f.severity,
    f.category,
    f.rule_id,
    f.reason,
    f.matched,
    f.item_key,
    f.version_id,
    f.rules_version,
    f.created_at AS flagged_at,
    (SELECT r.decision FROM flags g JOIN flag_reviews r ON r.flag_id = g.id
     WHERE g.item_key = f.item_key AND g.rule_id = f.rule_id
       AND g.span_start IS f.span_start AND g.span_end IS f.span_end AND g.version_id <= f.version_id
       AND (g.version_id = f.version_id OR g.matched IS f.matched)
       AND (f.category != 'consent' OR g.id = f.id)
     ORDER BY r.id DESC LIMIT 1) AS decision,
    (SELECT r.id FROM flags g JOIN flag_reviews r ON r.flag_id = g.id
     WHERE g.item_key = f.item_key AND g.rule_id = f.rule_id
       AND g.span_start IS f.span_start AND g.span_end IS f.span_end AND g.version_id <= f.version_id
       AND (g.version_id = f.version_id OR g.matched IS f.matched)
       AND (f.category != 'consent' OR g.id = f.id)
     ORDER BY r.id DESC LIMIT 1) AS review_id,
    CASE WHEN f.category = 'consent' AND f.rule_id = 'consent.late' THEN
        -- a past disclosure: current, taken down or not, until no longer true (a consent of the same patient as
        -- the flag's, `matched`, linked since, was granted by the day the post was published)
        NOT EXISTS (SELECT 1 FROM consent_links l JOIN consent_register r ON r.consent_id = l.consent_id
                    WHERE l.item_key = f.item_key
                      AND r.patient_ref = (SELECT min(p.patient_ref) FROM consent_register p
                                           WHERE p.consent_id = f.matched)
                      AND r.granted_on <= (SELECT substr(x.created_at, 1, 10) FROM item_versions x
                                           WHERE x.id = f.version_id))
    WHEN f.category = 'consent' THEN
        coalesce((SELECT e.event FROM events e WHERE e.item_key = f.item_key
                  AND e.event IN ('deleted', 'restored') ORDER BY e.id DESC LIMIT 1), '') != 'deleted'
        AND CASE WHEN f.rule_id = 'consent.missing' THEN
            -- a linked consent that lapsed is the lapse flag's matter
            f.version_id = (SELECT max(x.id) FROM item_versions x WHERE x.item_key = f.item_key)
            AND NOT EXISTS (SELECT 1 FROM consent_items o
                            WHERE o.item_key = f.item_key AND o.consent_status != 'pending')
        WHEN f.rule_id = 'consent.edited' THEN
            -- the item's latest real edit (archiver/consent/check.py REAL_EDIT), with no consent linked since
            NOT EXISTS (SELECT 1 FROM events e
                        WHERE e.item_key = f.item_key AND e.version_id > f.version_id
                          AND e.event = 'edited' AND json_extract(e.evidence, '$.not_an_edit') IS NULL)
            AND NOT EXISTS (SELECT 1 FROM consent_links l JOIN consent_register r ON r.consent_id = l.consent_id
                            WHERE l.item_key = f.item_key AND l.media_url IS NULL
                              AND r.patient_ref = (SELECT min(p.patient_ref) FROM consent_register p
                                                   WHERE p.consent_id = f.matched)
                              AND l.linked_at >= (SELECT x.captured_at FROM item_versions x WHERE x.id = f.version_id))
        ELSE
            -- the lapse the flag was raised for, as its reason names it (archiver/consent/check.py lapse_prefix)
            EXISTS (SELECT 1 FROM lapsed_consents x
                    WHERE x.consent_id = f.matched AND x.item_key = f.item_key
                      AND instr(f.reason, 'consent lapsed, content still published: consent ' || x.consent_id || ' '
                                || CASE x.consent_status WHEN 'revoked' THEN 'revoked on ' || x.lapsed_on
                                   ELSE 'expired on ' || date(x.lapsed_on, '-1 day') END || ' ') = 1)
        END
    ELSE
        f.rules_version = (SELECT s.rules_version FROM scan_runs s
                           WHERE f.version_id BETWEEN s.from_version_id AND s.to_version_id
                           ORDER BY s.id DESC LIMIT 1)
        -- the same hit on a later version of the item is the one the queue shows
        AND NOT EXISTS (SELECT 1 FROM flags g
                        WHERE g.item_key = f.item_key AND g.rule_id = f.rule_id
                          AND g.span_start IS f.span_start AND g.span_end IS f.span_end
                          AND g.version_id > f.version_id AND g.matched IS f.matched
                          AND g.rules_version = f.rules_version)
    END AS current
FROM flags f;

CREATE VIEW flag_queue AS
SELECT
    s.flag_id,
    s.severity,
    s.category,
    s.reason,
    s.matched,
    coalesce(s.decision, 'open') AS status,
    v.platform,
    v.account,
    v.kind,
    v.author_handle,
    v.created_at,
    v.text,
    v.url,
    s.item_key,
    s.version_id,
    s.rule_id,
    s.rules_version,
    s.flagged_at
FROM flag_status s JOIN item_versions v ON v.id = s.version_id
WHERE s.current = 1 AND (s.decision IS NULL OR s.decision = 'escalated')
ORDER BY CASE s.severity WHEN 'high' THEN 0 WHEN 'medium' THEN 1 ELSE 2 END, s.flag_id DESC;

-- migration 0016: the register's days are local days
-- A consent's dates (granted_on, expires_on, revoked_on) are the organisation's calendar days, but `consents`
-- judged them against date('now'), the UTC day, and flag_status compared a consent.late flag's grant with the
-- UTC day the post went up: in the evening in the Americas a consent lapsed a day early and a post put up the
-- evening before its consent was granted was not late. Both now use the local day of the process reading the
-- view ('localtime': the TZ variable, or the machine's zone), as the consent check does in Python
-- (archiver/consent/state.py local_today and local_day). Nothing else changes.
DROP VIEW flag_queue;
DROP VIEW flag_status;
DROP VIEW consents;
CREATE VIEW consents AS
SELECT
    r.consent_id,
    r.patient_ref,
    r.platform,
    r.account,
    r.scope,
    r.granted_on,
    r.expires_on,
    r.revoked_on,
    CASE
        WHEN r.revoked_on IS NOT NULL AND r.revoked_on <= date('now', 'localtime')
             AND (r.expires_on IS NULL OR r.revoked_on <= date(r.expires_on, '+1 day')) THEN 'revoked'
        WHEN r.expires_on IS NOT NULL AND r.expires_on < date('now', 'localtime') THEN 'expired'
        WHEN r.granted_on > date('now', 'localtime') THEN 'pending'
        ELSE 'live'
    END AS status,
    (SELECT count(DISTINCT l.item_key) FROM consent_links l WHERE l.consent_id = r.consent_id) AS linked_items,
    r.document_sha256,
    (SELECT count(*) FROM consent_register c WHERE c.consent_id = r.consent_id) AS register_rows,
    r.recorded_at,
    r.id AS register_id
FROM consent_register r
WHERE r.id = (SELECT max(l.id) FROM consent_register l WHERE l.consent_id = r.consent_id);

CREATE VIEW flag_status AS
SELECT
    f.id AS flag_id,
    f.severity,
    f.category,
    f.rule_id,
    f.reason,
    f.matched,
    f.item_key,
    f.version_id,
    f.rules_version,
    f.created_at AS flagged_at,
    (SELECT r.decision FROM flags g JOIN flag_reviews r ON r.flag_id = g.id
     WHERE g.item_key = f.item_key AND g.rule_id = f.rule_id
       AND g.span_start IS f.span_start AND g.span_end IS f.span_end AND g.version_id <= f.version_id
       AND (g.version_id = f.version_id OR g.matched IS f.matched)
       AND (f.category != 'consent' OR g.id = f.id)
     ORDER BY r.id DESC LIMIT 1) AS decision,
    (SELECT r.id FROM flags g JOIN flag_reviews r ON r.flag_id = g.id
     WHERE g.item_key = f.item_key AND g.rule_id = f.rule_id
       AND g.span_start IS f.span_start AND g.span_end IS f.span_end AND g.version_id <= f.version_id
       AND (g.version_id = f.version_id OR g.matched IS f.matched)
       AND (f.category != 'consent' OR g.id = f.id)
     ORDER BY r.id DESC LIMIT 1) AS review_id,
    CASE WHEN f.category = 'consent' AND f.rule_id = 'consent.late' THEN
        -- a past disclosure: current, taken down or not, until no longer true (a consent of the same patient as
        -- the flag's, `matched`, linked since, was granted by the local day the post was published)
        NOT EXISTS (SELECT 1 FROM consent_links l JOIN consent_register r ON r.consent_id = l.consent_id
                    WHERE l.item_key = f.item_key
                      AND r.patient_ref = (SELECT min(p.patient_ref) FROM consent_register p
                                           WHERE p.consent_id = f.matched)
                      AND r.granted_on <= (SELECT CASE WHEN length(x.created_at) = 10 THEN x.created_at
                                                  ELSE coalesce(date(x.created_at, 'localtime'),
                                                                substr(x.created_at, 1, 10)) END
                                           FROM item_versions x WHERE x.id = f.version_id))
    WHEN f.category = 'consent' THEN
        coalesce((SELECT e.event FROM events e WHERE e.item_key = f.item_key
                  AND e.event IN ('deleted', 'restored') ORDER BY e.id DESC LIMIT 1), '') != 'deleted'
        AND CASE WHEN f.rule_id = 'consent.missing' THEN
            -- a linked consent that lapsed is the lapse flag's matter
            f.version_id = (SELECT max(x.id) FROM item_versions x WHERE x.item_key = f.item_key)
            AND NOT EXISTS (SELECT 1 FROM consent_items o
                            WHERE o.item_key = f.item_key AND o.consent_status != 'pending')
        WHEN f.rule_id = 'consent.edited' THEN
            -- the item's latest real edit (archiver/consent/check.py REAL_EDIT), with no consent linked since
            NOT EXISTS (SELECT 1 FROM events e
                        WHERE e.item_key = f.item_key AND e.version_id > f.version_id
                          AND e.event = 'edited' AND json_extract(e.evidence, '$.not_an_edit') IS NULL)
            AND NOT EXISTS (SELECT 1 FROM consent_links l JOIN consent_register r ON r.consent_id = l.consent_id
                            WHERE l.item_key = f.item_key AND l.media_url IS NULL
                              AND r.patient_ref = (SELECT min(p.patient_ref) FROM consent_register p
                                                   WHERE p.consent_id = f.matched)
                              AND l.linked_at >= (SELECT x.captured_at FROM item_versions x WHERE x.id = f.version_id))
        ELSE
            -- the lapse the flag was raised for, as its reason names it (archiver/consent/check.py lapse_prefix)
            EXISTS (SELECT 1 FROM lapsed_consents x
                    WHERE x.consent_id = f.matched AND x.item_key = f.item_key
                      AND instr(f.reason, 'consent lapsed, content still published: consent ' || x.consent_id || ' '
                                || CASE x.consent_status WHEN 'revoked' THEN 'revoked on ' || x.lapsed_on
                                   ELSE 'expired on ' || date(x.lapsed_on, '-1 day') END || ' ') = 1)
        END
    ELSE
        f.rules_version = (SELECT s.rules_version FROM scan_runs s
                           WHERE f.version_id BETWEEN s.from_version_id AND s.to_version_id
                           ORDER BY s.id DESC LIMIT 1)
        -- the same hit on a later version of the item is the one the queue shows
        AND NOT EXISTS (SELECT 1 FROM flags g
                        WHERE g.item_key = f.item_key AND g.rule_id = f.rule_id
                          AND g.span_start IS f.span_start AND g.span_end IS f.span_end
                          AND g.version_id > f.version_id AND g.matched IS f.matched
                          AND g.rules_version = f.rules_version)
    END AS current
FROM flags f;

CREATE VIEW flag_queue AS
SELECT
    s.flag_id,
    s.severity,
    s.category,
    s.reason,
    s.matched,
    coalesce(s.decision, 'open') AS status,
    v.platform,
    v.account,
    v.kind,
    v.author_handle,
    v.created_at,
    v.text,
    v.url,
    s.item_key,
    s.version_id,
    s.rule_id,
    s.rules_version,
    s.flagged_at
FROM flag_status s JOIN item_versions v ON v.id = s.version_id
WHERE s.current = 1 AND (s.decision IS NULL OR s.decision = 'escalated')
ORDER BY CASE s.severity WHEN 'high' THEN 0 WHEN 'medium' THEN 1 ELSE 2 END, s.flag_id DESC;

-- migration 0017: how much of each account's capture a run committed
-- A run applies what its connectors observe and commits in batches (every 500 observations). A run killed between
-- two commits captured more than it committed, and a replay of its WARCs gave all of it: the replay then started
-- the next run from another state than the live one had (newer cursors, more versions), asked for other pages
-- than were captured, and failed for every later run. With each commit, a run now appends, for each account it
-- applied observations of since the last commit, how many it has applied in this run: the replay of a run that
-- did not finish applies that many of the account's observations and no more (archiver/rebuild.py).
CREATE TABLE run_progress (
    id INTEGER PRIMARY KEY,
    run_id TEXT NOT NULL REFERENCES runs(id),
    account TEXT NOT NULL,
    observations INTEGER NOT NULL           -- of the account, applied by the run up to this commit
);
CREATE INDEX run_progress_by_run ON run_progress(run_id, account);
CREATE TRIGGER run_progress_append_only_update BEFORE UPDATE ON run_progress
BEGIN SELECT RAISE(ABORT, 'run_progress is append-only: UPDATE refused'); END;
CREATE TRIGGER run_progress_append_only_delete BEFORE DELETE ON run_progress
BEGIN SELECT RAISE(ABORT, 'run_progress is append-only: DELETE refused'); END;

-- migration 0018: versions the PHI scan left out, and the scans that took them up again
-- A version whose detection raises (a detector bug on an odd text) is left out of its scan and named in the run's
-- notices (scan/parallel.py); nothing kept it queryable, and no later nightly scan tried it again. scan_skips keeps
-- each version a scan left out; a later scan with other rules (an upgrade, a changed rule file) takes it up again
-- and says so in scan_retries (`archiver scan --all` covers it by its range). unscanned_versions lists the ones
-- no later scan has scanned: review their text by hand.
CREATE TABLE scan_skips (
    id INTEGER PRIMARY KEY,
    scan_id INTEGER NOT NULL REFERENCES scan_runs(id),
    version_id INTEGER NOT NULL REFERENCES item_versions(id),
    item_key TEXT NOT NULL,
    rules_version TEXT NOT NULL,         -- the scan's: the same rules raise on the same text again
    error TEXT NOT NULL                  -- the error's type and where it was raised, never its message (PHI)
);
CREATE INDEX scan_skips_by_version ON scan_skips(version_id, scan_id);
CREATE TRIGGER scan_skips_append_only_update BEFORE UPDATE ON scan_skips
BEGIN SELECT RAISE(ABORT, 'scan_skips is append-only: UPDATE refused'); END;
CREATE TRIGGER scan_skips_append_only_delete BEFORE DELETE ON scan_skips
BEGIN SELECT RAISE(ABORT, 'scan_skips is append-only: DELETE refused'); END;
CREATE TABLE scan_retries (
    id INTEGER PRIMARY KEY,
    scan_id INTEGER NOT NULL REFERENCES scan_runs(id),
    version_id INTEGER NOT NULL REFERENCES item_versions(id)  -- outside the scan's range; left out again: a skip
);
CREATE INDEX scan_retries_by_version ON scan_retries(version_id, scan_id);
CREATE TRIGGER scan_retries_append_only_update BEFORE UPDATE ON scan_retries
BEGIN SELECT RAISE(ABORT, 'scan_retries is append-only: UPDATE refused'); END;
CREATE TRIGGER scan_retries_append_only_delete BEFORE DELETE ON scan_retries
BEGIN SELECT RAISE(ABORT, 'scan_retries is append-only: DELETE refused'); END;
-- A version's latest skip, unless a later scan scanned it: by its range (`scan --all`) or by a retry.
CREATE VIEW unscanned_versions AS
SELECT
    s.version_id, s.item_key, v.platform, v.account, v.kind, v.created_at, v.url,
    s.scan_id, r.finished_at AS left_out_at, s.rules_version, s.error
FROM scan_skips s
JOIN item_versions v ON v.id = s.version_id
JOIN scan_runs r ON r.id = s.scan_id
WHERE s.scan_id = (SELECT max(t.scan_id) FROM scan_skips t WHERE t.version_id = s.version_id)
  AND NOT EXISTS (
      SELECT 1 FROM scan_runs later
      WHERE later.id > s.scan_id AND later.from_version_id <= s.version_id AND s.version_id <= later.to_version_id
  )
  AND NOT EXISTS (SELECT 1 FROM scan_retries x WHERE x.version_id = s.version_id AND x.scan_id > s.scan_id)
ORDER BY s.version_id;

-- migration 0019: events found by item and kind of event
-- "The item's latest edit", "its latest deletion": flag_status (a consent.edited flag's `current`), the consent
-- check's edits after a consent was linked, the deleted-items query. Without statistics SQLite took events_event
-- (every event of that kind, for each item asked about): at a million versions the review queue took 12 s, over
-- Datasette's limit, and the nightly consent check minutes. With this index each is one search.
CREATE INDEX events_item_event ON events(item_key, event, id);

-- migration 0020: what the consent check's signals found in each version
-- The consent check ran the patient-content signals over every own published post and reply every night (at a
-- million versions 137,507 of them, 55 of its 59 seconds), though a version's text never changes. It now keeps the
-- answer for each version it reads under a rules version (its consent_checks.rules_version: the signal rule files,
-- the engine, the [scan] allow-lists, the consent check's own revision and any spaCy model), appended in the same
-- transaction as the check's row, and reads again only the versions with no answer under its own rules. A flag
-- still names the first signal and every reason: for a version to flag, the check reads that one again.
CREATE TABLE consent_signals (
    id INTEGER PRIMARY KEY,
    check_id INTEGER NOT NULL REFERENCES consent_checks(id),  -- the check that read the version
    version_id INTEGER NOT NULL REFERENCES item_versions(id),
    rules_version TEXT NOT NULL,                               -- the check's
    patient_content INTEGER NOT NULL CHECK (patient_content IN (0, 1))  -- 1: a signal in its text or alt text
);
CREATE INDEX consent_signals_by_version ON consent_signals(version_id, rules_version, patient_content);
CREATE TRIGGER consent_signals_append_only_update BEFORE UPDATE ON consent_signals
BEGIN SELECT RAISE(ABORT, 'consent_signals is append-only: UPDATE refused'); END;
CREATE TRIGGER consent_signals_append_only_delete BEFORE DELETE ON consent_signals
BEGIN SELECT RAISE(ABORT, 'consent_signals is append-only: DELETE refused'); END;

-- migration 0021: a flag is judged by the latest scan that read its version
-- flag_status held a PHI flag current when its rules were those of the latest scan whose range holds the version.
-- A version an earlier scan left out and a later one took up again (scan_retries, migration 0018) lies outside
-- the later scan's range: its flags, under the later rules, were never current, so never in the review queue nor
-- alerted. A scan that left a version out did not read it, and no longer decides for it either. The lookup also
-- walked back through every scan_runs row for each flag (a row a night: 0.85 s at 1,098 scans and 58k flags); it
-- now takes the `scan --all` rows, the one nightly scan whose range starts at or before the version, and the
-- version's retries, each by an index.
CREATE INDEX scan_runs_by_mode_start ON scan_runs(mode, from_version_id);
DROP VIEW flag_queue;
DROP VIEW flag_status;
CREATE VIEW flag_status AS
SELECT
    f.id AS flag_id,
    f.severity,
    f.category,
    f.rule_id,
    f.reason,
    f.matched,
    f.item_key,
    f.version_id,
    f.rules_version,
    f.created_at AS flagged_at,
    (SELECT r.decision FROM flags g JOIN flag_reviews r ON r.flag_id = g.id
     WHERE g.item_key = f.item_key AND g.rule_id = f.rule_id
       AND g.span_start IS f.span_start AND g.span_end IS f.span_end AND g.version_id <= f.version_id
       AND (g.version_id = f.version_id OR g.matched IS f.matched)
       AND (f.category != 'consent' OR g.id = f.id)
     ORDER BY r.id DESC LIMIT 1) AS decision,
    (SELECT r.id FROM flags g JOIN flag_reviews r ON r.flag_id = g.id
     WHERE g.item_key = f.item_key AND g.rule_id = f.rule_id
       AND g.span_start IS f.span_start AND g.span_end IS f.span_end AND g.version_id <= f.version_id
       AND (g.version_id = f.version_id OR g.matched IS f.matched)
       AND (f.category != 'consent' OR g.id = f.id)
     ORDER BY r.id DESC LIMIT 1) AS review_id,
    CASE WHEN f.category = 'consent' AND f.rule_id = 'consent.late' THEN
        -- a past disclosure: current, taken down or not, until no longer true (a consent of the same patient as
        -- the flag's, `matched`, linked since, was granted by the local day the post was published)
        NOT EXISTS (SELECT 1 FROM consent_links l JOIN consent_register r ON r.consent_id = l.consent_id
                    WHERE l.item_key = f.item_key
                      AND r.patient_ref = (SELECT min(p.patient_ref) FROM consent_register p
                                           WHERE p.consent_id = f.matched)
                      AND r.granted_on <= (SELECT CASE WHEN length(x.created_at) = 10 THEN x.created_at
                                                  ELSE coalesce(date(x.created_at, 'localtime'),
                                                                substr(x.created_at, 1, 10)) END
                                           FROM item_versions x WHERE x.id = f.version_id))
    WHEN f.category = 'consent' THEN
        coalesce((SELECT e.event FROM events e WHERE e.item_key = f.item_key
                  AND e.event IN ('deleted', 'restored') ORDER BY e.id DESC LIMIT 1), '') != 'deleted'
        AND CASE WHEN f.rule_id = 'consent.missing' THEN
            -- a linked consent that lapsed is the lapse flag's matter
            f.version_id = (SELECT max(x.id) FROM item_versions x WHERE x.item_key = f.item_key)
            AND NOT EXISTS (SELECT 1 FROM consent_items o
                            WHERE o.item_key = f.item_key AND o.consent_status != 'pending')
        WHEN f.rule_id = 'consent.edited' THEN
            -- the item's latest real edit (archiver/consent/check.py REAL_EDIT), with no consent linked since
            NOT EXISTS (SELECT 1 FROM events e
                        WHERE e.item_key = f.item_key AND e.version_id > f.version_id
                          AND e.event = 'edited' AND json_extract(e.evidence, '$.not_an_edit') IS NULL)
            AND NOT EXISTS (SELECT 1 FROM consent_links l JOIN consent_register r ON r.consent_id = l.consent_id
                            WHERE l.item_key = f.item_key AND l.media_url IS NULL
                              AND r.patient_ref = (SELECT min(p.patient_ref) FROM consent_register p
                                                   WHERE p.consent_id = f.matched)
                              AND l.linked_at >= (SELECT x.captured_at FROM item_versions x WHERE x.id = f.version_id))
        ELSE
            -- the lapse the flag was raised for, as its reason names it (archiver/consent/check.py lapse_prefix)
            EXISTS (SELECT 1 FROM lapsed_consents x
                    WHERE x.consent_id = f.matched AND x.item_key = f.item_key
                      AND instr(f.reason, 'consent lapsed, content still published: consent ' || x.consent_id || ' '
                                || CASE x.consent_status WHEN 'revoked' THEN 'revoked on ' || x.lapsed_on
                                   ELSE 'expired on ' || date(x.lapsed_on, '-1 day') END || ' ') = 1)
        END
    ELSE
        -- the rules of the latest scan that read the version: a `scan --all` over it, the nightly scan whose range
        -- holds it (ranges of mode 'new' follow one another: archiver/scan/archive.py next_unscanned), or a scan
        -- that took it up again after an earlier one left it out; never a scan that left it out
        f.rules_version = (SELECT s.rules_version FROM scan_runs s
                           WHERE s.id IN (SELECT a.id FROM scan_runs a
                                          WHERE a.mode = 'all'
                                            AND f.version_id BETWEEN a.from_version_id AND a.to_version_id
                                          UNION ALL
                                          SELECT (SELECT CASE WHEN n.to_version_id >= f.version_id THEN n.id END
                                                  FROM scan_runs n
                                                  WHERE n.mode = 'new' AND n.from_version_id <= f.version_id
                                                  ORDER BY n.from_version_id DESC, n.id DESC LIMIT 1)
                                          UNION ALL
                                          SELECT r.scan_id FROM scan_retries r WHERE r.version_id = f.version_id)
                             AND NOT EXISTS (SELECT 1 FROM scan_skips k
                                             WHERE k.version_id = f.version_id AND k.scan_id = s.id)
                           ORDER BY s.id DESC LIMIT 1)
        -- the same hit on a later version of the item is the one the queue shows
        AND NOT EXISTS (SELECT 1 FROM flags g
                        WHERE g.item_key = f.item_key AND g.rule_id = f.rule_id
                          AND g.span_start IS f.span_start AND g.span_end IS f.span_end
                          AND g.version_id > f.version_id AND g.matched IS f.matched
                          AND g.rules_version = f.rules_version)
    END AS current
FROM flags f;

CREATE VIEW flag_queue AS
SELECT
    s.flag_id,
    s.severity,
    s.category,
    s.reason,
    s.matched,
    coalesce(s.decision, 'open') AS status,
    v.platform,
    v.account,
    v.kind,
    v.author_handle,
    v.created_at,
    v.text,
    v.url,
    s.item_key,
    s.version_id,
    s.rule_id,
    s.rules_version,
    s.flagged_at
FROM flag_status s JOIN item_versions v ON v.id = s.version_id
WHERE s.current = 1 AND (s.decision IS NULL OR s.decision = 'escalated')
ORDER BY CASE s.severity WHEN 'high' THEN 0 WHEN 'medium' THEN 1 ELSE 2 END, s.flag_id DESC;

-- migration 0022: versions found by their author's platform id; checkpoint statements of type 2
-- `export --author` matches a handle or a platform author id: without this index the id's half of the condition
-- read every version (0.7 s warm, 5 s cold at a million, for a case of a few items).
-- From this schema on, checkpoints sign statements of type archiver-checkpoint/2 (schemas/ledger.md), which list
-- the WARC files recorded since the previous checkpoint and a digest of all of them, no longer every file: an
-- older archiver refuses to read an archive at this schema rather than find none of the new files signed.
CREATE INDEX item_versions_author_id ON item_versions(author_id);

-- migration 0023: the review queue as recorded
-- flag_queue computed every flag's state (flag_status: the latest decision over its hit, whether the latest scan
-- still finds it, a consent flag's condition) on every read: at 66,000 flags each of the queue page's seven queries
-- (its rows, its count, five facets) took 0.6-0.8 s, and the page 5 s. A flag's state changes only when something is
-- appended (a scan, a review, a consent check, a consent imported or linked, a run's versions and events) or, for a
-- consent flag, when a consent's day comes. Each command that appends such rows now records, in its own
-- transaction, the state flag_status gives of each flag whose state differs from its latest row in flag_states
-- (archiver/flag_states.py), with a flag_recordings row saying which command judged which flags on which local day.
-- The queue reads the latest row of each flag; it judges by flag_status, as before, a flag with no row yet and a
-- consent flag when no recording of every flag was made on the reader's local day (the first read after midnight,
-- until the nightly run records). A later migration that changes what flag_status computes must record again.
CREATE TABLE flag_recordings (
    id INTEGER PRIMARY KEY,
    command TEXT NOT NULL,               -- run, scan, consent check, consent import, consent link, review, migration
    whole INTEGER NOT NULL CHECK (whole IN (0, 1)),  -- 1: every flag judged; 0: the flags of the items it changed
    local_day TEXT NOT NULL,             -- date('now', 'localtime') of the recording: the day consents were judged on
    recorded_at TEXT NOT NULL
);
CREATE TRIGGER flag_recordings_append_only_update BEFORE UPDATE ON flag_recordings
BEGIN SELECT RAISE(ABORT, 'flag_recordings is append-only: UPDATE refused'); END;
CREATE TRIGGER flag_recordings_append_only_delete BEFORE DELETE ON flag_recordings
BEGIN SELECT RAISE(ABORT, 'flag_recordings is append-only: DELETE refused'); END;
CREATE TABLE flag_states (
    id INTEGER PRIMARY KEY,
    recording_id INTEGER NOT NULL REFERENCES flag_recordings(id),
    flag_id INTEGER NOT NULL REFERENCES flags(id),
    current INTEGER NOT NULL CHECK (current IN (0, 1)),   -- flag_status.current (0 where it was null)
    decision TEXT,                                        -- flag_status.decision: null while undecided
    review_id INTEGER REFERENCES flag_reviews(id)         -- flag_status.review_id
);
CREATE INDEX flag_states_by_flag ON flag_states(flag_id, id);
CREATE TRIGGER flag_states_append_only_update BEFORE UPDATE ON flag_states
BEGIN SELECT RAISE(ABORT, 'flag_states is append-only: UPDATE refused'); END;
CREATE TRIGGER flag_states_append_only_delete BEFORE DELETE ON flag_states
BEGIN SELECT RAISE(ABORT, 'flag_states is append-only: DELETE refused'); END;
DROP VIEW flag_queue;
CREATE VIEW flag_queue AS
SELECT
    f.id AS flag_id,
    f.severity,
    f.category,
    f.reason,
    f.matched,
    coalesce(s.decision, 'open') AS status,
    v.platform,
    v.account,
    v.kind,
    v.author_handle,
    v.created_at,
    v.text,
    v.url,
    f.item_key,
    f.version_id,
    f.rule_id,
    f.rules_version,
    f.created_at AS flagged_at
FROM (SELECT r.flag_id, r.current, r.decision FROM flag_states r JOIN flags g ON g.id = r.flag_id
      WHERE r.id = (SELECT max(x.id) FROM flag_states x WHERE x.flag_id = r.flag_id)
        AND (g.category != 'consent'
             OR (SELECT d.local_day FROM flag_recordings d WHERE d.whole = 1 ORDER BY d.id DESC LIMIT 1)
                = date('now', 'localtime'))
      UNION ALL
      -- a flag no command has recorded a state of yet, and a consent flag not judged today
      SELECT u.flag_id, u.current, u.decision FROM flag_status u
      WHERE NOT EXISTS (SELECT 1 FROM flag_states x WHERE x.flag_id = u.flag_id)
         OR (u.category = 'consent'
             AND (SELECT d.local_day FROM flag_recordings d WHERE d.whole = 1 ORDER BY d.id DESC LIMIT 1)
                 IS NOT date('now', 'localtime'))) s
JOIN flags f ON f.id = s.flag_id
JOIN item_versions v ON v.id = f.version_id
WHERE s.current = 1 AND (s.decision IS NULL OR s.decision = 'escalated')
ORDER BY CASE f.severity WHEN 'high' THEN 0 WHEN 'medium' THEN 1 ELSE 2 END, f.id DESC;

-- migration 0024: replay differences a person has read
-- After an upgrade whose parser reads some captured records into other rows (a connector's parser revision went
-- up), `archiver verify --replay` names those rows as differences, and they are errors: a row rewritten and signed
-- again by someone with the key looks the same. Since rows never change, the errors would stay for ever, and a
-- check that is always red is no longer read. `archiver review-replay` records that a named person read each such
-- difference against the revision's change: one row per difference, holding the digest of the whole difference (the
-- live and replayed rows in full, archiver/replay_check.py), and the line verify printed. A later verify --replay
-- shows a difference with the same digest as a note naming the review; any other difference, or the same row
-- changed since, is still an error. Only a difference whose row a run made with an older parser than this
-- software's can be reviewed.
CREATE TABLE replay_reviews (
    id INTEGER PRIMARY KEY,
    difference_sha256 TEXT NOT NULL,     -- sha256 of the difference's canonical JSON (replay_check.Difference)
    place TEXT NOT NULL,                 -- where verify --replay said it was
    difference TEXT NOT NULL,            -- what verify --replay said, as printed
    reviewer TEXT NOT NULL,              -- who read it (--reviewer)
    note TEXT NOT NULL,                  -- why it is explained (--note)
    operator TEXT NOT NULL,              -- the operating-system account that recorded it
    reviewed_at TEXT NOT NULL
);
CREATE INDEX replay_reviews_by_difference ON replay_reviews(difference_sha256, id);
CREATE TRIGGER replay_reviews_append_only_update BEFORE UPDATE ON replay_reviews
BEGIN SELECT RAISE(ABORT, 'replay_reviews is append-only: UPDATE refused'); END;
CREATE TRIGGER replay_reviews_append_only_delete BEFORE DELETE ON replay_reviews
BEGIN SELECT RAISE(ABORT, 'replay_reviews is append-only: DELETE refused'); END;
