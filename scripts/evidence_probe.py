#!/usr/bin/env python
"""How much object evidence is in the embedded encoder's frame tokens? A linear-probe
measurement that decides how the small LLM should get it.

Images: each object of the world catalog (``live_ros/data/world_objects.py``) alone on a
background, composited by the world's own renderer (a one-frame
:class:`live_ros.data.world_scene.Scene`, 320x240, one actor, the colour jitter, sizes and
rest positions of ``live_ros/data/world_splits.py``):

- training images: every non-last crop of the 24 named and 4 generic objects on the
  training backgrounds, training sizes (longest side 0.45-0.68 x height) and positions;
- held-out images: the last crop (the only one of the 6 unseen objects) on the evaluation
  backgrounds, evaluation sizes (0.35-0.45 or 0.68-0.80 x height) and positions.

Encoding: the ``embedded`` preset's encoder (:func:`live_ros.model.sources.load_encoder`,
as ``live-ros extract`` loads it), ``encode()`` as for a stream's frames; kept: the pooled
token's 1280 image features (token 0, dims 0-1279; dims 1280-2559 are the difference
from the previous frame, :func:`live_ros.model.encoders.temporal_difference`, meaningless
for single images). From the same pooled features, EfficientNet-Lite0's own ImageNet-1k
head (the classifier of the timm model inside ``TimmEncoder``, loaded from the same
weights file) gives 1000 logits.

Measured (printed as tables, and written to ``--out``):

a. a linear probe (multinomial logistic regression, a torch softmax regression with L2,
   class-balanced; L2 chosen by training on crop 0 and validating on crop 1) on the 1280
   features: 25 classes (24 named + "generic" for the 4 generic objects), accuracy on the
   held-out images per object and overall; and a 24-way probe on the named objects only;
b. the same probes on the ImageNet logits (1000-d) and on [features ; logits];
c. open set: held-out unseen vs held-out named images, the AUROC of the probe's maximum
   softmax probability (and of 1 - p(generic)), and where the unseen images go (the
   "generic" class, or which named classes);
d. the AUROC of the ImageNet head's own maximum softmax probability, as a reference;
plus the top-3 ImageNet labels per object (the most frequent top-1 labels over its
held-out images).

Run (about 3-5 minutes of one CPU core with the defaults):

    .venv/bin/python scripts/evidence_probe.py [--train-per-crop 30] [--per-object 20] [--out runs/evidence_probe.txt]

The frame-token layout and the frozen encoder follow VideoLLM-online (the paper keeps the
vision encoder frozen and trains only the connector and LoRA); this script asks what such a
frozen encoder already separates linearly, before any LLM sees it.
"""

from __future__ import annotations

import argparse
import collections
import os
import shlex
import sys
import time
from pathlib import Path
from dataclasses import dataclass

import numpy as np

GENERIC = "generic"
REPRESENTATIONS = ("features", "logits", "both")
LAMBDAS = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1)  # L2 grid of the probe (on standardised inputs)


class Report:
    """Print lines as they come and keep them for the results file."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, line: str = "") -> None:
        print(line, flush=True)
        self.lines.append(line)

    def table(self, header: list[str], rows: list[list[str]]) -> None:
        widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
        fmt = "  ".join(f"{{:<{w}}}" if i == 0 else f"{{:>{w}}}" for i, w in enumerate(widths))
        self(fmt.format(*header))
        self(fmt.format(*["-" * w for w in widths]))
        for row in rows:
            self(fmt.format(*row))


# ----------------------------------------------------------------------------- images


@dataclass
class Item:
    noun: str
    group: str  # named | generic | unseen
    crop: int
    part: str  # train | heldout


def render_one(noun: str, crop: int, split: str, rng: np.random.Generator) -> np.ndarray:
    """One 320x240 frame: ``noun`` (crop ``crop``) alone on a background of ``split``'s
    kinds, with that split's size, position and colour jitter (``world_splits.random_scene``'s
    ``new_look`` and ``rest_for``), drawn by the world's renderer."""
    from live_ros.data.world_objects import cutout
    from live_ros.data.world_scene import DEFAULT_SIZE, Scene
    from live_ros.data.world_splits import COLUMNS, PROFILES, _uniform_bands, random_look

    prof = PROFILES[split]
    width, height = DEFAULT_SIZE
    scene = Scene(
        "probe",
        0.0,
        width,
        height,
        background=str(rng.choice(prof.backgrounds)),
        background_seed=int(rng.integers(2**31)),
    )
    look = random_look(rng, prof, crop, height)
    h, w = cutout(noun, crop)[1].shape
    k = look.size / max(h, w)
    w, h = w * k, h * k
    column = int(rng.integers(COLUMNS))
    lo, hi = prof.x_jitter
    dx = float(rng.uniform(lo, hi)) * width * (1 if rng.random() < 0.5 else -1)
    cx = min(max(width * (2 * column + 1) / (2 * COLUMNS) + dx, w / 2), width - w / 2)
    cy = min(max(_uniform_bands(rng, prof.y_bands) * height, h / 2), height - h / 2)
    actor = scene.add(noun, look, (cx, cy))
    scene.act(actor, "enter", 0.0, 0.0, "pop")
    frames: list[np.ndarray] = []
    scene.render(lambda j, frame: frames.append(frame.copy()))
    return frames[0]


