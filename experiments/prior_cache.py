"""On-disk cache of prior scores (agents.prior.PriorScores), keyed by content like the data cache.

Where: `<cache_dir>/priors/<dataset>-<peer>-<key>/`, cache_dir as envs.data.cache.default_cache_dir()
(LABELCHAIN_CACHE, else the user cache folder). Key: a hash of the format, the dataset's content
hash, the peer, the seed, the validation fraction, the folds, M and the tuning grid, so any change of
data or settings names another entry. Layout: `{train,val,test}.npz` (float32 CSR) and `meta.json`
(the prior's identity, the sha256 of every matrix file and of meta.json's own body), written
atomically with meta.json last. A reader verifies every checksum and that the entry is bound to
the key it was asked for (dataset hash, peer and settings equal); a damaged, cut or foreign entry is
rebuilt with one warning naming it. Building (fitting the peer k + grid times) is the slow part; a
cached prior loads in milliseconds.

    python experiments/prior_cache.py --dataset bibtex --peer omikuji --top-m 100   # build (or load) one
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labelchain.experiments.run.threads import Threads, set_threads
from labelchain.agents.peers import PeerUnavailable
from labelchain.agents.prior import PRIOR_PEERS, PriorMismatch, PriorScores, build_prior, recall_at
from labelchain.envs.data.fingerprint import content_hash
from labelchain.envs.atomic import atomic_write
from labelchain.envs.data.cache import _body_digest, _load_matrix, _matrix_bytes, _writer, default_cache_dir
from labelchain.envs.data.dataset import Dataset
from labelchain.envs.data.loading import load_dataset

PRIOR_CACHE_FORMAT = 1
PARTS = ("train", "val", "test")
log = logging.getLogger(__name__)


def prior_key(
    dataset_hash: str, peer: str, *, seed: int, val_fraction: float, folds: int, top_m: int, grid: Any
) -> dict[str, Any]:
    """Everything a cached prior is bound to (its folder name is a hash of this)."""
    return {
        "format": PRIOR_CACHE_FORMAT,
        "dataset_hash": dataset_hash,
        "peer": peer,
        "seed": seed,
        "val_fraction": val_fraction,
        "folds": folds,
        "top_m": top_m,
        "grid": grid,
    }


def key_digest(key: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:20]


def save_prior(prior: PriorScores, folder: Path, key: dict[str, Any]) -> None:
    """Write `prior` into `folder`; meta.json last marks the entry complete."""
    folder.mkdir(parents=True, exist_ok=True)
    checksums = {}
    for part in PARTS:
        _, payload = _matrix_bytes(prior.part(part))
        atomic_write(folder / f"{part}.npz", _writer(payload))
        checksums[f"{part}.npz"] = hashlib.sha256(payload).hexdigest()
    body = {
        "key": key,
        "peer": prior.peer,
        "settings": prior.settings,
        "dataset_hash": prior.dataset_hash,
        "split": prior.split,
        "n_labels": prior.n_labels,
        "timings": prior.timings,
        "sha256": checksums,
    }
    body = json.loads(json.dumps(body, default=str))  # what the reader will see (tuples become lists)
    payload = json.dumps({"body": body, "body_sha256": _body_digest(body)}).encode()
    atomic_write(folder / "meta.json", _writer(payload))


def load_prior(folder: Path, key: dict[str, Any]) -> tuple[PriorScores | None, str | None]:
    """(prior, None) for a sound entry bound to `key`; (None, None) when there is none; (None, why) otherwise."""
    try:
        if not folder.exists():
            return None, None
        meta_path = folder / "meta.json"
        if not meta_path.is_file():
            return None, "meta.json is missing (an interrupted write?)"
        meta = json.loads(meta_path.read_bytes())
        body = meta["body"]
        if meta["body_sha256"] != _body_digest(body):
            return None, "meta.json does not match its checksum"
        want = json.loads(json.dumps(key, default=str))
        if body["key"] != want:
            differ = sorted(k for k in set(want) | set(body["key"]) if want.get(k) != body["key"].get(k))
            return None, f"entry belongs to other settings ({', '.join(differ)} differ)"
        matrices = {}
        for part in PARTS:
            payload = (folder / f"{part}.npz").read_bytes()
            if hashlib.sha256(payload).hexdigest() != body["sha256"][f"{part}.npz"]:
                return None, f"{part}.npz does not match its checksum"
            matrices[part] = _load_matrix(".npz", payload)
        prior = PriorScores(
            **matrices,
            peer=body["peer"],
            settings=body["settings"],
            dataset_hash=body["dataset_hash"],
            split=body["split"],
            n_labels=int(body["n_labels"]),
            timings=body["timings"],
        )
        if prior.dataset_hash != key["dataset_hash"] or prior.peer != key["peer"]:
            return None, "entry's prior does not match its key"
        return prior, None
    except Exception as err:  # noqa: BLE001  (any unreadable entry is rebuilt, never trusted)
        return None, f"unreadable ({type(err).__name__}: {err})"


def cached_prior(
    peer: str,
    ds: Dataset,
    *,
    seed: int = 0,
    val_fraction: float = 0.1,
    folds: int = 5,
    top_m: int = 100,
    grid: tuple[dict, ...] | None = None,
    cache_dir: str | Path | None = None,
) -> PriorScores:
    """The prior from the cache, else built by agents.prior.build_prior and stored (an unwritable cache
    folder only costs the cache, with one warning)."""
    dataset_hash = content_hash(ds)
    grid_list = [dict(h) for h in grid] if grid is not None else None
    key = prior_key(dataset_hash, peer, seed=seed, val_fraction=val_fraction, folds=folds, top_m=top_m, grid=grid_list)
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    folder = root / "priors" / f"{ds.name}-{peer}-{key_digest(key)}"
    prior, problem = load_prior(folder, key)
    if prior is not None:
        return prior
    if problem is not None:
        log.warning("prior cache entry %s is not usable (%s); rebuilding it", folder, problem)
    prior = build_prior(peer, ds, seed=seed, val_fraction=val_fraction, folds=folds, top_m_size=top_m, grid=grid)
    try:
        save_prior(prior, folder, key)
    except OSError as err:
        log.warning("could not write the prior cache at %s (%s); continuing without it", folder, err.strerror or err)
    return prior


@dataclass
class Args(Threads):
    """Build (or load from the cache) one dataset's prior scores and print what they hold."""

    dataset: str = "emotions"
    peer: str = field(default="ovr_logistic", metadata={"help": f"from {PRIOR_PEERS}"})
    seed: int = 0
    val_fraction: float = 0.1
    folds: int = 5
    top_m: int = 100
    data_dir: str | None = None
    cache_dir: str | None = None


