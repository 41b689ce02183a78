"""The environment settings every part reads: one typed model, `HARMONYGRAPH_*` variables.

Read fresh on each call to `settings()` (a few microseconds of validation), so a variable
changed at run time, or by a test, is seen at once. Arguments always win over these;
these win over the defaults. Settings that belong to one component and have their own model
(the sandbox's limits: `HARMONYGRAPH_SANDBOX_*`, see `harmonygraph.sandbox.SandboxConfig`)
stay there.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["DEFAULT_API_KEY", "DEFAULT_BASE_URL", "DEFAULT_MODEL", "Settings", "harmonygraph_home",
           "settings"]  # fmt: skip

DEFAULT_BASE_URL = "http://localhost:8000/v1"
DEFAULT_MODEL = "openai/gpt-oss-20b"
# vLLM and Ollama accept any key unless started with one; the SDK refuses an empty one.
DEFAULT_API_KEY = "EMPTY"


class Settings(BaseSettings):
    """`HARMONYGRAPH_<FIELD>` for each field (upper case); `DATABASE_URL` as it is."""

    model_config = SettingsConfigDict(env_prefix="HARMONYGRAPH_", extra="ignore")

    home: Path = Field(
        default_factory=lambda: Path.home() / ".harmonygraph",
        description="where harmonygraph keeps data: the embedded Postgres, keys, builds",
    )
    base_url: str = Field(default=DEFAULT_BASE_URL, description="the model server's /v1 URL")
    api_key: str = Field(default=DEFAULT_API_KEY, description="the model server's API key")
    model: str = Field(default=DEFAULT_MODEL, description="the model name the server serves")
    api: str = Field(
        default="completions", description="which wire path the model client speaks"
    )  # checked where it is used, so a bad value fails there with the accepted ones
    database_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("DATABASE_URL", "HARMONYGRAPH_DATABASE_URL"),
        description="an external Postgres; unset: the embedded one",
    )

    def resolved_home(self) -> Path:
        return self.home.expanduser()


def settings() -> Settings:
    """The settings as the environment says now."""
    return Settings()


def harmonygraph_home() -> Path:
    """Where harmonygraph keeps data on disk: `$HARMONYGRAPH_HOME` or `~/.harmonygraph`."""
    return settings().resolved_home()