def build_images(train_per_crop: int, per_object: int, seed: int) -> tuple[list[Item], list[np.ndarray]]:
    from live_ros.data.world_objects import object_catalog

    items, images = [], []
    for index, (noun, spec) in enumerate(object_catalog().items()):
        if spec.split != "unseen":
            for crop in spec.train_crops:
                for i in range(train_per_crop):
                    rng = np.random.default_rng([seed, 0, index, crop, i])
                    items.append(Item(noun, spec.split, crop, "train"))
                    images.append(render_one(noun, crop, "train", rng))
        for i in range(per_object):
            rng = np.random.default_rng([seed, 1, index, spec.heldout_crop, i])
            items.append(Item(noun, spec.split, spec.heldout_crop, "heldout"))
            images.append(render_one(noun, spec.heldout_crop, "eval", rng))
    return items, images


# ---------------------------------------------------------------------------- encoding


def encode(images: list[np.ndarray], batch_size: int):
    """(features [N, 1280], ImageNet logits [N, 1000]) of ``images``, as frame tokens are made."""
    import torch

    from live_ros.model.frames import letterbox, to_pixels
    from live_ros.model.sources import load_encoder

    encoder = load_encoder("embedded")
    dim = encoder.feature_dim
    head = encoder.model.get_classifier()
    feats, logits = [], []
    for start in range(0, len(images), batch_size):
        encoder.reset()  # single images: no stream (the difference half is dropped anyway)
        tokens = encoder.encode(images[start : start + batch_size], batch_size=batch_size)
        pooled = tokens[:, 0, :dim].float()
        feats.append(pooled)
        with torch.inference_mode():
            logits.append(head(pooled))
        if start == 0:  # the head on the pooled token is the timm model's own forward
            c = encoder.config
            pixels = to_pixels([letterbox(im, c.image_size) for im in images[:2]], c.mean, c.std)
            with torch.inference_mode():
                full = encoder.model(pixels)
            assert torch.allclose(full, logits[0][:2], atol=1e-3), "head(pooled) differs from model(pixels)"
    return torch.cat(feats).numpy(), torch.cat(logits).numpy()


# ------------------------------------------------------------------------------ probes


