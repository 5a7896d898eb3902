"""The bad-input matrix's machinery: the row type, the fixtures every row runs against, the row runner and
the README table (shared by ``test_bad_inputs.py`` and its siblings ``test_bad_inputs_*.py``).

A row's ``argv`` is a command line whose ``{name}`` fields are the fixture paths built once per module
(``build_paths``) plus ``{work}``, a fresh folder per row where outputs go. ``expect`` lists substrings of
the one-line message: first what it names (file, option, value), then the fix it suggests. For every
failing row the file listing (names, sizes, mtimes, hidden temps included) of ``{work}`` and of every
module fixture must be unchanged. Rows with code 0 must WORK.
"""

from __future__ import annotations

import importlib
import os
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parents[1]
README = HERE / "README.md"
PLANES = list(range(0, 17, 2))
SUBSET = [0, 8, 16]  # the planes the bad-source variants carry (rows pass --planes 0,8,16)
TINY = [4, 8, 8]


@dataclass(frozen=True)
class Case:
    id: str
    input: str  # what is wrong, in words (README)
    argv: str  # command line after `blurlatent`, with {placeholders}
    code: int  # 2 usage error, 1 runtime failure, 0 must work
    expect: tuple[str, ...]  # in the message: the thing named, then the fix
    setup: str | None = None  # a function of SETUPS that puts something into {work} first
    makes: tuple[str, tuple[int, ...]] | None = None  # code-0 rows: (output path, its array shape)


PREP = "--planes 0,8,16 --crop 32 --workers 1 --channels w1"
TRAIN = "--device cpu --epochs 1 --arch paper --widths 4,8,8 --batch-size 4 --amp off"
PAIR = "{bad}/sharp.tif {bad}/blurry.tif"
BLUR = "-c {ckpt} --alpha 0.5 -o {work}/out.tif --device cpu"
DEBLUR = "-c {ckpt} --alpha 0.5 -o {work}/out.tif --device cpu"
EVAL = "-c {ckpt} --out {work}/report --device cpu"
SYNTH = "--fields 1 --planes 16 --size 32x32 --channels w1 --workers 1"

# --- per-row setups: what a row needs in {work} before it runs --------------------------------------


def user_folder(work: Path, paths: dict) -> None:
    (work / "out").mkdir()
    (work / "out" / "notes.txt").write_text("the user's own notes\n")


def existing_out(work: Path, paths: dict) -> None:
    shutil.copy(paths["bad"] / "sharp.tif", work / "out.tif")


def store_copy(work: Path, paths: dict) -> None:
    shutil.copytree(paths["store"], work / "store")


def run_folder(work: Path, paths: dict) -> None:
    from blurlatent.training.run_folder import mark_run

    (work / "run").mkdir()
    mark_run(work / "run")  # a run's output marker, then what it logged
    (work / "run" / "metrics.jsonl").write_text('{"epoch": 1}\n')


def unstarted_run(work: Path, paths: dict) -> None:
    from blurlatent.training.run_folder import mark_run

    (work / "run").mkdir()
    # what a run writes before its first checkpoint: its marker, an empty metrics.jsonl and its config
    mark_run(work / "run")
    (work / "run" / "metrics.jsonl").write_text("")
    (work / "run" / "config.yaml").write_text("seed: 0\n")


def report_folder(work: Path, paths: dict) -> None:
    from blurlatent.files.output_folders import write_marker

    (work / "report").mkdir()  # an earlier report, signed by its output marker
    (work / "report" / "report.json").write_text('{"format_version": 1}\n')
    write_marker(work / "report", "evaluate")


def demo_folder(work: Path, paths: dict) -> None:
    from blurlatent.demo import DEMO_FILES, NESTED
    from blurlatent.files.output_folders import write_marker

    (work / "demo").mkdir()  # an earlier demo, signed by its output marker
    (work / "demo" / "demo.json").write_text('{"checks": {}}\n')
    write_marker(work / "demo", "demo", DEMO_FILES, nested=NESTED)


def read_only(work: Path, paths: dict) -> None:
    if os.geteuid() == 0:
        pytest.skip(
            "running as root: folder permissions do not stop root; the *-under-file rows cover unwritable targets"
        )
    (work / "ro").mkdir()
    (work / "ro").chmod(0o555)


