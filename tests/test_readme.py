"""Every command in README.md and the docs (docs/*.md) runs, in order, on tiny data, so they cannot rot.

The pages run in one workspace in the site's order: README.md, then mkdocs.yml's nav (a later tutorial uses
what an earlier one made: ``prepared/``, ``runs/w1-weak``). Commands come from the ```bash and ```python blocks;
a block shown but not run is marked ```sh, ```py or left plain (outputs, layouts, a script that needs a screen).
Each ``blurlatent`` line runs in-process with
overrides appended that shrink it to test size (click keeps the last value of a repeated option):
tiny synthetic fields, 32-px crops, a [4, 8, 8] model, one epoch, the CPU. The "download" the README
talks about (``BBBC006/``) is a tiny synthetic set in the same layout, and ``z00.tif``/``z08.tif``/
``z16.tif`` are planes of one of its fields.

Not run here, each for a stated reason (see SKIPPED): ``make``/``pip`` (CI itself runs them: .ci/run
is ``make test``), ``blurlatent demo`` (tests/test_demo.py runs it), benchmarks (minutes, printed
figures), ``examples/reproduce_paper.sh`` (its commands are spelled out in docs/tutorials/paper.md and run here),
shell set-up for the FID weights (needs the internet) and lines holding a ``/path/to/`` placeholder.
``torchrun`` lines run as one node with 2 CPU processes (gloo) instead of the cluster they name.

Also here: README.md stays short (≤ 200 lines), and every relative link of README.md and the docs names a file
that exists (``mkdocs build --strict`` in ``make test`` checks the docs' links and anchors too).
"""

from __future__ import annotations

import glob
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
README_MAX_LINES = 200

SKIPPED = {
    "make": "CI runs it (.ci/run is `make test`)",
    "pip": "CI installs the package this way",
    "curl": "needs the internet (FID weights)",
    "sha256sum": "FID weights set-up",
    "mkdir": "FID weights set-up",
    "cp": "FID weights set-up",
    "examples/reproduce_paper.sh": "its commands are spelled out in docs/tutorials/paper.md and run here",
}
SIZE = {
    "synth": ["--fields", "10", "--size", "64x64", "--workers", "1"],
    "prepare": ["--crop", "32", "--workers", "1"],
    "blur": ["--device", "cpu"],
    "deblur": ["--device", "cpu"],
    "evaluate": ["--device", "cpu", "--force"],
}
TINY_TRAIN = ["--epochs", "1", "--widths", "4,8,8", "--batch-size", "8", "--device", "cpu", "--force"]


def nav_pages(nav) -> list[str]:
    """The docs pages of mkdocs.yml's nav, in its order (paths relative to docs/)."""
    if isinstance(nav, str):
        return [nav]
    if isinstance(nav, list):
        return [page for item in nav for page in nav_pages(item)]
    return [page for value in nav.values() for page in nav_pages(value)]


def pages() -> list[Path]:
    """README.md, then every docs page in the site's order."""
    nav = yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"]
    return [README, *(DOCS / page for page in nav_pages(nav))]


def readme_commands() -> list[tuple[str, str, str]]:
    """(page, kind, text) for every command: kind 'bash' (one logical line) or 'python' (a whole block)."""
    commands = []
    for page in pages():
        name = str(page.relative_to(ROOT))
        for lang, body in re.findall(r"```(bash|python)\n(.*?)```", page.read_text(), flags=re.S):
            if lang == "python":
                commands.append((name, "python", body))
                continue
            body = body.replace("\\\n", " ")
            for line in body.splitlines():
                line = line.split(" #", 1)[0].strip() if not line.lstrip().startswith("#") else ""
                if line:
                    commands.append((name, "bash", line))
    return commands


def test_every_docs_page_is_in_the_site_and_run():
    listed = {page.relative_to(DOCS).as_posix() for page in pages()[1:]}
    on_disk = {page.relative_to(DOCS).as_posix() for page in DOCS.rglob("*.md")}
    assert on_disk == listed, (f"docs pages missing from mkdocs.yml's nav: {sorted(on_disk - listed)}; "
                               f"nav pages with no file: {sorted(listed - on_disk)}")


def test_readme_is_short():
    lines = README.read_text().count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; move detail to docs/ (at most {README_MAX_LINES})"


LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