def fit_softmax(x: np.ndarray, y: np.ndarray, n_classes: int, l2: float):
    """Multinomial logistic regression (class-balanced cross-entropy + l2 * |W|^2) by
    full-batch L-BFGS; returns (W, b) as torch tensors."""
    import torch

    xt, yt = torch.from_numpy(x).float(), torch.from_numpy(y).long()
    counts = torch.bincount(yt, minlength=n_classes).float()
    weight = torch.where(counts > 0, counts.sum() / (n_classes * counts.clamp(min=1)), torch.zeros_like(counts))
    w = torch.zeros(x.shape[1], n_classes, requires_grad=True)
    b = torch.zeros(n_classes, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=300, history_size=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(xt @ w + b, yt, weight=weight) + l2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach(), b.detach()


def predict_proba(model, x: np.ndarray) -> np.ndarray:
    import torch

    w, b = model
    return torch.softmax(torch.from_numpy(x).float() @ w + b, dim=1).numpy()


def standardise(train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    mean, std = train.mean(0), train.std(0) + 1e-6
    return [(a - mean) / std for a in (train, *others)]


def train_probe(x_train, y_train, crops, n_classes) -> tuple[object, float]:
    """Pick l2 by training on crop 0 and validating on crop 1 (both training backgrounds),
    then refit on all training images. Returns (model, l2)."""
    fit0, val0 = crops == 0, crops == 1
    best, best_acc = LAMBDAS[0], -1.0
    for l2 in LAMBDAS:
        model = fit_softmax(x_train[fit0], y_train[fit0], n_classes, l2)
        acc = float((predict_proba(model, x_train[val0]).argmax(1) == y_train[val0]).mean())
        if acc > best_acc:
            best, best_acc = l2, acc
    return fit_softmax(x_train, y_train, n_classes, best), best


def auroc(positive: np.ndarray, negative: np.ndarray) -> float:
    """P(score of a positive > score of a negative), ties counting half (Mann-Whitney)."""
    from scipy.stats import rankdata

    ranks = rankdata(np.concatenate([positive, negative]))
    n_pos, n_neg = len(positive), len(negative)
    return float((ranks[:n_pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def softmax_np(z: np.ndarray) -> np.ndarray:
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


# -------------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train-per-crop", type=int, default=30, help="training images per object and crop")
    parser.add_argument("--per-object", type=int, default=20, help="held-out images per object")
    parser.add_argument("--out", default=None, help="also write the printed output to this file (default: print only)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args()

    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    from live_ros import runtime

    runtime.prepare()  # the torchvision fix before timm imports it
    import torch
    from timm.data import ImageNetInfo

    from live_ros.data.world_objects import generic_objects, named_objects, unseen_objects

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    report = Report()
    t_start, cpu_start = time.time(), time.process_time()
    command = " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv])
    report(f"# evidence probe: {command}")
    report(f"# {time.strftime('%Y-%m-%d %H:%M:%S')}, torch threads {torch.get_num_threads()}, seed {args.seed}")

    named, generic, unseen = named_objects(), generic_objects(), unseen_objects()
    items, images = build_images(args.train_per_crop, args.per_object, args.seed)
    n_train = sum(it.part == "train" for it in items)
    report(
        f"# images: {n_train} training (non-last crops, training backgrounds/sizes/positions), "
        f"{len(items) - n_train} held-out (last crop, evaluation backgrounds/sizes/positions); "
        f"rendered in {time.time() - t_start:.0f} s"
    )
    t_enc = time.time()
    feats, logits = encode(images, args.batch_size)
    report(f"# encoded with the embedded encoder in {time.time() - t_enc:.0f} s: features {feats.shape}")
    del images

    part = np.array([it.part for it in items])
    nouns = np.array([it.noun for it in items])
    groups = np.array([it.group for it in items])
    crops = np.array([it.crop for it in items])
    tr, ho = part == "train", part == "heldout"

    classes25 = [*named, GENERIC]
    label25 = np.array(
        [classes25.index(n if g == "named" else GENERIC) if g != "unseen" else -1 for n, g in zip(nouns, groups)]
    )
    label24 = np.array([named.index(n) if g == "named" else -1 for n, g in zip(nouns, groups)])

    reps = {"features": feats, "logits": logits, "both": np.concatenate([feats, logits], 1)}
    probes25, probes24, probs_ho, chosen = {}, {}, {}, {}
    t_fit = time.time()
    for name, x in reps.items():
        x_tr, x_ho = standardise(x[tr], x[ho])
        model, l2 = train_probe(x_tr, label25[tr], crops[tr], len(classes25))
        probes25[name], probs_ho[name] = model, predict_proba(model, x_ho)
        m24 = label24[tr] >= 0
        model24, l2_24 = train_probe(x_tr[m24], label24[tr][m24], crops[tr][m24], len(named))
        probes24[name] = predict_proba(model24, x_ho)
        chosen[name] = (l2, l2_24)
    report(f"# probes fitted in {time.time() - t_fit:.0f} s; l2 chosen (25-way, 24-way): {chosen}")

    # --- a/b: per-object held-out accuracy
    ho_nouns, ho_groups, ho_l25, ho_l24 = nouns[ho], groups[ho], label25[ho], label24[ho]
    pred25 = {k: p.argmax(1) for k, p in probs_ho.items()}
    pred24 = {k: p.argmax(1) for k, p in probes24.items()}
    report()
    report("## a/b. Linear probe accuracy on held-out images (last crop, evaluation backgrounds)")
    report("25-way = 24 named + 'generic'; 24-way = named only; most frequent wrong 25-way answer of 'features'")
    rows = []
    for noun in [*named, *generic]:
        m = ho_nouns == noun
        row = [noun, "named" if noun in named else "generic"]
        row += [f"{(pred25[k][m] == ho_l25[m]).mean():.2f}" for k in REPRESENTATIONS]
        row += [f"{(pred24[k][m] == ho_l24[m]).mean():.2f}" if noun in named else "-" for k in REPRESENTATIONS]
        wrong = [classes25[c] for c in pred25["features"][m] if c != ho_l25[m][0]]
        row.append(", ".join(f"{c} {n}" for c, n in collections.Counter(wrong).most_common(2)) if wrong else "")
        rows.append(row)
    m_named, m_gen = ho_groups == "named", ho_groups == "generic"
    m_known = m_named | m_gen
    for label, m in (("ALL named", m_named), ("ALL generic", m_gen), ("ALL named+generic", m_known)):
        row = [label, ""] + [f"{(pred25[k][m] == ho_l25[m]).mean():.3f}" for k in REPRESENTATIONS]
        row += [
            f"{(pred24[k][m_named] == ho_l24[m_named]).mean():.3f}" if m is m_named else "-" for k in REPRESENTATIONS
        ]
        rows.append(row + [""])
    report.table(
        ["object", "group", "25:feat", "25:logit", "25:both", "24:feat", "24:logit", "24:both", "features' errors"],
        rows,
    )
    # training-set fit, for reference (how far held-out falls from it)
    report()
    report("Training-image accuracy of the 25-way probes (fit, not generalisation):")
    train_acc = []
    for name, x in reps.items():
        x_tr, _ = standardise(x[tr], x[ho])
        train_acc.append(f"{name} {(predict_proba(probes25[name], x_tr).argmax(1) == label25[tr]).mean():.3f}")
    report("  " + ", ".join(train_acc))

    # --- c/d: open set
    report()
    report("## c/d. Open set: held-out unseen (positives = named, negatives = unseen) AUROC")
    report("MSP = max softmax probability; 1-p(gen) = 1 - probability of the 'generic' class")
    m_unseen = ho_groups == "unseen"
    gen_idx = classes25.index(GENERIC)
    rows = []
    for k in REPRESENTATIONS:
        p = probs_ho[k]
        msp = p.max(1)
        not_gen = 1 - p[:, gen_idx]
        to_gen = (pred25[k][m_unseen] == gen_idx).mean()
        gen_as_gen = (pred25[k][m_gen] == gen_idx).mean()
        named_as_gen = (pred25[k][m_named] == gen_idx).mean()
        rows.append(
            [
                f"probe 25-way on {k}",
                f"{auroc(msp[m_named], msp[m_unseen]):.3f}",
                f"{auroc(not_gen[m_named], not_gen[m_unseen]):.3f}",
                f"{to_gen:.2f}",
                f"{1 - to_gen:.2f}",
                f"{gen_as_gen:.2f}",
                f"{named_as_gen:.2f}",
            ]
        )
    for k in REPRESENTATIONS:
        msp = probes24[k].max(1)
        rows.append([f"probe 24-way on {k}", f"{auroc(msp[m_named], msp[m_unseen]):.3f}", "-", "-", "-", "-", "-"])
    head_p = softmax_np(logits[ho])
    head_msp = head_p.max(1)
    rows.append(
        ["ImageNet head itself", f"{auroc(head_msp[m_named], head_msp[m_unseen]):.3f}", "-", "-", "-", "-", "-"]
    )
    report.table(
        ["score", "AUROC MSP", "AUROC 1-p(gen)", "unseen->gen", "unseen->named", "generic->gen", "named->gen"], rows
    )
    report()
    report("Where each unseen object's held-out images go (25-way probe; top classes with counts):")
    rows = []
    for noun in unseen:
        m = ho_nouns == noun
        row = [noun]
        for k in REPRESENTATIONS:
            counts = collections.Counter(classes25[c] for c in pred25[k][m])
            row.append(", ".join(f"{c} {n}" for c, n in counts.most_common(3)))
        row.append(f"{probs_ho['features'][m].max(1).mean():.2f}")
        rows.append(row)
    rows.append(["(named, mean MSP)", "", "", "", f"{probs_ho['features'][m_named].max(1).mean():.2f}"])
    report.table(["unseen object", "features", "logits", "both", "mean MSP (features)"], rows)

    # --- ImageNet labels
    report()
    report("## ImageNet-1k head: top-3 labels per object (most frequent top-1 label over held-out images)")
    info = ImageNetInfo()
    top1 = logits[ho].argmax(1)
    rows = []
    for noun in [*named, *generic, *unseen]:
        m = ho_nouns == noun
        counts = collections.Counter(top1[m].tolist())
        labels = [f"{info.index_to_description(c).split(',')[0]} {n}/{m.sum()}" for c, n in counts.most_common(3)]
        rows.append([noun, ho_groups[m][0], f"{head_msp[m].mean():.2f}", "; ".join(labels)])
    report.table(["object", "group", "mean MSP", "top-1 labels (count / images)"], rows)

    report()
    report(f"# total: {time.time() - t_start:.0f} s wall, {time.process_time() - cpu_start:.0f} s CPU (this process)")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text("\n".join(report.lines) + "\n")
        print(f"# written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