# --- outputs (issue 11): inputs behind links, folders that only look like ours, all-or-nothing folder mode ---


def input_links(work: Path, paths: dict) -> None:
    """in.tif, a hard link and a symbolic link to it, and a symbolic link to nothing."""
    shutil.copy(paths["bad"] / "sharp.tif", work / "in.tif")
    os.link(work / "in.tif", work / "hard.tif")
    (work / "soft.tif").symlink_to(work / "in.tif")
    (work / "dangling.tif").symlink_to(work / "missing.tif")


def pairs_bad_last(work: Path, paths: dict) -> None:
    """Folder mode: pairs a and m are fine, pair z (sorted last) has images of two sizes."""
    for name, blurry in (("a", "blurry.tif"), ("m", "blurry.tif"), ("z", "small.tif")):
        (work / "s").mkdir(exist_ok=True)
        (work / "b").mkdir(exist_ok=True)
        shutil.copy(paths["bad"] / "sharp.tif", work / "s" / f"{name}.tif")
        shutil.copy(paths["bad"] / blurry, work / "b" / f"{name}.tif")


def pairs_named_like_outputs(work: Path, paths: dict) -> None:
    """Folder mode: field a's output name a_a0.500.tif is also an input file of field a_a0.500."""
    for folder, source in (("s", "sharp.tif"), ("b", "blurry.tif")):
        (work / folder).mkdir()
        for name in ("a.tif", "a_a0.500.tif"):
            shutil.copy(paths["bad"] / source, work / folder / name)


def int32_pair(work: Path, paths: dict) -> None:
    import tifffile

    image = tifffile.imread(paths["bad"] / "sharp.tif").astype(np.int32)
    tifffile.imwrite(work / "a.tif", image)
    tifffile.imwrite(work / "b.tif", image[::-1].copy())


def manifest_lookalike(work: Path, paths: dict) -> None:
    (work / "store").mkdir()  # issue 11, data loss 2: someone's manifest.json beside their README
    (work / "store" / "manifest.json").write_text("{}\n")
    (work / "store" / "README.md").write_text("keep\n")


def report_lookalike(work: Path, paths: dict) -> None:
    (work / "report").mkdir()  # report.json and report.md, but not a report's (no format_version)
    (work / "report" / "report.json").write_text("{}\n")
    (work / "report" / "report.md").write_text("my own report\n")


def report_with_notes(work: Path, paths: dict) -> None:
    report_folder(work, paths)  # issue 11, data loss 3: an earlier report with the user's notes in it
    (work / "report" / "notes.md").write_text("keep\n")


def user_config(work: Path, paths: dict) -> None:
    (work / "run").mkdir()  # issue 11, data loss 4: a user's own config.yaml, not a run
    (work / "run" / "config.yaml").write_text("seed: 1\n")


def user_config_metrics(work: Path, paths: dict) -> None:
    user_config(work, paths)  # ... beside an empty metrics.jsonl: still not provably a run
    (work / "run" / "metrics.jsonl").write_text("")


def finished_run(work: Path, paths: dict) -> None:
    run_folder(work, paths)  # an earlier run, with its checkpoints
    for name in ("last.pt", "best.pt"):
        shutil.copy(paths["ckpt"], work / "run" / name)


def demo_user_data(work: Path, paths: dict) -> None:
    demo_folder(work, paths)  # issue 11, data loss 1: an earlier demo whose synthetic/ holds the user's file
    (work / "demo" / "synthetic").mkdir()
    (work / "demo" / "synthetic" / "mine.txt").write_text("keep\n")


# --- robustness (issue 11): special files, crafted TIFFs and zips, a store changed after prepare ----------------


def fifos(work: Path, paths: dict) -> None:
    """fifo.tif, fifo.pt and fifo.yaml: named pipes. A reader that blocks on one (the bug) is set free after
    5 s by a writer that opens and closes it, so the row fails on its message instead of hanging the run."""
    import threading

    names = [work / name for name in ("fifo.tif", "fifo.pt", "fifo.yaml")]
    for fifo in names:
        os.mkfifo(fifo)

    def release():
        for fifo in names:
            try:
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:  # nobody reading it: the command refused it, as it should
                pass

    timer = threading.Timer(5.0, release)
    timer.daemon = True
    timer.start()


