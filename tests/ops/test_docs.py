"""The documentation stays true.

- docs/getting-started.md's ```sh blocks run in order, in one bash, against a live server.
  The server is the session app, served over HTTP on the test PostgreSQL, with its Redis
  and Celery worker. The rule is simple: every ```sh block runs, and nothing else does.
  Commands that must not run here (`make run`) and their output are fenced as ```console
  or ```text.
- Every relative link in README.md, bench/README.md and docs/ names a file that exists.
  When a link has an #anchor, the anchor names a heading of that file.
- Every variable that config.py and gunicorn.conf.py read has a row in
  docs/configuration.md, and the README stays short.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask

from tests import factories
from tests.conftest import ROOT_KEY

ROOT = factories.PROJECT_ROOT
WALKTHROUGH = ROOT / "docs" / "getting-started.md"
FENCE = re.compile(r"^```([\w-]*)[^\n]*\n(.*?)^```[ \t]*$", re.M | re.S)
MARK = "::gatehouse-docs::"


def shell_blocks(markdown: str) -> list[str]:
    """The ```sh blocks of a Markdown text, in order."""
    return [body for language, body in FENCE.findall(markdown) if language == "sh"]


def _require_tools() -> None:
    """curl, jq and bash are the walkthrough's tools, the ones its reader uses: without
    them the test fails (never skips, on a laptop as on CI) and says what to install."""
    missing = [tool for tool in ("bash", "curl", "jq") if shutil.which(tool) is None]
    if missing:
        pytest.fail(
            f"the getting-started walkthrough needs {', '.join(missing)}: install them "
            f"(apt-get install {' '.join(missing)}, brew install {' '.join(missing)})"
        )


def _outputs(stdout: str) -> dict[int, list[str]]:
    """Each block's output lines, by block number, from the markers around the blocks."""
    outputs: dict[int, list[str]] = {}
    current: int | None = None
    for line in stdout.splitlines():
        if line.startswith(f"{MARK} start "):
            current = int(line.rsplit(" ", 1)[1])
            outputs[current] = []
        elif line.startswith(f"{MARK} end "):
            current = None
        elif current is not None:
            outputs[current].append(line)
    return outputs


def test_getting_started_runs_against_a_live_server(
    app: Flask, live_server: str, celery_worker: object, tmp_path: Path
) -> None:
    _require_tools()
    blocks = shell_blocks(WALKTHROUGH.read_text())
    assert len(blocks) >= 8, "getting-started.md lost its sh blocks"
    script = ["set -euo pipefail"]
    for number, block in enumerate(blocks, start=1):
        script += [f"echo '{MARK} start {number}'", block, f"echo '{MARK} end {number}'"]
    # What the walkthrough wrote, to compare with what its last block read back.
    script.append(f'printf "%s\\n" "{MARK} written $SECRET_VALUE"')
    environment = {
        **os.environ,
        "GATEHOUSE": live_server,
        "ROOT_API_KEY": ROOT_KEY,
        "NO_PROXY": "127.0.0.1,localhost",
    }
    # A folder of its own: no instance/secrets.json there, so ROOT_API_KEY must come
    # from the environment, as the page says.
    run = subprocess.run(
        ["bash", "-c", "\n".join(script)],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=180,
    )
    outputs = _outputs(run.stdout)
    finished = [n for n in outputs if f"{MARK} end {n}" in run.stdout]
    failed = next((n for n in range(1, len(blocks) + 1) if n not in finished), None)
    assert run.returncode == 0 and failed is None, (
        f"block {failed} of getting-started.md failed (exit {run.returncode}):\n"
        f"{blocks[(failed or 1) - 1]}\n--- its output ---\n"
        + "\n".join(outputs.get(failed or 1, []))
        + f"\n--- stderr ---\n{run.stderr}"
    )

    written = run.stdout.rsplit(f"{MARK} written ", 1)[1].strip()
    read_back = [line for line in outputs[len(blocks)] if line.strip()]
    assert written, "the walkthrough wrote an empty secret"
    assert read_back == [written], (read_back, written)

    # Each value read queues a `secret.value_read` audit event for the worker. Wait for
    # them, so the next test's clean-up does not race the worker.
    reads = sum(len(re.findall(r"/secrets/\S+/value", block)) for block in blocks)
    assert factories.wait_for_value_read_audits(app, reads) == reads


# --- links ---------------------------------------------------------------------------

LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t]*#*[ \t]*$", re.M)
INLINE_CODE = re.compile(r"`[^`\n]*`")


def _documents() -> Iterator[Path]:
    yield ROOT / "README.md"
    yield ROOT / "bench" / "README.md"
    yield from sorted((ROOT / "docs").rglob("*.md"))


def _prose(markdown: str) -> str:
    """The text without fenced blocks and code spans, where a `[x](y)` is no link."""
    return INLINE_CODE.sub("", FENCE.sub("", markdown))


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: the text of code spans and links, lower case,
    punctuation dropped except `-` and `_`, spaces as hyphens."""
    text = re.sub(r"`([^`]*)`", r"\1", heading)
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


def anchors(markdown: str) -> set[str]:
    """Every heading anchor of a Markdown text; repeated headings get -1, -2 …"""
    seen: dict[str, int] = {}
    found: set[str] = set()
    for heading in HEADING.findall(FENCE.sub("", markdown)):
        slug = _slug(heading)
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def test_slugs_follow_github() -> None:
    assert _slug("`POST /oauth/token`") == "post-oauthtoken"
    assert _slug("Runbook: Redis is down") == "runbook-redis-is-down"
    assert _slug("Keys, tokens & sessions (v2)") == "keys-tokens--sessions-v2"
    assert anchors("# A\n## A\n```sh\n# not a heading\n```\n") == {"a", "a-1"}


def test_every_relative_link_resolves() -> None:
    broken = []
    for document in _documents():
        text = document.read_text()
        for target in LINK.findall(_prose(text)):
            if re.match(r"[a-z][a-z0-9+.-]*:", target, re.I):
                continue  # http:, https:, mailto: are not checked here
            path, _, anchor = target.partition("#")
            file = (document.parent / path).resolve() if path else document
            where = f"{document.relative_to(ROOT)} -> {target}"
            if not file.exists():
                broken.append(f"{where}: no such file")
            elif anchor and (file.suffix != ".md" or anchor not in anchors(file.read_text())):
                broken.append(f"{where}: no heading #{anchor} in {file.name}")
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_the_readme_stays_short() -> None:
    lines = (ROOT / "README.md").read_text().count("\n")
    assert lines <= 200, f"README.md has {lines} lines; move the detail to docs/"


LOG_LEVELS = {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}


def test_every_setting_has_a_row_in_configuration() -> None:
    names = set()
    for source in ("config.py", "gunicorn.conf.py"):
        names |= set(re.findall(r'"([A-Z][A-Z0-9_]{2,})"', (ROOT / source).read_text()))
    table = (ROOT / "docs" / "configuration.md").read_text()
    rows = {line for line in table.splitlines() if line.startswith("| `")}
    first_cells = " ".join(line.split(" | ", 1)[0] for line in rows)
    missing = sorted(name for name in names - LOG_LEVELS if f"`{name}`" not in first_cells)
    assert not missing, f"docs/configuration.md has no row for {', '.join(missing)}"
