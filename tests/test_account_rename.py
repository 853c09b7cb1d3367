"""An account renamed in the config: the platform account is the same, its earlier captures keep the name they were
captured under. The new name's runs re-check them (edits, deletions) as if no rename had happened; only the
platform identity the archive recorded links two names, never their spelling; a rebuild replays it alike."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from archiver.cli import app
from archiver.demo.mastodon_server import MastodonState, SampleMastodonServer
from archiver.replay_check import compare_databases

TOKEN = "rename-test-token-Qw71z"
NOW = datetime.now(UTC)


@pytest.fixture(autouse=True)
def token(monkeypatch):
    monkeypatch.setenv("RENAME_TOKEN", TOKEN)


def clinic(posts: int = 3) -> tuple[MastodonState, list[dict]]:
    """A clinic's Mastodon account with `posts` posts, all inside the re-check window."""
    state = MastodonState()
    state.owner_id = state.add_account("riverside", "Riverside Clinic")["id"]
    own = [state.add_status(state.owner_id, f"Post {i}", created_at=NOW - timedelta(days=5 - i)) for i in range(posts)]
    return state, own


def account(name: str, base_url: str, extra: str = "", handle: str = "@riverside") -> str:
    return (
        f'\n[[accounts]]\nname = "{name}"\nplatform = "mastodon"\napi_base = "{base_url}"\n'
        f'account = "{handle}"\ntoken_env = "RENAME_TOKEN"\n{extra}'
    )


def configure(cfg: Path, *accounts: str) -> Path:
    cfg.parent.mkdir(parents=True, exist_ok=True)
    cfg.write_text('[archive]\ndir = "arch"\n' + "".join(accounts))
    return cfg


def run(cfg: Path) -> str:
    result = CliRunner().invoke(app, ["run", "--config", str(cfg), "--quiet"])
    assert result.exit_code == 0, result.output
    return result.output


def db(cfg: Path) -> sqlite3.Connection:
    return sqlite3.connect(cfg.parent / "arch" / "archive.db")


def key(server: SampleMastodonServer, status: dict) -> str:
    return f"mastodon:{server.base_url.removeprefix('http://')}:{status['id']}"


def deletions(cfg: Path) -> dict[str, tuple[str, str]]:
    """item key -> (run of its deleted event, account of the version the event points at); one event a key."""
    conn = db(cfg)
    rows = conn.execute(
        "SELECT e.item_key, e.run_id, v.account FROM events e JOIN item_versions v ON v.id = e.version_id "
        "WHERE e.event = 'deleted'"
    ).fetchall()
    conn.close()
    found = {row[0]: (row[1], row[2]) for row in rows}
    assert len(found) == len(rows), rows  # never recorded twice
    return found


def last_run(cfg: Path) -> tuple[str, dict[str, int]]:
    """The last run's id and each account's deletions in it."""
    conn = db(cfg)
    (run_id,) = conn.execute("SELECT id FROM runs ORDER BY rowid DESC LIMIT 1").fetchone()
    counts = dict(conn.execute("SELECT account, deletions FROM account_runs WHERE run_id = ?", (run_id,)).fetchall())
    conn.close()
    return run_id, counts


def lookups(server: SampleMastodonServer, since: int, status: dict) -> int:
    """GETs of the status by id (a re-check) in the server's log since entry `since`."""
    return sum(1 for _, path, _ in server.requests_log[since:] if path == f"/api/v1/statuses/{status['id']}")


def rebuilds_alike_and_verifies(cfg: Path, out: Path) -> None:
    result = CliRunner().invoke(app, ["rebuild", "--config", str(cfg), "--out", str(out)])
    assert result.exit_code == 0, result.output
    live = db(cfg)
    assert list(compare_databases(live, sqlite3.connect(out))) == []
    live.close()
    result = CliRunner().invoke(app, ["verify", "--config", str(cfg)])
    assert result.exit_code == 0 and result.output.splitlines()[-1] == "archive verifies", result.output
    result = CliRunner().invoke(app, ["verify", "--replay", "--config", str(cfg)])
    assert result.exit_code == 0 and result.output.splitlines()[-1] == "archive verifies", result.output


