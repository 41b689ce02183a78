"""Browser configuration: a pydantic model, filled from `HARMONYGRAPH_*` environment variables."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from harmonygraph.tools.browser.backends import (
    DDGSBackend,
    FolderDocumentSearch,
    LocalBackend,
    SearchBackend,
    SearxNGBackend,
)
from harmonygraph.tools.browser.fetch import FetchPolicy, parse_allow_entry
from pydantic import BaseModel, Field, field_validator

__all__ = ["BackendName", "BrowserConfig"]

BackendName = Literal["ddgs", "searxng", "local"]


class BrowserConfig(BaseModel):
    """Everything the browser toolset can be told; `from_env()` reads the environment."""

    search_backend: BackendName = "ddgs"
    searxng_url: str | None = None
    local_search_dir: Path | None = None
    # The project's pgvector store as the local backend: a collection of it, at
    # DATABASE_URL or the embedded Postgres (needs the retrieval extra).
    local_collection: str | None = None
    ddgs_proxy: str | None = None
    ddgs_engines: str = "duckduckgo"  # ddgs's `backend`: an engine, a list, or `auto`
    search_timeout_s: float = 10.0
    retry_attempts: int = Field(default=3, ge=1)
    retry_backoff_s: float = Field(default=1.0, ge=0)
    max_search_results: int = Field(default=10, ge=1, le=50)

    # Exempt from the public-address rule: `host` opens every port, `host:port` one port.
    allow_hosts: list[str] = Field(default_factory=list)
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 10.0
    total_timeout_s: float = 20.0
    max_redirects: int = Field(default=5, ge=0)
    max_bytes: int = Field(default=5_000_000, ge=1024)  # received and decoded, each
    max_encodings: int = Field(default=2, ge=0, le=4)  # stacked Content-Encodings
    max_compression_ratio: float = Field(default=100.0, ge=2)
    # Extraction runs in a worker process killed at this deadline (wall clock and CPU).
    extract_timeout_s: float = Field(default=10.0, gt=0)
    extract_memory_mb: int = Field(default=2048, ge=256)  # the worker's address space

    view_lines: int = Field(default=60, ge=1)  # lines per display when the model does not say
    view_chars: int = Field(default=6000, ge=200)  # hard cap on one display's characters
    max_page_chars: int = Field(default=400_000, ge=1000)  # longer extracted text is cut
    wrap_width: int = Field(default=80, ge=20)

    @field_validator("allow_hosts")
    @classmethod
    def _check_allow_hosts(cls, value: list[str]) -> list[str]:
        for entry in value:
            parse_allow_entry(entry)  # ValueError names the bad entry
        return value

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> BrowserConfig:
        """Settings from `HARMONYGRAPH_<FIELD>` variables (e.g. `HARMONYGRAPH_SEARCH_BACKEND`).

        `HARMONYGRAPH_BROWSER_ALLOW_HOSTS` is a comma-separated list.
        """
        env = os.environ if env is None else env
        values: dict[str, object] = {}
        for name in cls.model_fields:
            key = f"HARMONYGRAPH_{name.upper()}"
            if name == "allow_hosts":
                key = "HARMONYGRAPH_BROWSER_ALLOW_HOSTS"
            raw = env.get(key)
            if raw is None or raw == "":
                continue
            values[name] = (
                [h.strip() for h in raw.split(",") if h.strip()] if (name == "allow_hosts") else raw
            )
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls.model_validate(values)

    def fetch_policy(self) -> FetchPolicy:
        return FetchPolicy(
            allow_hosts=tuple(self.allow_hosts),
            connect_timeout_s=self.connect_timeout_s,
            read_timeout_s=self.read_timeout_s,
            total_timeout_s=self.total_timeout_s,
            max_redirects=self.max_redirects,
            max_bytes=self.max_bytes,
            max_encodings=self.max_encodings,
            max_compression_ratio=self.max_compression_ratio,
        )

    def build_backend(self) -> SearchBackend:
        """The configured search backend; `ValueError` says which setting is missing."""
        if self.search_backend == "ddgs":
            return DDGSBackend(
                timeout_s=self.search_timeout_s,
                proxy=self.ddgs_proxy,
                backend=self.ddgs_engines,
                retry_attempts=self.retry_attempts,
                retry_backoff_s=self.retry_backoff_s,
            )
        if self.search_backend == "searxng":
            if not self.searxng_url:
                raise ValueError(
                    "search backend searxng needs HARMONYGRAPH_SEARXNG_URL "
                    "(e.g. http://localhost:8888)"
                )
            return SearxNGBackend(
                self.searxng_url,
                timeout_s=self.search_timeout_s,
                retry_attempts=self.retry_attempts,
                retry_backoff_s=self.retry_backoff_s,
            )
        if self.local_search_dir is not None:
            return LocalBackend(FolderDocumentSearch(self.local_search_dir))
        if self.local_collection:
            try:
                from harmonygraph.tools.retrieval.browse import StoreDocuments
            except ImportError as exc:
                raise ValueError(
                    "HARMONYGRAPH_LOCAL_COLLECTION needs the retrieval extra: "
                    f"pip install 'harmonygraph[retrieval]' ({exc})"
                ) from None
            return LocalBackend(StoreDocuments.configured(self.local_collection))
        raise ValueError(
            "search backend local needs HARMONYGRAPH_LOCAL_COLLECTION (a collection of the "
            "document store, see `harmonygraph index`) or HARMONYGRAPH_LOCAL_SEARCH_DIR (a "
            "folder of .txt/.md/.html files)"
        )
