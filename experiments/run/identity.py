"""What binds a train_rl run to its data and its checkpoints to their run, checked on --resume.

A run records in config.json (`derived.data`) the resolved absolute path of its dataset, the sha256
of every source file (envs.data.cache.file_digest, the hash the dataset cache keys on) and, per split
(train / val / test, after the validation carve and PU hiding), its size and a sha256 of its arrays.
Every checkpoint records its run (`run_id`, `seed`, and the splits' digest). `--resume` recomputes
the data's identity and refuses, naming what differs, a run whose data changed (another --data-dir,
a relative --dataset resolved from another folder, an edited file, another size) or a checkpoint
written by another run. Moving the same files elsewhere is fine: contents are compared, not paths.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any


from labelchain.envs.data.cache import file_digest
from labelchain.envs.data.dataset import Split
from labelchain.envs.data.fingerprint import splits_digest
from labelchain.envs.data.loading import source_files
from labelchain.experiments.run.config import ArgsError
from labelchain.experiments.run.folder import CheckpointError

SPLITS = ("train", "val", "test")


def data_identity(dataset: str, data_dir: str | None, splits: dict[str, Split]) -> dict[str, Any]:
    """The identity a run records: resolved path, source files by content, and each split."""
    path, files = source_files(dataset, data_dir)
    root = path if path.is_dir() else path.parent
    shown = {}
    for file in sorted(files):
        try:
            name = str(file.resolve().relative_to(root.resolve()))
        except ValueError:
            name = str(file.resolve())
        shown[name] = file_digest(file)
    split_info = {name: {"rows": len(split), "sha256": splits_digest({name: split})} for name, split in splits.items()}
    combined = hashlib.sha256(repr(sorted((k, v["sha256"]) for k, v in split_info.items())).encode()).hexdigest()
    return {"path": str(path.resolve()), "files": shown, "splits": split_info, "sha256": combined}


def check_same_data(run_dir: Path, saved: dict[str, Any] | None, now: dict[str, Any]) -> None:
    """Refuse a resume whose data is not the run's, naming what differs (runs made before this
    check have no record and resume as before)."""
    if saved is None:
        return
    problems = []
    changed = sorted(
        name for name in set(saved["files"]) | set(now["files"]) if saved["files"].get(name) != now["files"].get(name)
    )
    if changed:
        problems.append(f"files differ in content or presence: {', '.join(changed)}")
    for name in SPLITS:
        was, is_ = saved["splits"].get(name, {}), now["splits"].get(name, {})
        if was.get("rows") != is_.get("rows"):
            problems.append(f"{name} has {is_.get('rows')} documents (run: {was.get('rows')})")
    if not problems and saved["sha256"] != now["sha256"]:
        problems.append("the loaded splits differ (same files: did the loader change?)")
    if problems:
        where = now["path"] if now["path"] == saved["path"] else f"{now['path']} now, {saved['path']} in the run"
        raise ArgsError(
            f"--resume {run_dir}: not the data this run started on ({where}): {'; '.join(problems)}. "
            "Give --data-dir of the original data (run from the folder a relative --dataset was given "
            "in), or start a new run"
        )


def run_stamp(run_id: str, seed: int, identity: dict[str, Any] | None) -> dict[str, Any]:
    """What a checkpoint records about its run."""
    return {"run_id": run_id, "seed": seed, "data_sha256": None if identity is None else identity["sha256"]}


def check_checkpoint_run(path: Path, state: dict[str, Any], stamp: dict[str, Any]) -> None:
    """Refuse a checkpoint written by another run (another seed's, another dataset's, another folder's)."""
    saved = state.get("run")
    if saved is None:
        return  # written before checkpoints recorded their run
    for key, what in (("run_id", "run"), ("seed", "--seed"), ("data_sha256", "data")):
        if stamp.get(key) is not None and saved.get(key) is not None and saved[key] != stamp[key]:
            raise CheckpointError(
                f"{path}: this checkpoint belongs to another run ({what}: {saved[key]!r}, this run: "
                f"{stamp[key]!r}); put back this run's checkpoint, or delete it to restart the learner"
            )