def test_a_post_the_old_name_captured_and_deleted_after_the_rename_is_recorded_deleted(tmp_path):
    state, posts = clinic()
    with SampleMastodonServer(state, TOKEN, rate_limit=10**6) as server:
        base = server.base_url
        cfg = configure(tmp_path / "a" / "archiver.toml", account("clinic", base))
        run(cfg)
        # renamed; the old entry kept for rebuild, disabled
        configure(cfg, account("clinic", base, "enabled = false\n"), account("riverside-mastodon", base))
        run(cfg)
        state.delete_status(posts[1]["id"])
        before = len(server.requests_log)
        run(cfg)
        assert [lookups(server, before, post) for post in posts] == [1, 1, 1]  # each re-checked once
        run_id, counts = last_run(cfg)
        # the event is the item's, on the version the old name captured; the new name's run recorded it
        assert deletions(cfg) == {key(server, posts[1]): (run_id, "clinic")}
        assert counts == {"riverside-mastodon": 1}
        run(cfg)  # and once only
        assert len(deletions(cfg)) == 1
    rebuilds_alike_and_verifies(cfg, tmp_path / "rebuilt.db")


def test_a_followers_only_reply_the_old_name_captured_is_weighed_as_the_accounts_own(tmp_path):
    """Another account's followers-only reply is weighed only by the runs of the account that captured it (others
    are answered 404 whether it exists or not): after a rename, that is still this platform account."""
    state, posts = clinic(1)
    person = state.add_account("p1", "Person 1")
    reply = state.add_status(
        person["id"], "private words", in_reply_to_id=posts[0]["id"], visibility="private", created_at=NOW
    )
    with SampleMastodonServer(state, TOKEN, rate_limit=10**6) as server:
        base = server.base_url
        cfg = configure(tmp_path / "a" / "archiver.toml", account("clinic", base))
        run(cfg)
        configure(cfg, account("clinic", base, "enabled = false\n"), account("riverside-mastodon", base))
        run(cfg)
        state.delete_status(reply["id"])
        run(cfg)
        run_id, _ = last_run(cfg)
        assert deletions(cfg) == {key(server, reply): (run_id, "clinic")}
    rebuilds_alike_and_verifies(cfg, tmp_path / "rebuilt.db")


def test_an_account_renamed_twice_rechecks_what_both_earlier_names_captured(tmp_path):
    state, posts = clinic()
    with SampleMastodonServer(state, TOKEN, rate_limit=10**6) as server:
        base = server.base_url
        cfg = configure(tmp_path / "a" / "archiver.toml", account("clinic", base))
        run(cfg)
        configure(cfg, account("riverside", base))  # the first name removed from the config altogether
        posts.append(state.add_status(state.owner_id, "Post 3", created_at=NOW - timedelta(hours=1)))
        run(cfg)
        configure(cfg, account("riverside", base, "enabled = false\n"), account("riverside-3", base))
        run(cfg)
        state.delete_status(posts[1]["id"])  # captured as clinic
        state.delete_status(posts[3]["id"])  # captured as riverside
        before = len(server.requests_log)
        run(cfg)
        assert [lookups(server, before, post) for post in posts] == [1, 1, 1, 1]
        run_id, counts = last_run(cfg)
        assert deletions(cfg) == {
            key(server, posts[1]): (run_id, "clinic"),
            key(server, posts[3]): (run_id, "riverside"),
        }
        assert counts == {"riverside-3": 2}
    # a rebuild needs every name a run captured: put the first back, disabled
    configure(
        cfg,
        account("clinic", base, "enabled = false\n"),
        account("riverside", base, "enabled = false\n"),
        account("riverside-3", base),
    )
    rebuilds_alike_and_verifies(cfg, tmp_path / "rebuilt.db")


def test_another_platform_account_given_the_old_handle_never_sees_the_old_captures(tmp_path):
    """The handle the old name captured passes to another platform account: the new name, configured with that
    handle, is that other account, and must not re-check (nor record deletions of) the first one's posts."""
    state, posts = clinic()
    with SampleMastodonServer(state, TOKEN, rate_limit=10**6) as server:
        base = server.base_url
        cfg = configure(tmp_path / "a" / "archiver.toml", account("clinic", base))
        run(cfg)
        first = state.accounts[state.owner_id]
        first["username"] = first["acct"] = "riverside-closed"
        other = state.add_account("riverside", "Riverside Clinic (new)")
        state.add_status(other["id"], "Hello again", created_at=NOW - timedelta(hours=2))
        state.owner_id = other["id"]
        configure(cfg, account("clinic", base, "enabled = false\n"), account("riverside-mastodon", base))
        run(cfg)
        state.delete_status(posts[1]["id"])
        before = len(server.requests_log)
        run(cfg)
        assert [lookups(server, before, post) for post in posts] == [0, 0, 0]
        assert deletions(cfg) == {}
        conn = db(cfg)
        identities = conn.execute("SELECT name, platform_account_id FROM accounts ORDER BY id").fetchall()
        conn.close()
        assert identities == [("clinic", first["id"]), ("riverside-mastodon", other["id"])]
    rebuilds_alike_and_verifies(cfg, tmp_path / "rebuilt.db")