def main(args: Args) -> PriorScores:
    set_threads(args.threads)
    ds = load_dataset(args.dataset, data_dir=args.data_dir)
    started = time.perf_counter()
    prior = cached_prior(
        args.peer,
        ds,
        seed=args.seed,
        val_fraction=args.val_fraction,
        folds=args.folds,
        top_m=min(args.top_m, ds.n_labels),
        cache_dir=args.cache_dir,
    )
    print(f"{args.dataset} {args.peer}: {time.perf_counter() - started:.1f} s (build: {prior.timings})")
    for part in PARTS:
        scores = prior.part(part)
        print(f"  {part}: {scores.shape[0]} documents x {scores.shape[1]} labels, {scores.nnz} stored scores")
    from labelchain.agents.supervised import carve_validation

    val_labels = carve_validation(ds.train, args.val_fraction, args.seed)[1].Y
    print(f"  validation recall@{prior.settings['top_m']}: {recall_at(prior.val, val_labels, args.top_m):.4f}")
    return prior


if __name__ == "__main__":
    from labelchain.experiments.run.common import parse_args
    from labelchain.experiments.run.folder import run_script

    try:
        run_script(lambda: main(parse_args(Args)))
    except (PriorMismatch, PeerUnavailable, ValueError) as error:
        sys.exit(f"error: {error}")
