"""`blurlatent evaluate`: the paper's Tables 1 and 2 and Figs 2/5/6/7, with classical baselines beside them.

For every test field (centre crops by default, whole fields with ``whole=True``) and every model:
encode all planes z_n = E(x_n), then

- blur synthesis (Eq. 2): z'_n = α_n z_T + (1 − α_n) z_F for each plane n strictly between the far plane F
  (the one furthest from focus, 0 in the paper) and the in-focus plane T = 16, α_n = (n − F)/(T − F);
- deblurring (Eq. 3): from (z_F, z_k) with α = (T − k)/(T − F), ẑ_T = z_k/(1 − α) − α/(1 − α)·z_F;
- latent geometry: LDS (Eq. 6) and APD (Eq. 7).

Every image goes through ``inference.Predictor``, the forward path ``blurlatent blur``/``deblur`` run (fused
BatchNorm, channels_last, padding, tiling, precision), so the report measures what users get.
Baselines (``baselines``) run on the same fields and truth. Scores are gathered per column by
``scores.ColumnScorer`` into a typed ``report.Report``, written as report.json, report.md and figures/*.png
into a temp folder renamed into place at the end.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from blurlatent.config import EvalConfig, InferenceConfig
from blurlatent.errors import Message, UsageError
from blurlatent.evaluation import metrics as M
from blurlatent.evaluation.baselines import BlurFit, apply_baselines, fit_baselines
from blurlatent.evaluation.columns import ColumnScorer, best_columns, fid_values
from blurlatent.evaluation.plan import Examples, LatentSamples, PlanePlan, plan_planes
from blurlatent.evaluation.report import (
    CheckpointInfo,
    FidInfo,
    Report,
    ReportConfig,
)
from blurlatent.evaluation.report_folder import check_report_folder, write_report_folder
from blurlatent.files.atomic import MB, disk_space, sha256_file, terminate_as_interrupt
from blurlatent.files.output_folders import FolderLock
from blurlatent.inference.predictor import Predictor, checkpoint_normalization
from blurlatent.nets.checkpoint import build_model, load_checkpoint
from blurlatent.nets.device import assign_device
from blurlatent.nets.latent import flatten_latent, interpolate_latents
from blurlatent.prepare.store import Store
from blurlatent.progress import progress_bar

log = logging.getLogger(__name__)

INCEPTION = "pytorch-fid InceptionV3 pool3 (2048-d)"
EMPTY_CROP_MAX = 8  # an in-focus test crop whose maximum is at most this (of 255) holds no cells


# --- which planes -----------------------------------------------------------------------------------






def plane_indices(store: Store, plan: PlanePlan) -> dict[int, int]:
    """Plane → its position on the store arrays' plane axis, for the planes of ``plan``."""
    return {p: store.plane_index(p) for p in plan.sequence}


# --- models: the Predictor's forward path -------------------------------------------------------------


@dataclass
class ModelOutputs:
    """One batch through one model. Images float32 in [0, 1], the input's size.

    z [B, P, C, h, w] (store plane order; a multiscale latent flattened to [B, P, D], its scales concatenated,
    so LDS and APD score the whole code: Eq. 2 commutes with the concatenation), recon [B, P, H, W],
    z_synth [B, N, C, h, w] and synth [B, N, H, W] for plan.between, deblur [B, N, H, W] for the pairs (far, k),
    k in plan.between.
    """

    z: np.ndarray
    recon: np.ndarray
    z_synth: np.ndarray
    synth: np.ndarray
    deblur: np.ndarray


def deblur_images(predictor: Predictor, x: np.ndarray, plan: PlanePlan, index: dict[int, int]) -> np.ndarray:
    """float32 [B, N, H, W]: Eq. 3 on (x_far, x_k) for every k in plan.between, through
    ``Predictor.combine(..., "deblur")`` — the path of ``blurlatent deblur`` on the same two images.

    ``x``: float32 [B, P, H, W] in [0, 1] (store plane order); ``index``: plane → position on axis 1.
    """
    far = x[:, index[plan.far]]
    return np.stack([predictor.combine(far, x[:, index[k]], [plan.deblur_alpha(k)], "deblur")[:, 0]
                     for k in plan.between], 1)