def test_old_and_new_name_both_enabled_recheck_each_capture_once_and_say_so(tmp_path):
    """Both names of one platform account left enabled: both are captured (nothing is refused), each re-checks the
    items it captured, a name the run does not capture goes to the first of them in config order, and each run
    says that two enabled entries are one platform account."""
    state, posts = clinic(2)
    with SampleMastodonServer(state, TOKEN, rate_limit=10**6) as server:
        base = server.base_url
        cfg = configure(tmp_path / "a" / "archiver.toml", account("legacy", base))
        run(cfg)  # posts 0, 1 as legacy
        configure(cfg, account("legacy", base, "enabled = false\n"), account("clinic", base))
        posts.append(state.add_status(state.owner_id, "Post 2", created_at=NOW - timedelta(hours=2)))
        run(cfg)  # post 2 as clinic
        both = (
            account("legacy", base, "enabled = false\n"),
            account("riverside-mastodon", base),
            account("clinic", base, "", handle=state.owner_id),  # by id this time: the same platform account
        )
        configure(cfg, *both)
        posts.append(state.add_status(state.owner_id, "Post 3", created_at=NOW - timedelta(hours=1)))
        output = run(cfg)  # post 3 as riverside-mastodon, which runs first
        said = [line for line in output.splitlines() if "same mastodon account" in line]
        assert len(said) == 2, output
        assert "account riverside-mastodon is the same mastodon account as clinic, which" in said[0]
        assert "account clinic is the same mastodon account as riverside-mastodon, which" in said[1]
        for post in posts[1:]:
            state.delete_status(post["id"])
        before = len(server.requests_log)
        run(cfg)
        assert [lookups(server, before, post) for post in posts] == [1, 1, 1, 1]  # nothing re-checked twice
        run_id, counts = last_run(cfg)
        assert deletions(cfg) == {
            key(server, posts[1]): (run_id, "legacy"),
            key(server, posts[2]): (run_id, "clinic"),
            key(server, posts[3]): (run_id, "riverside-mastodon"),
        }
        assert counts == {"riverside-mastodon": 2, "clinic": 1}
    rebuilds_alike_and_verifies(cfg, tmp_path / "rebuilt.db")


def test_runs_of_before_the_change_replay_as_they_asked_and_the_next_run_records_the_deletion(tmp_path, monkeypatch):
    """An archive whose renamed account ran on software of before the change: those runs re-checked only their
    own name's captures, and their replay must ask as they asked; the first run after the upgrade records the
    deletion they missed."""
    state, posts = clinic()
    with SampleMastodonServer(state, TOKEN, rate_limit=10**6) as server:
        base = server.base_url
        cfg = configure(tmp_path / "a" / "archiver.toml", account("clinic", base))
        with monkeypatch.context() as before_the_change:
            before_the_change.setattr("archiver.pipeline.rechecking_earlier_names", lambda account: account)
            run(cfg)
            configure(cfg, account("clinic", base, "enabled = false\n"), account("riverside-mastodon", base))
            run(cfg)
            state.delete_status(posts[1]["id"])
            run(cfg)
            assert deletions(cfg) == {}
        run(cfg)
        run_id, _ = last_run(cfg)
        assert deletions(cfg) == {key(server, posts[1]): (run_id, "clinic")}
    conn = db(cfg)
    recorded = conn.execute("SELECT run_id FROM events WHERE event = 'deleted'").fetchall()
    conn.close()
    assert recorded == [(run_id,)]
    rebuilds_alike_and_verifies(cfg, tmp_path / "rebuilt.db")


def test_the_run_records_that_it_rechecks_earlier_names_in_its_warcinfo(tmp_path):
    """What the replay reads to re-check as the run did (account-requests), never a config option."""
    import gzip

    state, _ = clinic(1)
    with SampleMastodonServer(state, TOKEN, rate_limit=10**6) as server:
        cfg = configure(tmp_path / "a" / "archiver.toml", account("clinic", server.base_url))
        run(cfg)
    (warc,) = (cfg.parent / "arch" / "warcs").glob("*.warc.gz")
    with gzip.open(warc, "rt", encoding="utf-8") as fh:
        head = fh.read(4096)
    (line,) = [line for line in head.splitlines() if line.startswith("account-requests:")]
    assert json.loads(line.split(":", 1)[1])["clinic"]["options"] == {"recheck_earlier_names": 1}
    cfg.write_text(cfg.read_text() + "options = { recheck_earlier_names = 1 }\n")
    result = CliRunner().invoke(app, ["run", "--config", str(cfg), "--quiet"])
    assert result.exit_code == 2, result.output
