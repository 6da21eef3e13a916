"""Graph-isomorphism datasets: the in-memory pair dataset, its file formats and the cache.

Two file formats are read, told apart by their keys:

* ours (written by :func:`save_pairs_file`): a dict ``{"format": "nip-graph-pairs",
  "version": 1, "adjacency": bool [pairs, 2, N, N], "sizes": int64 [pairs, 2],
  "wl_score": int64 [pairs]}``;
* the original research code's: a dict of ``edge_index_a``, ``edge_index_b`` (int64
  ``[2, E]``, node ids local to each graph, both directions of every edge), ``slices_a``,
  ``slices_b`` (int64 ``[pairs + 1]``, cumulative edge counts), ``sizes_a``, ``sizes_b``
  (node counts) and ``wl_scores`` (-1 = WL cannot distinguish = "isomorphic").

Files are read with ``torch.load(weights_only=True)`` and written atomically (temporary file
in the same directory, then ``os.replace``). Every problem with a file is a
:class:`~nip.errors.NipDataError` with a one-line message naming the file.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from nip.checkpointing import atomic_torch_save
from nip.errors import NipDataError
from nip.scenarios.graph_iso.config import GraphIsoScenarioConfig
from nip.utils.seeding import derive_seed

__all__ = [
    "CACHE_FORMAT_VERSION",
    "FILE_FORMAT_NAME",
    "FILE_FORMAT_VERSION",
    "GraphPairDataset",
    "build_datasets",
    "cache_key",
    "load_or_generate",
    "load_pairs_file",
    "save_original_format",
    "save_pairs_file",
]

logger = logging.getLogger(__name__)

FILE_FORMAT_NAME = "nip-graph-pairs"
FILE_FORMAT_VERSION = 1
# Bump whenever generation changes what a given configuration and seed produce, so that stale
# cache entries are not reused.
CACHE_FORMAT_VERSION = 1

_ORIGINAL_KEYS = (
    "edge_index_a",
    "edge_index_b",
    "slices_a",
    "slices_b",
    "sizes_a",
    "sizes_b",
    "wl_scores",
)
_OUR_KEYS = ("format", "version", "adjacency", "sizes", "wl_score")
_INTEGER_DTYPES = (torch.int8, torch.uint8, torch.int16, torch.int32, torch.int64)

# Largest graph a dataset file may hold. Agents work on dense [N, N] adjacencies and 2N-token
# attention per pair, so memory grows with N squared: far beyond the paper's 7-11 nodes, a
# single file could exhaust the machine before training starts.
MAX_NODES = 256


@dataclass
class GraphPairDataset:
    """Pairs of graphs, padded to a common number of nodes ``N``.

    Attributes
    ----------
    adjacency : Tensor
        bool ``[pairs, 2, N, N]``: the adjacency matrices of graph ``a`` (index 0) and graph
        ``b`` (index 1) of each pair; symmetric, no self loops, no edges at padding nodes.
    node_mask : Tensor
        bool ``[pairs, 2, N]``: node ``i`` of a graph exists iff ``i`` is less than that
        graph's size (padding nodes come last).
    wl_score : Tensor
        int64 ``[pairs]``: first Weisfeiler-Lehman iteration that distinguishes the two graphs,
        or -1 if none does (label "isomorphic").
    """

    adjacency: Tensor
    node_mask: Tensor
    wl_score: Tensor

    def __post_init__(self) -> None:
        # Cheap structural checks only; file contents are validated by the loader.
        if self.adjacency.dtype != torch.bool or self.node_mask.dtype != torch.bool:
            raise TypeError("adjacency and node_mask must be bool tensors")
        if self.wl_score.dtype != torch.long:
            raise TypeError("wl_score must be an int64 tensor")
        if self.adjacency.dim() != 4 or self.adjacency.shape[1] != 2:
            raise ValueError("adjacency must have shape [pairs, 2, N, N]")
        if self.adjacency.shape[2] != self.adjacency.shape[3]:
            raise ValueError("adjacency must have shape [pairs, 2, N, N]")
        if self.node_mask.shape != self.adjacency.shape[:3]:
            raise ValueError("node_mask must have shape [pairs, 2, N]")
        if self.wl_score.shape != self.adjacency.shape[:1]:
            raise ValueError("wl_score must have shape [pairs]")

    def __len__(self) -> int:
        return self.adjacency.shape[0]

    @property
    def max_nodes(self) -> int:
        """``N``, the padded number of nodes per graph."""
        return self.adjacency.shape[-1]

    @property
    def y(self) -> Tensor:
        """int64 ``[pairs]``: 1 where the pair is labelled isomorphic (``wl_score == -1``)."""
        return (self.wl_score == -1).long()

    @property
    def sizes(self) -> Tensor:
        """int64 ``[pairs, 2]``: the number of nodes of each graph."""
        return self.node_mask.sum(-1)

    def pad_to(self, num_nodes: int) -> GraphPairDataset:
        """The same pairs padded (or trimmed of padding) to ``num_nodes`` nodes per graph.

        Parameters
        ----------
        num_nodes : int
            The new ``N``. It may be smaller than the current one only if every graph fits.

        Returns
        -------
        GraphPairDataset
            A new dataset; ``self`` is unchanged.
        """
        current = self.max_nodes
        if num_nodes < current:
            if len(self) > 0 and bool(self.node_mask[..., num_nodes:].any()):
                raise ValueError(f"cannot pad to {num_nodes} nodes: some graphs are larger")
            return GraphPairDataset(
                adjacency=self.adjacency[..., :num_nodes, :num_nodes].clone(),
                node_mask=self.node_mask[..., :num_nodes].clone(),
                wl_score=self.wl_score.clone(),
            )
        extra = num_nodes - current
        return GraphPairDataset(
            adjacency=torch.nn.functional.pad(self.adjacency, (0, extra, 0, extra)),
            node_mask=torch.nn.functional.pad(self.node_mask, (0, extra)),
            wl_score=self.wl_score.clone(),
        )

    def subset(self, index: Tensor) -> GraphPairDataset:
        """The pairs selected by ``index``.

        Parameters
        ----------
        index : Tensor
            int64 ``[k]`` pair indices or bool ``[pairs]`` mask.

        Returns
        -------
        GraphPairDataset
            The selected pairs, in the order of ``index``.
        """
        return GraphPairDataset(
            adjacency=self.adjacency[index],
            node_mask=self.node_mask[index],
            wl_score=self.wl_score[index],
        )


# --------------------------------------------------------------------------------------------
# Reading files


def _one_line(text: str, limit: int = 200) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _fail(path: Path, problem: str) -> NipDataError:
    return NipDataError(_one_line(f"dataset file {path}: {problem}", limit=400))


def _read_dict(path: Path) -> dict:
    if not path.exists():
        raise _fail(path, "no such file")
    if not path.is_file():
        raise _fail(path, "not a regular file")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for foreign or damaged files
        raise _fail(
            path, f"not a readable torch file ({type(error).__name__}: {_one_line(error)})"
        ) from error
    if not isinstance(data, dict):
        raise _fail(path, f"expected a dict of tensors, found {type(data).__name__}")
    return data


def _tensor(path: Path, data: dict, key: str, dims: int, integer: bool = True) -> Tensor:
    value = data[key]
    if not isinstance(value, Tensor):
        raise _fail(path, f"'{key}' is a {type(value).__name__}, expected a tensor")
    if integer and value.dtype not in _INTEGER_DTYPES:
        raise _fail(path, f"'{key}' has dtype {value.dtype}, expected an integer dtype")
    if value.dim() != dims:
        raise _fail(path, f"'{key}' has shape {list(value.shape)}, expected {dims} dimensions")
    return value


def _check_scores(path: Path, key: str, scores: Tensor) -> Tensor:
    scores = scores.long()
    if bool(((scores < -1) | (scores == 0)).any()):
        raise _fail(path, f"'{key}' must hold -1 or positive iteration numbers")
    return scores


def _check_counts(path: Path, num_pairs: int, num_nodes: int) -> None:
    """A dataset needs pairs, and graphs no larger than :data:`MAX_NODES`."""
    if num_pairs == 0:
        raise _fail(path, "holds no graph pairs")
    if num_nodes > MAX_NODES:
        raise _fail(path, f"has graphs of {num_nodes} nodes; at most {MAX_NODES} are supported")


def _check_adjacency(path: Path, adjacency: Tensor, node_mask: Tensor) -> None:
    """Symmetric, no self loops, no edges at padding nodes (bool ``[pairs, 2, N, N]``)."""
    if bool((adjacency != adjacency.transpose(-1, -2)).any()):
        raise _fail(path, "an adjacency matrix is not symmetric (undirected graphs expected)")
    if bool(adjacency.diagonal(dim1=-2, dim2=-1).any()):
        raise _fail(path, "a graph has a self loop")
    existing = node_mask.unsqueeze(-1) & node_mask.unsqueeze(-2)
    if bool((adjacency & ~existing).any()):
        raise _fail(path, "an edge touches a node beyond its graph's size")


def _node_mask(sizes: Tensor, num_nodes: int) -> Tensor:
    """bool ``[..., num_nodes]``: node ``i`` exists iff ``i < size``."""
    return torch.arange(num_nodes) < sizes.unsqueeze(-1)


def _dense_from_edges(
    path: Path, side: str, edge_index: Tensor, slices: Tensor, sizes: Tensor, num_nodes: int
) -> Tensor:
    """Scatter one side's edge lists into bool ``[pairs, N, N]`` (vectorised over pairs)."""
    num_pairs = sizes.shape[0]
    num_edges = edge_index.shape[1]
    if slices.shape[0] != num_pairs + 1:
        raise _fail(
            path, f"'slices_{side}' has {slices.shape[0]} entries, expected {num_pairs + 1}"
        )
    slices = slices.long()
    if int(slices[0]) != 0:
        raise _fail(path, f"'slices_{side}' must start at 0")
    counts = slices[1:] - slices[:-1]
    if bool((counts < 0).any()):
        raise _fail(path, f"'slices_{side}' is not non-decreasing")
    if int(slices[-1]) != num_edges:
        raise _fail(
            path,
            f"'slices_{side}' ends at {int(slices[-1])} but 'edge_index_{side}' has "
            f"{num_edges} edges",
        )
    pair_of_edge = torch.repeat_interleave(torch.arange(num_pairs), counts)
    source, target = edge_index.long()
    size_of_edge = sizes[pair_of_edge]
    bad = (source < 0) | (target < 0) | (source >= size_of_edge) | (target >= size_of_edge)
    if bool(bad.any()):
        first = int(bad.nonzero()[0, 0])
        raise _fail(
            path,
            f"'edge_index_{side}' has node ids out of range for pair {int(pair_of_edge[first])} "
            f"(graph size {int(size_of_edge[first])})",
        )
    adjacency = torch.zeros(num_pairs, num_nodes, num_nodes, dtype=torch.bool)
    adjacency[pair_of_edge, source, target] = True
    return adjacency


