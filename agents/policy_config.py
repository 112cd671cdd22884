"""`PolicyConfig`: the chain policy's architecture, one typed object for building and for saving.

The same object is what `agents.policy_factory.build_policy` takes (dimensions 0 = "from the
training split", `output="tree"` without a tree = "build one from PIFA embeddings") and what a built
`ChainPolicy` carries (`policy.policy_config`, every field resolved). `to_dict` writes exactly the
keys saved policies have always had (`policy_config.json`, checkpoints, run folders): flat configs
carry no tree keys, guidance keys only with clusters, `guidance_mix` / `sparse_label_grads` /
`tree_query_size` only when set; `from_dict` reads those files back, old ones included.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

from labelchain.envs.label_clusters import LabelTree
from labelchain.envs.mcg import MCGSpec

__all__ = ["PRIOR_MODES", "PolicyConfig"]

PRIOR_MODES = ("none", "shared", "per_label")


@dataclass(frozen=True, eq=False)
class PolicyConfig:
    """Architecture of a `ChainPolicy` (see agents.policy for what each part does).

    n_features / n_labels: 0 until the factory reads them from the training split. doc_size None =
    hidden_size. tree_branching / tree_leaf_size only say how the factory builds a missing tree
    (a built tree records its own shape). n_clusters > 0 = BCL guidance; mcg = MCG cluster tokens.
    """

    n_features: int = 0
    n_labels: int = 0
    hidden_size: int = 128
    doc_size: int | None = None
    label_embed_size: int = 64
    dropout: float = 0.1
    aux_weight: float = 0.0
    input_dropout: float = 0.0
    output: str = "flat"
    tree: LabelTree | None = None
    tree_beam: int = 10
    tree_branching: int = 16
    tree_leaf_size: int = 100
    tree_query_size: int | None = None
    sparse_label_grads: bool = False
    n_clusters: int = 0
    guidance_weight: float = 1.0
    guidance_anneal: bool = False
    guidance_mix: float = 0.0
    mcg: MCGSpec | None = None
    prior: str = "none"
    shortlist: bool = False
    label_history: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.tree, dict):  # as saved
            object.__setattr__(self, "tree", LabelTree.from_dict(self.tree))
        if isinstance(self.mcg, dict):
            object.__setattr__(self, "mcg", MCGSpec.from_config(self.mcg))
        if self.prior not in PRIOR_MODES:
            raise ValueError(f"prior must be one of {PRIOR_MODES}, got {self.prior!r}")
        if self.prior != "none" and (self.output != "flat" or self.n_clusters or self.mcg is not None):
            raise ValueError("a prior policy needs output='flat' without guidance clusters or MCG")
        if self.shortlist and self.prior == "none":
            raise ValueError("shortlist needs a prior (the shortlist is the prior's top-M labels)")
        if self.tree is not None:  # the built tree is the truth about its shape
            object.__setattr__(self, "tree_branching", int(self.tree.branching))
            object.__setattr__(self, "tree_leaf_size", int(self.tree.max_leaf_size))

    @property
    def resolved_doc_size(self) -> int:
        return self.hidden_size if self.doc_size is None else self.doc_size

    def replace(self, **changes: Any) -> PolicyConfig:
        """A copy with `changes` (dataclasses.replace; a new tree resets the tree shape fields)."""
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The JSON-able dict saved with a policy: the keys and order saved configs have always had."""
        config: dict[str, Any] = {
            "n_features": int(self.n_features),
            "n_labels": int(self.n_labels),
            "hidden_size": int(self.hidden_size),
            "doc_size": int(self.resolved_doc_size),
            "label_embed_size": int(self.label_embed_size),
            "dropout": float(self.dropout),
            "aux_weight": float(self.aux_weight),
            "input_dropout": float(self.input_dropout),
        }
        if self.output != "flat":
            config["output"] = self.output
            if self.tree is not None:
                config["tree"] = self.tree.to_dict()
            else:  # not built yet: how the factory will build it
                config |= {"tree_branching": int(self.tree_branching), "tree_leaf_size": int(self.tree_leaf_size)}
            config["tree_beam"] = int(self.tree_beam)
            if self.tree_query_size is not None:
                config["tree_query_size"] = int(self.tree_query_size)
        if self.n_clusters:
            config |= {
                "n_clusters": int(self.n_clusters),
                "guidance_weight": float(self.guidance_weight),
                "guidance_anneal": bool(self.guidance_anneal),
            }
            if self.guidance_mix:
                config["guidance_mix"] = float(self.guidance_mix)
        if self.sparse_label_grads:
            config["sparse_label_grads"] = True
        if self.mcg is not None:
            config["mcg"] = self.mcg.config()
        if self.prior != "none":
            config["prior"] = self.prior
        if self.shortlist:
            config["shortlist"] = True
        if not self.label_history:
            config["label_history"] = False
        return config

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PolicyConfig:
        """Inverse of `to_dict`, for configs saved by any version (missing keys take their defaults).

        An unknown key raises TypeError naming it (a config of something else, or of a newer version).
        """
        known = {spec.name for spec in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise TypeError(f"unknown policy config keys {unknown}")
        return cls(**data)

    def __eq__(self, other: object) -> bool:
        """Same architecture: equal saved dicts (a flat config ignores the tree knobs, as saving does)."""
        if not isinstance(other, PolicyConfig):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]
