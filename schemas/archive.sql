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

-- migration 0005: exports register (evidence bundles made from the archive)
-- (assigned number 0007 in the project plan: renumber with the other blocks when they land; self-contained)
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
