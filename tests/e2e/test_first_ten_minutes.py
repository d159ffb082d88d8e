"""A newcomer's first ten minutes, in a fresh clone in a temporary folder, in the order they try
things: the README's run command (its install step, then `demo` for a few seconds), the README's
test command's install-and-check step (on one small test file, not the whole suite again), `up`
with nothing set, `up` with credentials and `api-key create` beside it with no URL set, and /docs
with its assets served by the API itself.

The commands are read from the README, so a README that drifts from what works fails here. The
only deviations: `--port 0` (this machine is shared; 8000 may be taken) and the upstream
credentials, which are placeholders (no call reaches AccuAuth in this test). This is the suite's
one install into a new virtualenv (about a minute, with pip's cache), hence `slow`.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

import httpx
import pytest

from tests.support.commands import CliProcess, clean_environment
from tests.support.embedded import folder_modes, remove_embedded_cluster

ROOT = Path(__file__).resolve().parents[2]
INSTALL_TIMEOUT_S = 300
CHECK_TIMEOUT_S = 300
API_LINE = r"API listening on (http://\S+)"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def readme_command(containing: str) -> str:
    """The README's indented command line (a code block) that contains `containing`."""
    for line in (ROOT / "README.md").read_text().splitlines():
        if line.startswith("    ") and containing in line:
            return line.strip()
    raise AssertionError(f"the README shows no command containing {containing!r}")


def readme_block(heading: str) -> str:
    """The first indented code block after the README's `heading` line, as written."""
    lines = (ROOT / "README.md").read_text().splitlines()
    start = lines.index(heading)
    block: list[str] = []
    for line in lines[start + 1 :]:
        if line.startswith("    "):
            block.append(line.removeprefix("    "))
        elif block and line.strip():
            break
        elif block:
            block.append("")
    assert block, f"no code block after {heading!r}"
    return "\n".join(block).strip() + "\n"


# Each curl of the README's API block also writes its status and URL to stderr, so the test
# sees every answer; the block itself runs as written, under `set -e`.
CURL_WITH_STATUS = (
    "curl() { command curl --write-out '%{stderr}ANSWER %{http_code} %{url_effective}\\n' "
    '"$@"; }\n'
)


def assert_the_readme_api_block_works(clone: Path, env: Mapping[str, str], api_url: str) -> None:
    """The README's API block, pasted in order: every command succeeds, the key it makes works
    on every call, no answer is a 5xx, and the only refusals are the ones the block says it
    makes (an id written `..._...` for the reader to fill in, the subscription to a host that
    does not resolve offline, which the block says answers 422, and the batch's invalid entry)."""
    block = readme_block("## API")
    assert "KEY=$(.venv/bin/phonebridge api-key create" in block
    ran = run_step(
        "set -e\n" + CURL_WITH_STATUS + block, clone, {**env, "PB": api_url}, CHECK_TIMEOUT_S
    )
    answers = re.findall(r"^ANSWER (\d{3}) (\S+)$", ran.stderr, re.MULTILINE)
    curls = sum(1 for line in block.splitlines() if line.lstrip().startswith("curl "))
    assert len(answers) == curls, ran.stderr
    for status, url in answers:
        if status.startswith("2"):
            continue
        said = (status == "404" and "..." in url) or (
            status == "422" and url.endswith("/v1/subscriptions")
        )
        assert said, (status, url, ran.stdout)