@pytest.mark.parametrize("page", [README, *sorted(DOCS.rglob("*.md"))], ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_name_files_that_exist(page):
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)  # code blocks hold no links
    targets = [t.split("#", 1)[0] for t in LINK.findall(text) if not re.match(r"[a-z]+:", t)]
    missing = [t for t in targets if t and not (page.parent / t).exists()]
    assert not missing, f"{page.relative_to(ROOT)} links to files that do not exist: {missing}"
    if page == README:
        assert any(t.startswith("docs/") for t in targets), "README.md should link to the docs pages"


def _expand(args: list[str], cwd: Path) -> list[str]:
    out = []
    for arg in args:
        if any(ch in arg for ch in "*?["):
            matches = sorted(glob.glob(str(cwd / arg)))
            assert len(matches) == 1, f"README glob {arg} matches {matches}"
            out.append(os.path.relpath(matches[0], cwd))
        else:
            out.append(arg)
    return out


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    from helpers.stack_data import make_stack, write_stack, write_stacks

    from blurlatent.bbbc006 import parse_bbbc_name
    from blurlatent.synth.generator import synthesize

    work = tmp_path_factory.mktemp("readme")
    synthesize(work / "BBBC006", fields=10, channels=("w1", "w2"), size=(64, 64), seed=1)
    for plane in (0, 8, 16):
        folder = work / "BBBC006" / f"BBBC006_v1_images_z_{plane:02d}"
        source = next(p for p in sorted(folder.iterdir()) if parse_bbbc_name(p.name).name == "a01_s1_w1")
        shutil.copy(source, work / f"z{plane:02d}.tif")
    shutil.copytree(ROOT / "examples", work / "examples")
    write_stacks(work / "my-stacks", [16, 17, 16, 17, 16], planes=34)  # "Your own data": focus 16-17 of 0..33
    write_stack(work / "my-stacks" / "field1.ome.tif", make_stack(16, 34, 2, seed=9))  # the deblur example's
    return work


def _run_train_like(args: list[str], resumes: dict[str, int]) -> list[str]:
    if "--resume" in args:
        run = args[args.index("--resume") + 1]
        resumes[run] = resumes.get(run, 0) + 1
        return args + ["--epochs", str(1 + resumes[run])]
    return args + TINY_TRAIN


@pytest.mark.slow
def test_every_readme_command_runs(workspace, monkeypatch):
    from blurlatent.cli import app

    commands = readme_commands()
    assert len([c for c in commands if c[2].startswith("blurlatent")]) >= 25, "README and docs lost their commands?"
    monkeypatch.chdir(workspace)
    runner = CliRunner()
    resumes: dict[str, int] = {}
    ran = 0
    for page, kind, text in commands:
        if kind == "python":
            exec(compile(text, page, "exec"), {"__name__": "readme"})
            ran += 1
            continue
        words = shlex.split(text)
        if (
            words[0] in SKIPPED
            or "/path/to/" in text
            or words[:2] == ["blurlatent", "demo"]
            or (words[0] == "python" and words[1].startswith("benchmarks/"))
        ):
            continue
        if words[0] == "torchrun":
            module = words.index("-m")
            args = _expand(words[module + 2 :], workspace)  # after "-m blurlatent"
            cmd = [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--standalone",
                "--nproc-per-node",
                "2",
                "-m",
                "blurlatent",
                *args,
                *TINY_TRAIN,
            ]
            done = subprocess.run(cmd, cwd=workspace, capture_output=True, text=True, timeout=300)
            assert done.returncode == 0, f"{text}\n{done.stderr[:3000]}\n…\n{done.stderr[-3000:]}"  # ranks' lines first
            ran += 1
            continue
        if words[0] == "python":
            done = subprocess.run(
                [sys.executable, *words[1:]], cwd=workspace, capture_output=True, text=True, timeout=300
            )
            assert done.returncode == 0, f"{text}\n{done.stderr[:3000]}\n…\n{done.stderr[-3000:]}"  # ranks' lines first
            ran += 1
            continue
        assert words[0] == "blurlatent", f"{page}: command with no rule in this test: {text}"
        args = _expand(words[1:], workspace)
        command = next((a for a in args if not a.startswith("-")), None)
        if command == "train":
            args = _run_train_like(args, resumes)
        else:
            args = args + SIZE.get(command, [])
        result = runner.invoke(app, args)
        assert result.exit_code == 0, f"{page}: {text}\nexit {result.exit_code}\n{result.output[-2000:]}"
        ran += 1
    assert ran >= 25