def _load_original(path: Path, data: dict) -> GraphPairDataset:
    scores = _check_scores(path, "wl_scores", _tensor(path, data, "wl_scores", 1))
    num_pairs = scores.shape[0]
    sizes = []
    for side in "ab":
        side_sizes = _tensor(path, data, f"sizes_{side}", 1).long()
        if side_sizes.shape[0] != num_pairs:
            raise _fail(
                path,
                f"'sizes_{side}' has {side_sizes.shape[0]} entries but 'wl_scores' has {num_pairs}",
            )
        if bool((side_sizes < 1).any()):
            raise _fail(path, f"'sizes_{side}' must be positive")
        sizes.append(side_sizes)
    num_nodes = int(torch.stack(sizes).max()) if num_pairs > 0 else 0
    _check_counts(path, num_pairs, num_nodes)
    adjacency = []
    for side, side_sizes in zip("ab", sizes, strict=True):
        edge_index = _tensor(path, data, f"edge_index_{side}", 2)
        if edge_index.shape[0] != 2:
            raise _fail(
                path, f"'edge_index_{side}' has shape {list(edge_index.shape)}, expected [2, E]"
            )
        slices = _tensor(path, data, f"slices_{side}", 1)
        adjacency.append(_dense_from_edges(path, side, edge_index, slices, side_sizes, num_nodes))
    adjacency_tensor = torch.stack(adjacency, dim=1)
    node_mask = _node_mask(torch.stack(sizes, dim=1), num_nodes)
    _check_adjacency(path, adjacency_tensor, node_mask)
    return GraphPairDataset(adjacency_tensor, node_mask, scores)