def two_series(work: Path, paths: dict) -> None:
    import tifffile

    image = tifffile.imread(paths["bad"] / "sharp.tif")
    with tifffile.TiffWriter(work / "two_series.tif") as tif:
        tif.write(image)
        tif.write(image[:16, :16])  # a second image (a thumbnail, another channel) tifffile would not read


def zip_bomb(work: Path, paths: dict) -> None:
    """{work}/zips: the plane zips of {src}, the a01_s1 w1 image of plane 0 replaced by 70 MiB of zeros (~70 KB
    deflated): a member that inflates ~1000 times."""
    zip_planes(paths["src"], work / "zips")
    first = next((paths["src"] / "BBBC006_v1_images_z_00").glob("*_a01_s1_w1*.tif"))
    plane0 = work / "zips" / "BBBC006_v1_images_z_00.zip"
    with zipfile.ZipFile(plane0) as archive:
        members = {i.filename: archive.read(i) for i in archive.infolist()}
    with zipfile.ZipFile(plane0, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            if first.name in name:
                with archive.open(name, "w") as member:
                    for _ in range(70):
                        member.write(bytes(1 << 20))
            else:
                archive.writestr(name, data)


def changed_store(work: Path, paths: dict) -> None:
    """{work}/store: a copy of {store} with one byte of w1_train.npy changed (same size), as a bad disk or a stray
    write would: its manifest still matches {src}, so prepare used to call it up to date."""
    shutil.copytree(paths["store"], work / "store")
    file = work / "store" / "w1_train.npy"
    data = bytearray(file.read_bytes())
    data[len(data) // 2 + 7] ^= 0xFF
    file.write_bytes(bytes(data))


def two_channels(work: Path, paths: dict) -> None:
    """{work}/two_channels.ome.tif: a ZCYX OME-TIFF, 3 planes of channels DAPI and GFP."""
    import tifffile

    image = tifffile.imread(paths["bad"] / "sharp.tif")
    data = np.stack([np.stack([image, image[::-1]])] * 3)
    tifffile.imwrite(work / "two_channels.ome.tif", data, ome=True, photometric="minisblack",
                     metadata={"axes": "ZCYX", "Channel": {"Name": ["DAPI", "GFP"]}})


def stacks_bad_last(work: Path, paths: dict) -> None:
    """Folder of stacks: a.tif and m.tif are 3-plane stacks, z.tif (sorted last) a single plane."""
    (work / "stacks").mkdir()
    for name in ("a", "m"):
        shutil.copy(paths["bad"] / "pages.tif", work / "stacks" / f"{name}.tif")
    shutil.copy(paths["bad"] / "sharp.tif", work / "stacks" / "z.tif")


SETUPS = {
    "user_folder": user_folder,
    "existing_out": existing_out,
    "store_copy": store_copy,
    "run_folder": run_folder,
    "unstarted_run": unstarted_run,
    "report_folder": report_folder,
    "demo_folder": demo_folder,
    "read_only": read_only,
    "input_links": input_links,
    "pairs_bad_last": pairs_bad_last,
    "pairs_named_like_outputs": pairs_named_like_outputs,
    "int32_pair": int32_pair,
    "manifest_lookalike": manifest_lookalike,
    "report_lookalike": report_lookalike,
    "report_with_notes": report_with_notes,
    "user_config": user_config,
    "user_config_metrics": user_config_metrics,
    "finished_run": finished_run,
    "demo_user_data": demo_user_data,
    "fifos": fifos,
    "two_series": two_series,
    "zip_bomb": zip_bomb,
    "changed_store": changed_store,
    "two_channels": two_channels,
    "stacks_bad_last": stacks_bad_last,
}


# --- module fixtures: good data once, and every bad input beside it ----------------------------------


def write_tif(path: Path, array) -> None:
    import tifffile

    tifffile.imwrite(path, array)


def field_file(folder: Path, plane: int, field: str) -> Path:
    return next((folder / f"BBBC006_v1_images_z_{plane:02d}").glob(f"*_{field}_w1*.tif"))


def source_variant(src: Path, dst: Path, plane: int, field: str, mutate) -> None:
    """A copy of planes 0, 8, 16 of ``src`` with one file of ``field`` at ``plane`` replaced."""
    for p in SUBSET:
        shutil.copytree(src / f"BBBC006_v1_images_z_{p:02d}", dst / f"BBBC006_v1_images_z_{p:02d}")
    mutate(field_file(dst, plane, field))


def zip_planes(src: Path, dst: Path, drop: str | None = None) -> None:
    dst.mkdir()
    for p in SUBSET:
        folder = src / f"BBBC006_v1_images_z_{p:02d}"
        with zipfile.ZipFile(dst / f"{folder.name}.zip", "w") as archive:
            for file in sorted(folder.iterdir()):
                if drop and p == 8 and drop in file.name:
                    continue  # the member a broken download lost
                archive.write(file, f"{folder.name}/{file.name}")


class Plant:
    """Unpickling this opens (creates) a file: the stand-in for code hidden in a checkpoint."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def build_paths(tmp_path_factory) -> dict:
    """Good data and every bad input beside it, built once per matrix module."""
    import tifffile
    import torch
    from PIL import Image

    from blurlatent.config import ModelConfig
    from blurlatent.nets.autoencoder import Autoencoder
    from blurlatent.nets.checkpoint import save_checkpoint
    from blurlatent.prepare.builder import prepare
    from blurlatent.synth.generator import synthesize
    from helpers.stack_data import write_stacks

    root = tmp_path_factory.mktemp("matrix")
    src = root / "bbbc"
    synthesize(src, fields=6, channels=["w1"], planes=PLANES, size=(64, 48), seed=3, workers=1)
    prepare(src, root / "store", channels=["w1"], planes=PLANES, crop=32, workers=1)
    prepare(src, root / "store_no16", channels=["w1"], planes=[0, 2, 4, 6, 8], crop=32, workers=1)
    shutil.copytree(root / "store", root / "store_damaged")
    array = (root / "store_damaged" / "w1_train.npy").read_bytes()
    (root / "store_damaged" / "w1_train.npy").write_bytes(array[: len(array) // 2])  # a disk that filled up

    torch.manual_seed(0)
    ckpt = root / "tiny.pt"
    config = {"model": {"widths": TINY}, "data": {"normalize": "minmax"}}
    state = Autoencoder(ModelConfig(widths=TINY)).state_dict()
    save_checkpoint(ckpt, {"config": config, "model": state, "epoch": 0})
    save_checkpoint(
        root / "tiny_shape.pt",
        {"config": config, "model": Autoencoder(ModelConfig(widths=[4, 8, 16])).state_dict(), "epoch": 0},
    )
    data = ckpt.read_bytes()
    (root / "tiny_trunc.pt").write_bytes(data[: len(data) // 2])
    torch.save(
        {"format_version": 1, "config": config, "model": state, "note": Plant(str(root / "planted.txt"))},
        root / "tiny_pickle.pt",
    )
    torch.save(state, root / "tiny_bare.pt")

    bad = root / "bad"
    bad.mkdir()
    (bad / "empty").mkdir()
    (bad / "text.tif").write_text("not an image\n")
    rng = np.random.default_rng(0)
    good = (100 + 900 * rng.random((48, 64))).astype(np.uint16)
    write_tif(bad / "sharp.tif", good)
    write_tif(bad / "blurry.tif", good[::-1].copy())
    write_tif(bad / "small.tif", good[:40])
    write_tif(bad / "odd_a.tif", good[:45, :61])
    write_tif(bad / "odd_b.tif", good[3:48, 2:63])
    write_tif(bad / "rgb.tif", np.stack([good // 16] * 3, axis=-1).astype(np.uint8))
    Image.fromarray(np.stack([good // 16] * 3, axis=-1).astype(np.uint8), "RGB").save(bad / "rgb.png")
    tifffile.imwrite(bad / "pages.tif", np.stack([good] * 3), photometric="minisblack")  # 3 channels as 3 pages
    nan = good.astype(np.float32)
    nan[5, 7] = np.nan
    write_tif(bad / "nan.tif", nan)
    write_tif(bad / "px1.tif", np.ones((1, 1), np.uint16))
    full = (bad / "sharp.tif").read_bytes()
    (bad / "trunc.tif").write_bytes(full[: len(full) // 3])
    (bad / "unknown_key.yaml").write_text("optim:\n  lrate: 0.1\n")
    (bad / "wrong_type.yaml").write_text("optim:\n  epochs: ten\n")
    (bad / "not_yaml.yaml").write_text("optim: [1, 2\n  epochs: : 3\n")
    (bad / "plane20.yaml").write_text("data:\n  triplets: [[0, 8, 20]]\n")

    def truncate(f):
        f.write_bytes(f.read_bytes()[:300])

    source_variant(src, bad / "src_text", 8, "a02_s1", lambda f: f.write_text("<html>quota exceeded</html>"))
    source_variant(src, bad / "src_trunc", 8, "a02_s1", truncate)
    source_variant(
        src,
        bad / "src_rgb",
        8,
        "a02_s1",
        lambda f: tifffile.imwrite(f, np.stack([good // 16] * 3, -1).astype(np.uint8)),
    )
    source_variant(src, bad / "src_nan", 8, "a02_s1", lambda f: tifffile.imwrite(f, nan))
    source_variant(src, bad / "src_1x1", 0, "a01_s1", lambda f: tifffile.imwrite(f, np.ones((1, 1), np.uint16)))
    source_variant(src, bad / "src_size", 8, "a02_s1", lambda f: tifffile.imwrite(f, good[:40]))
    zip_planes(src, bad / "zip_missing", drop="_a01_s1_w1")
    (bad / "zip_wrong").mkdir()
    for p in SUBSET:
        with zipfile.ZipFile(bad / "zip_wrong" / f"BBBC006_v1_images_z_{p:02d}.zip", "w") as archive:
            archive.writestr("README.txt", "not the microscopy images")
            archive.writestr(f"BBBC006_v1_images_z_{p:02d}/image_{p:04d}.tif", full)
    zip_planes(src, bad / "zip_corrupt")
    (bad / "zip_corrupt" / "BBBC006_v1_images_z_00.zip").write_bytes(b"PK\x03\x04 truncated download")
    write_stacks(bad / "stacks", [3, 4, 3])  # a folder of one's own z-stacks (prepare --focus)
    (bad / "stacks_text").mkdir()
    (bad / "stacks_text" / "field one.tif").write_text("not a z-stack\n")

    return {
        "root": root,
        "src": src,
        "store": root / "store",
        "store_no16": root / "store_no16",
        "store_damaged": root / "store_damaged",
        "ckpt": ckpt,
        "ckpt_shape": root / "tiny_shape.pt",
        "ckpt_trunc": root / "tiny_trunc.pt",
        "ckpt_pickle": root / "tiny_pickle.pt",
        "ckpt_bare": root / "tiny_bare.pt",
        "bad": bad,
    }


def listing(*folders: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder under ``folders``, hidden temps included: path → (size, mtime_ns)."""
    seen = {}
    for folder in folders:
        for dirpath, dirnames, filenames in os.walk(folder):
            for name in dirnames + filenames:
                p = Path(dirpath) / name
                st = p.lstat()
                seen[str(p)] = (st.st_size if name in filenames else 0, st.st_mtime_ns if name in filenames else 0)
    return seen


def argv_of(case: Case, fields: dict) -> list[str]:
    # split before formatting, so a path with spaces stays one argument
    return [token.format(**fields) for token in case.argv.split()]


class Unresolved(dict):
    """A command's flag names (``cli.errors.flag_names``) that note each library parameter they lack."""

    def __init__(self, names: dict, missing: list):
        super().__init__(names)
        self.missing = missing

    def get(self, key, default=None):
        if key not in self:
            self.missing.append(key)
        return super().get(key, default)


def run_case(case: Case, paths: dict, tmp_path: Path, monkeypatch) -> None:
    """Run one row through the command line in-process and check its code, one-line message (every parameter it
    names spelled as one of the command's flags) and that nothing changed."""
    from typer.testing import CliRunner

    from blurlatent.cli import app
    from blurlatent.cli import errors as cli_errors

    unresolved: list[str] = []
    flag_names = cli_errors.flag_names
    monkeypatch.setattr(cli_errors, "flag_names", lambda ctx: Unresolved(flag_names(ctx), unresolved))

    work = tmp_path / "work"
    work.mkdir()
    cwd = tmp_path / "cwd"  # every path below is absolute: nothing may land in the working folder
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    fields = {**{k: str(v) for k, v in paths.items()}, "work": str(work)}
    if case.setup:
        SETUPS[case.setup](work, paths)
    before = listing(work, paths["root"])

    result = CliRunner().invoke(app, argv_of(case, fields))
    output = result.output
    assert "Traceback" not in output, output
    assert not unresolved, f"{case.argv.split()[0]} has no option for the library's {unresolved}: {output}"
    assert not any(cwd.iterdir()), f"wrote into the working folder: {sorted(p.name for p in cwd.iterdir())}"

    if case.code == 0:
        assert result.exit_code == 0, output
        import tifffile

        target, shape = case.makes
        assert tifffile.imread(target.format(**fields)).shape == shape
        return

    assert result.exit_code == case.code, output
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line, got {len(lines)}:\n{output}"
    assert lines[0].startswith("error:"), output
    try:  # typer's CliRunner keeps stderr apart (click >= 8.2 semantics); older click mixes it unless told
        stderr = result.stderr
    except ValueError:
        stderr = None
    if stderr is not None:
        assert lines[0] in stderr, "the error belongs on stderr"
    for needle in case.expect:
        assert needle.format(**fields) in lines[0], f"{needle!r} not in: {lines[0]}"
    after = listing(work, paths["root"])
    assert after == before, (
        f"files changed: added {sorted(set(after) - set(before))}, removed {sorted(set(before) - set(after))}, "
        f"modified {sorted(k for k in set(after) & set(before) if after[k] != before[k])}"
    )




# --- the README table, generated from CASES ------------------------------------------------------------

BEGIN, END = "<!-- matrix:begin (generated by `python tests/cli/test_bad_inputs.py`) -->", "<!-- matrix:end -->"


def cases_by_module() -> dict[str, list[Case]]:
    """The rows of every matrix module (``test_bad_inputs*.py``), by module, in file order."""
    matrix = sorted((HERE / "cli").glob("test_bad_inputs*.py"))
    return {path.name: importlib.import_module(path.stem).CASES for path in matrix}


def all_cases() -> list[Case]:
    return [case for cases in cases_by_module().values() for case in cases]


def counts_line() -> str:
    """How many rows, per matrix module and per command: the table's summary."""
    modules = ", ".join(f"{len(cases)} in `{name}`" for name, cases in cases_by_module().items())
    commands: dict[str, int] = {}
    for case in all_cases():
        commands[case.argv.split()[0]] = commands.get(case.argv.split()[0], 0) + 1
    per_command = ", ".join(f"{name} {n}" for name, n in sorted(commands.items()))
    return f"{len(all_cases())} rows: {modules}. Per command: {per_command}."


def readme_table() -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    rows = [counts_line(), "", "| input | command | expected message contains | exit |", "|---|---|---|---|"]
    for c in all_cases():
        message = " … ".join(f"`{e}`" for e in c.expect) if c.code else "works: writes the output at the input's size"
        rows.append(f"| {cell(c.input)} | `blurlatent {cell(c.argv)}` | {cell(message)} | {c.code} |")
    return "\n".join(rows)


def readme_section(text: str) -> str:
    return text.split(BEGIN, 1)[1].split(END, 1)[0].strip() if BEGIN in text and END in text else ""


def write_readme() -> None:
    text = README.read_text() if README.is_file() else ""
    section = f"{BEGIN}\n{readme_table()}\n{END}"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + section + rest.split(END, 1)[1]
    else:
        text = text.rstrip() + ("\n\n" if text else "") + section + "\n"
    README.write_text(text)