def model_outputs(predictor: Predictor, x: np.ndarray, plan: PlanePlan, index: dict[int, int]) -> ModelOutputs:
    """Encode every plane of ``x`` (float32 [B, P, H, W] in [0, 1]), synthesize blur (Eq. 2), deblur (Eq. 3).

    Codes and reconstructions come from ``Predictor.encode``/``decode``; synthesized and deblurred images
    from ``Predictor.combine`` (padded, tiled when large), as ``blurlatent blur``/``deblur`` make them.
    """
    b, p, h, w = x.shape
    z = predictor.encode(x.reshape(b * p, h, w))
    recon = predictor.decode(z, (h, w)).reshape(b, p, h, w)
    z = flatten_latent(z)  # a multiscale latent as one concatenated code per image: LDS/APD over all scales
    z = z.reshape(b, p, *z.shape[1:])
    zf, zt = z[:, index[plan.far]], z[:, index[plan.target]]
    alphas = [plan.synth_alpha(n) for n in plan.between]
    z_synth = np.stack([interpolate_latents(zt, zf, a) for a in alphas], 1)
    synth = predictor.combine(x[:, index[plan.target]], x[:, index[plan.far]], alphas, "blur")
    return ModelOutputs(z=z, recon=recon, z_synth=z_synth, synth=synth, deblur=deblur_images(predictor, x, plan, index))


def load_predictor(path: Path, name: str, device: Any,
                   batch_size: int = EvalConfig.batch_size) -> tuple[Predictor, CheckpointInfo]:
    """The checkpoint at ``path`` as a Predictor on ``device`` (fp32, fused BatchNorm, images per model call
    ``batch_size``) and its report entry. Raises UsageError for a missing, corrupt or foreign checkpoint."""
    ckpt = load_checkpoint(path)
    model = build_model(ckpt, str(path)).to(device)
    config = InferenceConfig(device=str(device), batch_size=batch_size)
    predictor = Predictor(model, checkpoint_normalization(ckpt, str(path)), config=config, source=str(path))
    norm = (ckpt["config"].get("data") or {}).get("normalize")
    info = CheckpointInfo(name=name, path=str(path), sha256=sha256_file(path), epoch=ckpt.get("epoch"),
                          config=ckpt["config"], normalize=norm)
    return predictor, info


def load_models(checkpoints: Sequence[str | Path], device: Any, batch_size: int, store_normalize: str | None,
                channel: str | None = None) -> tuple[list[Predictor], list[CheckpointInfo]]:
    """``load_predictor`` for each checkpoint, under ``column_names``; warns when a checkpoint was trained on
    data normalized otherwise than the store, or on another channel than ``channel``."""
    paths = [Path(c) for c in checkpoints]
    named = zip(paths, column_names(paths), strict=True)
    loaded = [load_predictor(path, name, device, batch_size) for path, name in named]
    for _, info in loaded:
        if info.normalize is not None and store_normalize is not None and info.normalize != store_normalize:
            log.warning("%s was trained on %r-normalized data but the store is %r; numbers may not transfer",
                        info.path, info.normalize, store_normalize)
        trained = (info.config.get("data") or {}).get("channel")
        if channel is not None and trained is not None and trained != channel:
            log.warning(Message(f"{info.path} was trained on channel {trained} but is evaluated on {channel} (nuclei "
                                "and cell structure look different); numbers may not transfer: evaluate with "
                                f"{{channel={trained}}} to match", "channel"))
    return [p for p, _ in loaded], [i for _, i in loaded]


def column_names(paths: Sequence[Path]) -> list[str]:
    """Short unique column names: the file stem, or parent/stem when stems collide (runs/weak/best.pt)."""
    stems = [p.stem for p in paths]
    names = [f"{p.parent.name}/{p.stem}" if stems.count(p.stem) > 1 else p.stem for p in paths]
    seen: dict[str, int] = {}
    for i, n in enumerate(names):
        if names.count(n) > 1:
            seen[n] = seen.get(n, 0) + 1
            names[i] = f"{n}#{seen[n]}"
    return names


