"""No secret anywhere: a run over every platform, with accounts that work and accounts whose platform refuses
the token (and echoes it back in its error), then every byte under the archive folder, the logs and the CLI
output of run, status, verify and doctor is searched for every token value."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from urllib.parse import quote

from archiver.demo.loopback import Fault

from .test_faults import HARNESSES


def test_no_token_in_any_byte_the_archiver_writes_or_prints(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARCHIVER_")}
    env.pop("TERM", None)  # not a terminal: JSON log lines on stderr
    tokens: list[str] = []
    servers = []
    accounts = []
    try:
        for harness_type in HARNESSES:
            for role in ("good", "refused"):
                # '/', '+' and '=' have other written forms: JSON-escaped, percent-encoded.
                token = f"secret/{harness_type.platform}+{role}=tok-{len(tokens):02d}-Zq7"
                tokens.append(token)
                harness = harness_type()
                harness.start(token)
                servers.append(harness)
                env_name = f"TOKEN_{harness_type.platform.upper()}_{role.upper()}"
                env[env_name] = token
                accounts.append(harness.account(f"{harness_type.platform}-{role}", env_name))
                if role == "refused":
                    # The platform refuses the token and quotes it back, as some error pages do: as is,
                    # JSON-escaped and in a URL.
                    escaped, encoded = json.dumps(token)[1:-1].replace("/", "\\/"), quote(token, safe="")
                    echo = (
                        json.dumps(
                            {"error": f"invalid token {token}", "seen": "TOKEN", "next": f"/x?access_token={encoded}"}
                        )
                        .replace("TOKEN", escaped)
                        .encode()
                    )
                    harness.add_fault(Fault(r".", status=401, body=echo, times=10_000))
        config = tmp_path / "archiver.toml"
        config.write_text('[archive]\ndir = "arch"\nretries = 0\n\n' + "\n".join(accounts))
        outputs = []
        for command in ("run", "status", "verify", "doctor"):
            done = subprocess.run(
                [sys.executable, "-m", "archiver", command, "--config", str(config)],
                capture_output=True,
                text=True,
                env=env,
                timeout=120,
            )
            outputs.append((command, done.returncode, done.stdout + done.stderr))
    finally:
        for harness in servers:
            harness.stop()

    codes = {command: code for command, code, _ in outputs}
    assert codes["run"] == 1 and codes["doctor"] == 1 and codes["status"] == 0 and codes["verify"] == 0, outputs
    run_output = outputs[0][2]
    assert "renew the token" in run_output and '"level"' in run_output  # the failures, logged as JSON lines
    files = [p for p in (tmp_path / "arch").rglob("*") if p.is_file()]
    assert any(p.name.endswith(".warc.gz") for p in files) and any(p.name == "archive.db" for p in files)
    for token in tokens:
        for form in (token, json.dumps(token)[1:-1].replace("/", "\\/"), quote(token, safe="")):
            needle = form.encode()
            for path in files:
                data = path.read_bytes()
                if path.name.endswith(".gz"):
                    data = gzip.decompress(data)
                assert needle not in data, f"{form} found in {path}"
            for command, _, text in outputs:
                assert form not in text, f"{form} found in the output of archiver {command}"