def _load_ours(path: Path, data: dict) -> GraphPairDataset:
    name, version = data["format"], data["version"]
    if not isinstance(name, str) or name != FILE_FORMAT_NAME:
        raise _fail(path, f"unknown format {_one_line(repr(name), 60)}")
    if type(version) is not int or version != FILE_FORMAT_VERSION:
        raise _fail(
            path,
            f"unsupported {FILE_FORMAT_NAME} version {_one_line(repr(version), 30)} "
            f"(this code reads version {FILE_FORMAT_VERSION})",
        )
    adjacency = _tensor(path, data, "adjacency", 4, integer=False)
    if adjacency.dtype == torch.uint8:
        if bool((adjacency > 1).any()):
            raise _fail(path, "'adjacency' must hold only 0 and 1")
        adjacency = adjacency.bool()
    elif adjacency.dtype != torch.bool:
        raise _fail(path, f"'adjacency' has dtype {adjacency.dtype}, expected bool or uint8")
    num_pairs, two, num_nodes, num_nodes_2 = adjacency.shape
    if two != 2 or num_nodes != num_nodes_2:
        raise _fail(
            path, f"'adjacency' has shape {list(adjacency.shape)}, expected [pairs, 2, N, N]"
        )
    _check_counts(path, num_pairs, num_nodes)
    sizes = _tensor(path, data, "sizes", 2).long()
    if sizes.shape != (num_pairs, 2):
        raise _fail(path, f"'sizes' has shape {list(sizes.shape)}, expected [{num_pairs}, 2]")
    if bool(((sizes < 1) | (sizes > num_nodes)).any()):
        raise _fail(path, f"'sizes' must be between 1 and N = {num_nodes}")
    scores = _check_scores(path, "wl_score", _tensor(path, data, "wl_score", 1))
    if scores.shape[0] != num_pairs:
        raise _fail(
            path, f"'wl_score' has {scores.shape[0]} entries but 'adjacency' has {num_pairs} pairs"
        )
    node_mask = _node_mask(sizes, num_nodes)
    _check_adjacency(path, adjacency, node_mask)
    return GraphPairDataset(adjacency, node_mask, scores)