def field_labels(store: Store, channel: str, count: int) -> list[str]:
    """A name per row of the test array: the field (``a01_s1``), with ``/cropJ`` when a field has several crops.

    Rows follow the manifest's per-field ``index`` (prepare writes field i at rows i·n .. (i+1)·n).
    """
    records = sorted(store.fields("test", channel), key=lambda r: r.get("index", 0))
    fields = [r.get("field", r.get("name", f"field{i}")) for i, r in enumerate(records)]
    if len(fields) == count:
        return fields
    if fields and count % len(fields) == 0:  # ten crops per field (prepare --test-crops ten)
        per = count // len(fields)
        return [f"{name}/crop{j}" for name in fields for j in range(per)]
    return [f"test{i}" for i in range(count)]


# --- the loop ---------------------------------------------------------------------------------------


@dataclass
class Batch:
    """Test fields ``start`` … of one batch: ``x`` float32 [B, P, H, W] in [0, 1] (store plane order),
    ``real`` [B, N, H, W] the planes between, ``truth`` [B, H, W] the target plane."""

    start: int
    names: list[str]
    x: np.ndarray
    real: np.ndarray
    truth: np.ndarray


def batches(data: np.ndarray, names: Sequence[str], batch_size: int, plan: PlanePlan,
            index: dict[int, int]) -> Iterator[Batch]:
    """``data`` (uint8 [fields, P, H, W]) as Batches of ``batch_size`` fields, scaled to [0, 1]."""
    between = [index[p] for p in plan.between]
    for start in range(0, len(data), batch_size):
        x = np.asarray(data[start : start + batch_size], dtype=np.float32) / 255.0
        yield Batch(start, list(names[start : start + batch_size]), x, x[:, between], x[:, index[plan.target]])


def _flat(stack: np.ndarray) -> np.ndarray:
    """[B, N, H, W] → [B·N, H, W]."""
    return stack.reshape(-1, *stack.shape[-2:])


@dataclass
class Evaluation:
    """One run's state: the columns' scorers, the FID features of the real planes, the kept examples."""

    plan: PlanePlan
    index: dict[int, int]
    models: list[ColumnScorer]
    fits: dict[int, BlurFit]
    extractor: M.Extractor | None
    device: Any
    examples: Examples
    latents: LatentSamples = field(default_factory=LatentSamples)
    real_features: list[np.ndarray] = field(default_factory=list)
    baselines: dict[str, ColumnScorer] = field(default_factory=dict)

    def __post_init__(self):
        if self.fits:
            self.baselines = {
                "gaussian": ColumnScorer("Gaussian blur (σ fitted)", "baseline", ("blur",)),
                "input": ColumnScorer("less-blurry input x_k", "baseline", ("deblur",)),
                "rl": ColumnScorer("Richardson–Lucy", "baseline", ("deblur",)),
                "wiener": ColumnScorer("Wiener", "baseline", ("deblur",)),
                "wiener2": ColumnScorer("two-plane Wiener", "baseline", ("deblur",)),
            }

    @property
    def columns(self) -> list[ColumnScorer]:
        return self.models + list(self.baselines.values())

    def _features(self, scorer: ColumnScorer | None, key: str, images: np.ndarray) -> None:
        """FID features of ``images`` [B, N, H, W] for ``scorer`` (None: the real planes); nothing without FID."""
        if self.extractor is None:
            return
        feats = M.extract_features(_flat(images), self.extractor, device=self.device)
        if scorer is None:
            self.real_features.append(feats)
        else:
            scorer.add_features(key, feats)

    def add_real(self, batch: Batch) -> None:
        self.examples.keep("real", batch.start, batch.x[:, [self.index[p] for p in self.plan.sequence]], batch.names)
        self._features(None, "real", batch.real)

    def add_baselines(self, batch: Batch) -> None:
        """Score the Gaussian blur, the less-blurry input, Richardson–Lucy, Wiener and the two-plane Wiener
        (far plane and x_k) on one batch."""
        if not self.fits:
            return
        far = batch.x[:, self.index[self.plan.far]]
        images = apply_baselines(self.fits, self.plan, batch.real, batch.truth, far)
        self.baselines["gaussian"].add_blur(batch.names, self.plan, images["gaussian"], batch.real)
        self._features(self.baselines["gaussian"], "synth", images["gaussian"])
        self.baselines["input"].add_deblur(batch.names, self.plan, batch.real, batch.truth)
        for key in ("rl", "wiener", "wiener2"):
            self.baselines[key].add_deblur(batch.names, self.plan, images[key], batch.truth)
        for key in ("gaussian", "rl", "wiener", "wiener2"):
            self.examples.keep(key, batch.start, images[key])

    def add_model(self, predictor: Predictor, scorer: ColumnScorer, batch: Batch) -> None:
        """Run one model on one batch and score blur synthesis, deblurring and latent geometry."""
        plan, index = self.plan, self.index
        seq, between = [index[p] for p in plan.sequence], [index[p] for p in plan.between]
        mo = model_outputs(predictor, batch.x, plan, index)
        recon_sharp = mo.recon[:, index[plan.target]]
        scorer.add_blur(batch.names, plan, mo.synth, batch.real, mo.recon[:, between])
        scorer.add_deblur(batch.names, plan, mo.deblur, batch.truth, recon_sharp)
        z_seq = mo.z[:, seq]
        # z' along the whole sequence: the endpoints are the encoder's own codes (α = 0 and 1 in Eq. 2)
        z_seq_interp = np.concatenate([z_seq[:, :1], mo.z_synth, z_seq[:, -1:]], 1)
        scorer.add_latent(batch.names, M.lds_per_field(mo.z_synth, mo.z[:, between]),
                          M.apd_per_field(z_seq_interp, z_seq), M.psnr_per_image(recon_sharp, batch.truth))
        self._features(scorer, "synth", mo.synth)
        self._features(scorer, "recon", mo.recon[:, between])
        for key, images in (("recon", mo.recon[:, seq]), ("synth", mo.synth), ("deblur", mo.deblur)):
            self.examples.keep(f"{scorer.name}:{key}", batch.start, images)
        self.latents.keep(scorer.name, z_seq)

    def report(self, config: ReportConfig, checkpoints: list[CheckpointInfo], fid_note: Message | None) -> Report:
        """The finished report: every column's result (with its FIDs) and the best column of each row."""
        fids = fid_values(self.columns, self.real_features, fid_note)
        columns = [c.result(self.plan, fids.get(c.name, {})) for c in self.columns]
        return Report(config=config, checkpoints=checkpoints, columns=columns, best=best_columns(columns))