def run_step(
    command: str, clone: Path, env: Mapping[str, str], timeout_s: float
) -> subprocess.CompletedProcess[str]:
    finished = subprocess.run(
        ["bash", "-c", command],
        cwd=clone,
        env=dict(env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    assert finished.returncode == 0, (
        f"{command!r} exited {finished.returncode}\n"
        f"stdout:\n{finished.stdout[-3000:]}\nstderr:\n{finished.stderr[-3000:]}"
    )
    return finished


@pytest.fixture
def fresh_clone() -> Iterator[Path]:
    """A clone of this repository's committed state in a private (700) folder, as a root user's
    checkout would be: under root the embedded PostgreSQL runs as its own user, which can reach
    neither the virtualenv's programs nor the data directory there."""
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    parent = Path(tempfile.mkdtemp(prefix="phonebridge-newcomer-"))
    clone = parent / "phonebridge"
    try:
        subprocess.run(
            ["git", "clone", "--quiet", str(ROOT), str(clone)],
            check=True,
            capture_output=True,
            timeout=120,
        )
        yield clone
    finally:
        remove_embedded_cluster(clone / ".phonebridge")
        shutil.rmtree(parent, ignore_errors=True)


def seed_mypy_cache(clone: Path) -> None:
    """Give the clone mypy's cache of this tree, when there is one (scripts/test's checks run
    beside the suite and bring it up to date within its first minute, which is why this is done
    just before step 2, not when the clone is made; mypy replaces each cache file whole, so a
    copy made earlier holds fewer modules, never a torn one): a cold run over the whole tree
    costs about 22 s of CPU, a warm one about 1 s, for the same answer. mypy trusts a cached
    module only while its file's hash, mypy's version and options are unchanged, and finds
    every module again in the clone's own virtualenv, so a file that differs, or a stub package
    the clone lacks, is checked as in a cold run. What step 2 proves is unchanged: the test
    command installs the tools the run command did not, runs them, and they pass."""
    cache = ROOT / ".mypy_cache"
    if cache.is_dir():
        shutil.copytree(cache, clone / ".mypy_cache", ignore_dangling_symlinks=True)


@pytest.fixture
def newcomer_env() -> dict[str, str]:
    """A shell with no phonebridge variable and no virtualenv activated."""
    env = clean_environment()
    env.pop("VIRTUAL_ENV", None)
    env.pop("PYTHONPATH", None)
    return env


def test_a_newcomer_follows_the_readme_and_every_step_works(
    fresh_clone: Path, newcomer_env: dict[str, str]
) -> None:
    clone, env = fresh_clone, newcomer_env
    phonebridge = str(clone / ".venv" / "bin" / "phonebridge")
    modes = folder_modes(clone.parent)

    # 1. The run command: its install step, then the demo for a few seconds, then Ctrl-C.
    run_command = readme_command("phonebridge demo")
    *install_steps, demo_step = run_command.split(" && ")
    assert demo_step == ".venv/bin/phonebridge demo", run_command
    run_step(" && ".join(install_steps), clone, env, INSTALL_TIMEOUT_S)
    demo = CliProcess(["demo", "--port", "0"], env, clone, executable=phonebridge)
    try:
        demo.wait_for(
            r"submitted \d+ sample checks, registered \d+ task_ids and created a check job"
        )
        demo.wait_for(r"task sim-\S+: pending -> completed")
        assert demo.interrupt() == 0, demo.stderr_tail()
        assert demo.output.splitlines()[-1] == "phonebridge demo: stopped"
    finally:
        demo.kill_everything()
    assert folder_modes(clone.parent) == modes, "demo changed the mode of a folder above the clone"

    # 2. The test command after it: it installs the development tools the run command did not,
    # and runs the checks (then pytest on one small file, not the whole suite again).
    assert not (clone / ".venv" / "bin" / "ruff").exists()
    seed_mypy_cache(clone)
    test_command = readme_command("scripts/test")
    assert test_command == "scripts/test", test_command
    checked = run_step(
        f"{test_command} tests/unit/test_backoff.py -q -p no:cacheprovider",
        clone,
        env,
        CHECK_TIMEOUT_S,
    )
    assert "Success: no issues found" in checked.stdout
    assert re.search(r"\d+ passed", checked.stdout), checked.stdout[-2000:]

    # 3. `up` with nothing set: one line that names what is missing, and a non-zero exit.
    refused = subprocess.run(
        [phonebridge, "up", "--port", "0"],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert refused.returncode != 0
    assert refused.stdout == ""
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1, refused.stderr
    assert "PHONEBRIDGE_UPSTREAM_API_ID" in lines[0]

    # 4. `up` with credentials, and `api-key create` beside it without any URL: a key.
    credentials = {
        **env,
        "PHONEBRIDGE_UPSTREAM_API_ID": "newcomer-api-id",
        "PHONEBRIDGE_UPSTREAM_API_SECRET": "newcomer-api-secret",
    }
    up = CliProcess(["up", "--port", "0"], credentials, clone, executable=phonebridge)
    try:
        api_url = up.wait_for(API_LINE).group(1)
        created = subprocess.run(
            [phonebridge, "api-key", "create", "--name", "acme"],
            cwd=clone,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert created.returncode == 0, created.stderr
        key = created.stdout.strip()
        assert re.fullmatch(r"pbk_[A-Za-z0-9_-]+", key), created.stdout
        assert "using the embedded servers" in created.stderr
        listed = httpx.get(
            f"{api_url}/v1/tasks", headers={"authorization": f"Bearer {key}"}, timeout=10
        )
        assert listed.status_code == 200

        # 5. The README's API block, pasted in order against that API.
        assert_the_readme_api_block_works(clone, env, api_url)

        # 6. /docs, with every script and style it loads served by the API itself.
        assert_docs_work_offline(api_url)
        assert up.interrupt() == 0, up.stderr_tail()
    finally:
        up.kill_everything()
    assert folder_modes(clone.parent) == modes, "up changed the mode of a folder above the clone"


def assert_docs_work_offline(api_url: str) -> None:
    page = httpx.get(f"{api_url}/docs", timeout=10)
    assert page.status_code == 200
    assets = re.findall(r"""(?:src|href)=["']([^"']+)["']""", page.text)
    assert any(asset.endswith(".js") for asset in assets), page.text
    assert "://" not in page.text.replace(api_url, "")
    for asset in assets:
        assert asset.startswith("/"), asset
        assert httpx.get(f"{api_url}{asset}", timeout=10).status_code == 200, asset


def test_the_readme_says_what_the_newcomer_test_does() -> None:
    assert "tests/e2e/test_first_ten_minutes.py" in (ROOT / "README.md").read_text()