def load_pairs_file(path: str | Path) -> GraphPairDataset:
    """Read a dataset file in our format or the original research code's format.

    Parameters
    ----------
    path : str or Path
        The ``.pt`` file (``~`` is expanded).

    Returns
    -------
    GraphPairDataset
        The pairs, padded to the largest graph in the file.

    Raises
    ------
    NipDataError
        With a one-line message naming the file, if it is missing, unreadable, or not a valid
        dataset in either format.
    """
    path = Path(path).expanduser()
    data = _read_dict(path)
    if "format" in data or "adjacency" in data:
        missing = [key for key in _OUR_KEYS if key not in data]
        if missing:
            raise _fail(path, f"missing keys {missing} of the {FILE_FORMAT_NAME} format")
        return _load_ours(path, data)
    missing = [key for key in _ORIGINAL_KEYS if key not in data]
    if len(missing) == len(_ORIGINAL_KEYS):
        raise _fail(
            path,
            f"not a graph-pair dataset (keys {sorted(map(str, data))[:10]}; expected our "
            f"'{FILE_FORMAT_NAME}' format or the original format's {list(_ORIGINAL_KEYS)})",
        )
    if missing:
        raise _fail(path, f"missing keys {missing} of the original format")
    return _load_original(path, data)


# --------------------------------------------------------------------------------------------
# Writing files


def save_pairs_file(dataset: GraphPairDataset, path: str | Path) -> None:
    """Write ``dataset`` in our format (atomically).

    Parameters
    ----------
    dataset : GraphPairDataset
        The pairs to write.
    path : str or Path
        Destination ``.pt`` file; its directory is created if needed.
    """
    data = {
        "format": FILE_FORMAT_NAME,
        "version": FILE_FORMAT_VERSION,
        "adjacency": dataset.adjacency.cpu().contiguous(),
        "sizes": dataset.sizes.cpu(),
        "wl_score": dataset.wl_score.cpu(),
    }
    atomic_torch_save(data, Path(path).expanduser())


def save_original_format(dataset: GraphPairDataset, path: str | Path) -> None:
    """Write ``dataset`` in the original research code's format (atomically).

    Parameters
    ----------
    dataset : GraphPairDataset
        The pairs to write.
    path : str or Path
        Destination ``.pt`` file; its directory is created if needed.
    """
    num_pairs = len(dataset)
    sizes = dataset.sizes.cpu()
    data: dict[str, Tensor] = {}
    for side_index, side in enumerate("ab"):
        # nonzero lists entries in row-major order, so edges come grouped by pair.
        pair, source, target = dataset.adjacency[:, side_index].cpu().nonzero(as_tuple=True)
        counts = torch.bincount(pair, minlength=num_pairs)
        data[f"edge_index_{side}"] = torch.stack([source, target])
        data[f"slices_{side}"] = torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)])
        data[f"sizes_{side}"] = sizes[:, side_index].int()
    data["wl_scores"] = dataset.wl_score.cpu().int()
    atomic_torch_save(data, Path(path).expanduser())