def fit_train_baselines(train: np.ndarray, plan: PlanePlan, store: Store,
                        progress: bool) -> tuple[dict[int, BlurFit], str | None]:
    """The baselines' fits on the train split, or none and the note why (an empty train split)."""
    if not len(train):
        return {}, "baselines skipped: the train split is empty, so no σ could be fitted"
    with progress_bar("fitting baselines on train", 1 + len(plan.between), progress) as advance:  # far, then between
        return fit_baselines(train, plan, store.plane_index, progress=advance), None


def feature_network(extractor: M.Extractor | None, fid_weights,
                    device) -> tuple[M.Extractor | None, Message | None]:
    """(the FID feature extractor, None) — ``extractor`` if given, else Inception — or (None, why not: a message
    naming ``fid_weights``)."""
    if extractor is not None:
        return extractor, None
    try:
        return M.inception_extractor(fid_weights, device=device), None
    except M.FidUnavailable as exc:
        log.info(exc.message)
        return None, exc.message


def run_batches(ev: Evaluation, predictors: Sequence[Predictor], data: np.ndarray, names: Sequence[str],
                batch_size: int, progress: bool) -> None:
    """Every test batch through the baselines and every model, into ``ev``."""
    n_batches = -(-len(data) // batch_size)
    with progress_bar("evaluating", n_batches * (len(predictors) + 1), progress) as advance:
        for batch in batches(data, names, batch_size, ev.plan, ev.index):
            ev.add_real(batch)
            ev.add_baselines(batch)
            advance()
            for predictor, scorer in zip(predictors, ev.models, strict=True):
                ev.add_model(predictor, scorer, batch)
                advance()


def warn_empty_crops(data: np.ndarray, target: int) -> None:
    """Warn when most test centre crops are nearly empty at the in-focus plane (axis-1 index ``target``): blurred
    or not, empty crops look alike, so every column, baselines included, gets about the same score."""
    peaks = np.asarray(data[:, target]).max(axis=(-2, -1))
    empty = int((peaks <= EMPTY_CROP_MAX).sum())
    if empty * 2 >= len(peaks):
        log.warning(Message(f"{empty} of {len(peaks)} test centre crops are nearly empty (in-focus maximum <= "
                            f"{EMPTY_CROP_MAX}/255): every column, baselines included, gets about the same score, "
                            "which says nothing about the models; evaluate whole test fields instead ({whole=True})",
                            "whole"))


def _open(store, channel: str, whole: bool) -> tuple[Store, np.ndarray, np.ndarray]:
    """(store, test array, train array); UsageError for a bad store or channel or an empty test split."""
    store = store if isinstance(store, Store) else Store(store)
    store.verify([channel])  # a damaged or changed array, before anything trusts it
    data = store.full_test(channel) if whole else store.array(channel, "test")
    if len(data) == 0:
        raise UsageError(f"{store.path}: the test split of channel {channel} is empty; "
                         "prepare with a split that gives test fields")
    return store, data, store.array(channel, "train")


def evaluate(
    store,
    checkpoints: Sequence[str | Path],
    channel: str,
    out: str | Path,
    *,
    whole: bool = False,
    fid_weights: str | Path | None = None,
    device: str = EvalConfig.device,
    batch_size: int = EvalConfig.batch_size,
    progress: bool = True,
    force: bool = False,
    feature_extractor: M.Extractor | None = None,
    examples: int = EvalConfig.examples,
) -> Report:
    """Evaluate ``checkpoints`` on the test split of ``store`` and write ``out``/report.json, report.md, figures/.

    ``store``: a path or ``Store``; ``checkpoints``: one or more .pt files (one table column each);
    ``whole``: full-size test fields (padded to a multiple of 2**depth, cropped back) instead of centre
    crops; ``fid_weights``: pytorch-fid's Inception file (else the torch hub cache; if neither, FID is
    reported as unavailable with the fix); ``batch_size``: test fields per batch (and images per model
    call); ``feature_extractor``: replaces Inception (tests, other feature networks), a callable Tensor
    [B, 3, H, W] → [B, D]; ``examples``: test fields kept for the figures.

    Returns the ``Report`` (``report.to_dict()`` is report.json). Raises UsageError for a bad store,
    channel, checkpoint, batch size, or an ``out`` that is an earlier report (without ``force``) or holds
    anything else — before any heavy work.
    """
    out = Path(out)
    M.check_eval_extra("evaluate")
    if not checkpoints:
        raise UsageError("checkpoints: give at least one checkpoint file (one report column each)")
    if batch_size < 1:
        raise UsageError(f"{{batch_size}} {batch_size}: must be at least 1", "batch_size")
    check_report_folder(out, force, [p for p in (store, *checkpoints) if isinstance(p, (str, Path))])
    with disk_space(out), FolderLock(out, "evaluate"):  # one writer per report folder, until it is written
        store, data, train = _open(store, channel, whole)
        plan = plan_planes(store.planes)
        dev = assign_device(device)
        store_norm = store.normalize
        predictors, infos = load_models(checkpoints, dev, batch_size, store_norm, channel)
        names = field_labels(store, channel, len(data))
        extractor, fid_note = feature_network(feature_extractor, fid_weights, dev)
        fits, baseline_note = fit_train_baselines(train, plan, store, progress)
        models = [ColumnScorer(info.name, "model", ("blur", "deblur", "latent")) for info in infos]
        ev = Evaluation(plan, plane_indices(store, plan), models, fits, extractor, dev, Examples(examples))
        with terminate_as_interrupt():  # SIGTERM: stopped like Ctrl-C
            run_batches(ev, predictors, data, names, batch_size, progress)
        if not whole:  # said with the scores, once they exist
            warn_empty_crops(data, store.plane_index(plan.target))
        weights = None if feature_extractor is not None or fid_note else str(M.find_fid_weights(fid_weights))
        fid = FidInfo(available=fid_note is None, note=fid_note,
                      extractor="custom" if feature_extractor is not None else INCEPTION, weights=weights)
        config = ReportConfig(store=str(store.path), channel=channel, whole=whole, device=str(dev),
                              batch_size=batch_size, plan=plan, fields=len(names), image_size=tuple(data.shape[-2:]),
                              store_normalize=store_norm, fid=fid, baselines=fits, baseline_note=baseline_note)
        report = ev.report(config, infos, fid_note)
        kept = sum(image.size for images in ev.examples.images.values() for image in images)  # figures' px, 1 B each
        with terminate_as_interrupt(), disk_space(out, 2 * MB + kept):  # a full disk: one line; the temp is removed
            write_report_folder(out, report, ev.examples, ev.latents, force)
        return report