# --------------------------------------------------------------------------------------------
# Generation with a cache


def _generation_parameters(
    params: GraphIsoScenarioConfig, split: str, num_pairs: int
) -> dict[str, object]:
    """Every input that determines a generated dataset, as JSON-able plain values."""
    return {
        "cache_format_version": CACHE_FORMAT_VERSION,
        "split": split,
        "num_pairs": int(num_pairs),
        "data_seed": int(params.data_seed),
        "graph_sizes": [int(size) for size in params.graph_sizes],
        "edge_probabilities": [float(p) for p in params.edge_probabilities],
        "wl_iterations": int(params.wl_iterations),
        "prop_non_isomorphic": float(params.prop_non_isomorphic),
        "non_iso_prop_score_1": float(params.non_iso_prop_score_1),
        "non_iso_prop_score_2": float(params.non_iso_prop_score_2),
        "iso_prop_from_non_iso": float(params.iso_prop_from_non_iso),
    }


def cache_key(params: GraphIsoScenarioConfig, split: str, num_pairs: int) -> str:
    """SHA-256 hex digest identifying a generated dataset (its cache file name)."""
    text = json.dumps(_generation_parameters(params, split, num_pairs), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def load_or_generate(
    params: GraphIsoScenarioConfig, split: str, num_pairs: int, cache_dir: str | Path
) -> GraphPairDataset:
    """A generated split, read from the cache if present there, else generated and cached.

    Parameters
    ----------
    params : GraphIsoScenarioConfig
        Generation parameters; the seed is ``derive_seed(params.data_seed, "graph_iso",
        split)``.
    split : str
        Name of the split (e.g. ``"train"``, ``"test"``); different splits get different data.
    num_pairs : int
        Number of pairs to generate.
    cache_dir : str or Path
        Cache root; the file is ``<cache_dir>/graph_iso/<cache_key>.pt``. An unreadable cache
        file is regenerated (with a logged warning).

    Returns
    -------
    GraphPairDataset
        The split, padded to ``max(params.graph_sizes)`` nodes.
    """
    from nip.scenarios.graph_iso import generation  # imports this module

    path = Path(cache_dir).expanduser() / "graph_iso" / f"{cache_key(params, split, num_pairs)}.pt"
    if path.exists():
        try:
            dataset = load_pairs_file(path)
        except NipDataError as error:
            logger.warning("Regenerating the unreadable dataset cache entry: %s", error)
        else:
            if len(dataset) == num_pairs:
                return dataset.pad_to(max(int(size) for size in params.graph_sizes))
            logger.warning(
                "Regenerating dataset cache entry %s: it holds %d pairs, expected %d",
                path,
                len(dataset),
                num_pairs,
            )
    seed = derive_seed(params.data_seed, "graph_iso", split)
    dataset = generation.generate_pairs(params, num_pairs, seed)
    save_pairs_file(dataset, path)
    return dataset


def build_datasets(
    params: GraphIsoScenarioConfig, cache_dir: str | Path
) -> tuple[GraphPairDataset, GraphPairDataset]:
    """The train and test datasets, read from the configured files or generated.

    Parameters
    ----------
    params : GraphIsoScenarioConfig
        ``dataset_path`` / ``test_dataset_path`` select files (``~`` expanded); otherwise
        ``num_train_pairs`` / ``num_test_pairs`` pairs are generated (splits ``"train"`` and
        ``"test"``) through the cache.
    cache_dir : str or Path
        Cache root for generated splits.

    Returns
    -------
    tuple of GraphPairDataset
        ``(train, test)``, padded to the same number of nodes.
    """
    if params.dataset_path:
        train = load_pairs_file(params.dataset_path)
    else:
        train = load_or_generate(params, "train", params.num_train_pairs, cache_dir)
    if params.test_dataset_path:
        test = load_pairs_file(params.test_dataset_path)
    else:
        test = load_or_generate(params, "test", params.num_test_pairs, cache_dir)
    num_nodes = max(train.max_nodes, test.max_nodes)
    return train.pad_to(num_nodes), test.pad_to(num_nodes)
